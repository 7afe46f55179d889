"""The choices the config checks accept are those the code acts on, where that code keeps its own tuple."""

from __future__ import annotations

from visiontrain.config import choices
from visiontrain.config.validation import lightning_precisions


def test_the_checks_and_the_code_accept_the_same_values():
    from visiontrain.data.inventory import FORMATS as IMAGE_FORMATS
    from visiontrain.tabular.ingest import FORMATS as TABLE_FORMATS
    from visiontrain.tabular.metrics import THRESHOLD_METRICS
    from visiontrain.tasks import TASKS

    assert choices.TASKS == TASKS
    assert choices.IMAGE_FORMATS == IMAGE_FORMATS
    assert choices.TABLE_FORMATS == TABLE_FORMATS
    assert choices.THRESHOLD_METRICS == THRESHOLD_METRICS


def test_lightning_precisions_are_read_from_lightning():
    precisions = lightning_precisions()
    assert "32-true" in precisions and "bf16-mixed" in precisions and 16 in precisions
    assert "15-mixed" not in precisions
