"""The choices the config checks accept are those the code acts on (the task registry keeps its own names)."""

from __future__ import annotations

from visiontrain.config import choices
from visiontrain.config.validation import lightning_precisions


def test_the_checks_accept_exactly_the_tasks_the_runner_can_build():
    from visiontrain.tasks import TASKS

    assert choices.TASKS == tuple(TASKS)


def test_lightning_precisions_are_read_from_lightning():
    precisions = lightning_precisions()
    assert "32-true" in precisions and "bf16-mixed" in precisions and 16 in precisions
    assert "15-mixed" not in precisions
