"""Options a user turns on: class-weighted loss, and augmentation that is random yet reproducible."""

from __future__ import annotations

import shutil

import torch
from PIL import Image

from conftest import TINY_BACKBONE, compose_train, tiny_overrides
from visiontrain.image.datamodule import ImageDataModule
from visiontrain.image.inventory import build_inventory
from visiontrain.image.transforms import build_eval_transform, build_train_transform, resolve_input_spec
from visiontrain.registry import task_for_config


def test_class_weighted_loss_weights_the_rare_class_up(tiny_hymenoptera, tmp_path):
    data = tmp_path / "imbalanced"
    shutil.copytree(tiny_hymenoptera, data)
    for extra in sorted((data / "train" / "bees").iterdir())[2:]:
        extra.unlink()  # 8 ants, 2 bees
    cfg = compose_train(*tiny_overrides(data, tmp_path, "data.balance=loss_weights"))
    task = task_for_config(cfg)
    data = task.prepare(tmp_path, True)
    module = task.build(data, None).module
    assert data.summary["per_class"]["train"] == {"ants": 8, "bees": 2}
    assert torch.allclose(module.criterion.weight, torch.tensor([10 / (2 * 8), 10 / (2 * 2)]))


def _crops(root, num_workers: int, seed: int) -> list[torch.Tensor]:
    spec = resolve_input_spec(TINY_BACKBONE, image_size=24)
    steps = [{"_target_": "albumentations.RandomResizedCrop", "size": [24, 24], "scale": [0.05, 0.3]}]
    inventory = build_inventory(root, "class_tree", val_fraction=0.5, seed=0)
    datamodule = ImageDataModule(inventory, build_train_transform(spec, steps), build_eval_transform(spec),
                                 batch_size=1, num_workers=num_workers, seed=seed)
    torch.manual_seed(seed)  # what seed_everything does for the main process
    loader = datamodule._loader(datamodule.dataset("train", train=True), shuffle=False)
    return [images[0] for images, _ in loader]


def test_augmentation_is_reproducible_and_differs_between_workers(tmp_path):
    image = Image.effect_mandelbrot((96, 96), (-2, -1.5, 1, 1.5), 50).convert("RGB")
    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for index in range(4):
            image.save(tmp_path / "data" / name / f"same_{index}.png")  # identical files: only the crop varies
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)  # one image under two labels would be rejected
    root = tmp_path / "data"
    first, again = _crops(root, num_workers=2, seed=1), _crops(root, num_workers=2, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(first, again)), "same seed, same augmentations"
    assert not torch.equal(first[0], first[1]), "two workers must not replay the same augmentations"
    in_process, in_process_again = _crops(root, num_workers=0, seed=1), _crops(root, num_workers=0, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(in_process, in_process_again))
    assert len({tuple(t.flatten()[:50].tolist()) for t in in_process}) > 1, "crops vary from image to image"
