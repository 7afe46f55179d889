"""The task contract: every task the runner can run provides what `tasks.base.Task` promises, by the same names.

The runner and the checkpoint commands call only these members, so a task missing one (or taking other arguments)
would fail in the middle of a run; here it fails at once, naming the member.
"""

from __future__ import annotations

import inspect

import pytest

from visiontrain.core.names import TASK_CLASSES, TASK_KEY
from visiontrain.errors import CheckpointError
from visiontrain.registry import task_class, task_name_of
from visiontrain.training.task import Task

CONTRACT = {name: member for name, member in vars(Task).items()
            if not name.startswith("_") and (callable(member) or isinstance(member, classmethod))}
ATTRIBUTES = ("name", "curve_metric", "report_split")


def parameters(function) -> list[str]:
    function = function.__func__ if isinstance(function, (classmethod, staticmethod)) else function
    return [p for p in inspect.signature(function).parameters if p not in ("self", "cls")]


@pytest.mark.parametrize("task_name", list(TASK_CLASSES))
def test_every_task_provides_every_member_of_the_contract_with_its_arguments(task_name):
    cls = task_class(task_name)
    assert cls.name == task_name  # the name a checkpoint records is the name the registry knows
    assert set(CONTRACT) >= {"prepare", "build", "evaluate", "export", "reference_stats", "report_lines",
                             "evaluate_checkpoint", "export_checkpoint"}
    for member, declared in CONTRACT.items():
        provided = inspect.getattr_static(cls, member, None)
        assert provided is not None, f"{cls.__name__} lacks {member}"
        # the contract's arguments come first, by name; a task may add optional ones after them
        assert parameters(provided)[:len(parameters(declared))] == parameters(declared), (cls.__name__, member)
    for attribute in ATTRIBUTES:
        assert attribute in Task.__annotations__


def test_a_checkpoint_names_its_task_and_older_checkpoints_are_recognised_by_their_settings():
    assert task_name_of({TASK_KEY: "tabular"}) == "tabular"
    assert task_name_of({TASK_KEY: "image_classification"}) == "image_classification"
    # written before the task was recorded: tabular models always stored their task_type
    assert task_name_of({"hyper_parameters": {"task_type": "classification"}}) == "tabular"
    assert task_name_of({"hyper_parameters": {"backbone": "resnet18"}}) == "image_classification"
    with pytest.raises(CheckpointError, match="records an unknown task 'segmentation'"):
        task_name_of({TASK_KEY: "segmentation"}, "model.ckpt")
