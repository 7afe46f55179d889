"""Fine-tuning extras a user turns on: mixup/CutMix.

Every test runs the real thing on real photos (tiny hymenoptera, test_resnet at 32 px): a config, a model, a
Trainer or the `visiontrain` command itself.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from timm.loss import SoftTargetCrossEntropy

from conftest import compose_train, tiny_overrides
from visiontrain.config.validation import validate_train_config
from visiontrain.errors import ConfigError
from visiontrain.tasks.image import ImageTask


def build(data_root: Path, run_dir: Path, *extra: str):
    cfg = compose_train(*tiny_overrides(data_root, run_dir, *extra))
    validate_train_config(cfg)
    task = ImageTask(cfg)
    task.prepare(run_dir, True)
    datamodule, module = task.build()
    return task, datamodule, module


MIXUP = ("augment.mixup.mixup_alpha=0.8", "model.drop_rate=0.0")


def two_ants_two_bees(datamodule) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch (augmented, uint8) whose mixing partners (image i and n - 1 - i) differ in class."""
    dataset = datamodule.dataset("train", train=True)
    ants = [i for i, s in enumerate(dataset.samples) if s.label == 0][:2]
    bees = [i for i, s in enumerate(dataset.samples) if s.label == 1][:2]
    items = [dataset[i] for i in ants + bees]
    return torch.stack([image for image, _ in items]), torch.tensor([int(label) for _, label in items])


# ----- mixup / cutmix -------------------------------------------------------------------------------------------
def test_mixup_blends_pairs_of_real_photos_and_their_labels(tiny_hymenoptera, tmp_path):
    _, datamodule, module = build(tiny_hymenoptera, tmp_path, *MIXUP)
    images, labels = module.on_after_batch_transfer(two_ants_two_bees(datamodule), 0)
    np.random.seed(3)  # timm draws lambda with numpy
    mixed, targets = module.mix(images.clone(), labels)

    x, x_partner = images, images.flip(0)  # timm pairs image i with image n - 1 - i
    lam = float(((mixed - x_partner) * (x - x_partner)).sum() / ((x - x_partner) ** 2).sum())
    assert 0.0 < lam < 1.0
    assert torch.allclose(mixed, lam * x + (1 - lam) * x_partner, atol=1e-4), "a blend of each image and its partner"
    smoothed = torch.full((len(labels), 2), 0.05).scatter_(1, labels[:, None], 0.95)  # label_smoothing 0.1
    assert torch.allclose(targets, lam * smoothed + (1 - lam) * smoothed.flip(0), atol=1e-4)
    assert targets.max() < 0.95 and torch.allclose(targets.sum(1), torch.ones(len(labels)))  # soft, not one-hot


def test_the_training_step_learns_from_the_mixed_batch_with_soft_target_cross_entropy(tiny_hymenoptera, tmp_path):
    _, datamodule, module = build(tiny_hymenoptera, tmp_path, *MIXUP, "augment.mixup.cutmix_alpha=1.0")
    torch.manual_seed(0)
    for name, parameter in module.model.named_parameters():
        if name in module.head_names:  # the new head starts at zero; give it weights, as after a few steps
            torch.nn.init.normal_(parameter, std=0.5)
    images, labels = module.on_after_batch_transfer(two_ants_two_bees(datamodule), 0)
    np.random.seed(0)
    mixed, targets = module.mix(images.clone(), labels)
    expected = SoftTargetCrossEntropy()(module(mixed), targets)  # timm's loss on what the step should see
    unmixed = torch.nn.functional.cross_entropy(module(images), labels)
    hard = torch.nn.functional.cross_entropy(module(mixed), labels)

    np.random.seed(0)  # the same draw inside the step
    loss = module.training_step((images.clone(), labels), 0)

    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert abs(loss.item() - unmixed.item()) > 1e-3, "the step must not train on the plain batch"
    assert abs(loss.item() - hard.item()) > 1e-3, "nor against the hard labels"


def test_with_mixup_the_training_loader_keeps_full_even_batches(tiny_hymenoptera, tmp_path):
    _, datamodule, _ = build(tiny_hymenoptera, tmp_path, *MIXUP, "data.batch_size=6")
    sizes = [len(labels) for _, labels in datamodule.train_dataloader()]
    assert sizes == [6, 6], "16 images: two batches of 6, the last 4 images wait for the next epoch's shuffle"
    assert [len(labels) for _, labels in datamodule.val_dataloader()] == [6, 6, 4], "validation keeps every image"


def test_a_tiny_run_with_mixup_and_cutmix_trains_evaluates_and_exports(tiny_hymenoptera, tmp_path):
    from visiontrain.runner import train

    cfg = compose_train(*tiny_overrides(tiny_hymenoptera, tmp_path, *MIXUP, "augment.mixup.cutmix_alpha=1.0",
                                        "augment.mixup.mode=elem", "schedule=full_finetune", "trainer.max_epochs=2"))
    accuracy = train(cfg)

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["epochs_trained"] == 2 and accuracy == summary["monitor"]["best"]
    assert all(math.isfinite(row["train/loss"]) for row in summary["history"])
    assert summary["export"]["parity"]["passed"] and (tmp_path / "model.onnx").is_file()


# ----- config mistakes --------------------------------------------------------------------------------------------
TRAIN_MISTAKES = [
    (["augment.mixup.mixup_alpha=-0.2"], "augment.mixup.mixup_alpha", "augment.mixup.mixup_alpha=0.8"),
    (["augment.mixup.prob=1.5"], "augment.mixup.prob", "augment.mixup.prob=1.0"),
    (["augment.mixup.mode=row"], "augment.mixup.mode", "augment.mixup.mode=batch"),
    (["augment.mixup.label_smoothing=1.0"], "augment.mixup.label_smoothing", "label_smoothing=0.1"),
    (["augment.mixup.cutmix_alpha=1.0", "data.batch_size=5"], "data.batch_size", "data.batch_size=6"),
    (["augment.mixup.mixup_alpha=0.8", "model.label_smoothing=0.1"], "model.label_smoothing",
     "model.label_smoothing=0"),
]


@pytest.mark.parametrize(("overrides", "key", "fix"), TRAIN_MISTAKES, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_a_mistake_in_the_new_keys_fails_before_training_naming_key_and_fix(overrides, key, fix, tiny_hymenoptera,
                                                                            tmp_path):
    cfg = compose_train(*tiny_overrides(tiny_hymenoptera, tmp_path, *overrides))
    with pytest.raises(ConfigError) as raised:
        validate_train_config(cfg)
    assert raised.value.key == key and fix in raised.value.fix
