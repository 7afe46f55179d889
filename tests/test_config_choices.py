"""The choices the config checks accept are those the code acts on (the task registry keeps its own names)."""

from __future__ import annotations

from visiontrain.commands.validation import lightning_precisions
from visiontrain.config import choices


def test_the_checks_accept_exactly_the_tasks_the_runner_can_build():
    from typing import get_args

    from visiontrain.config.sections import Run
    from visiontrain.registry import task_class

    accepted = get_args(Run.model_fields["task"].annotation)
    assert accepted == choices.TASK_NAMES and len(accepted) >= 2
    assert all(task_class(name).name == name for name in accepted)  # each name builds the task that records it


def test_lightning_precisions_are_read_from_lightning():
    precisions = lightning_precisions()
    assert "32-true" in precisions and "bf16-mixed" in precisions and 16 in precisions
    assert "15-mixed" not in precisions


def test_the_interpolations_the_checks_accept_are_those_the_resize_knows():
    from visiontrain.core.image_preprocess import INTERPOLATIONS

    assert set(choices.INTERPOLATIONS) == set(INTERPOLATIONS)


def test_serve_log_levels_are_uvicorns():
    from uvicorn.config import LOG_LEVELS

    assert set(choices.SERVE_LOG_LEVELS) == set(LOG_LEVELS)


def test_every_command_has_its_early_checks():
    """The CLI runs them before it imports a command: no command left with only the late ones."""
    from visiontrain.cli import COMMANDS
    from visiontrain.config.checks import COMMAND_CHECKS

    assert set(COMMAND_CHECKS) == set(COMMANDS)
