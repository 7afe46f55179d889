"""A user's image folder, whatever state it is in: every file is used or rejected with its reason."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import compose_train, copy_hymenoptera
from visiontrain.errors import DataError
from visiontrain.image.builtin import is_materialised, materialise_builtin
from visiontrain.image.datamodule import ImageDataModule, class_weights
from visiontrain.image.image_io import read_rgb_array, why_unusable
from visiontrain.image.inventory import build_inventory
from visiontrain.image.transforms import (
    build_eval_transform,
    build_train_transform,
    normalise,
    resolve_input_spec,
)


def assert_nothing_lost(inventory) -> None:
    counts = inventory.counts()
    assert counts["files_in"] == counts["files_used"] + counts["files_rejected"]


def test_imagefolder_keeps_its_splits_and_takes_classes_from_train(tiny_hymenoptera):
    inventory = build_inventory(tiny_hymenoptera)

    assert inventory.format == "imagefolder"
    assert inventory.classes == ["ants", "bees"]
    assert inventory.class_counts("train") == {"ants": 8, "bees": 8}
    assert inventory.class_counts("val") == {"ants": 8, "bees": 8}
    assert all("/train/" in s.path for s in inventory.splits["train"])
    assert inventory.rejected == []  # the real quirks (a GIF, a .jpeg suffix) are usable images
    assert_nothing_lost(inventory)


def test_bad_files_are_rejected_with_their_reason_and_counted(messy_hymenoptera, tmp_path):
    root, expected = messy_hymenoptera
    inventory = build_inventory(root)

    reasons = {Path(r.path).name: r.reason for r in inventory.rejected}
    assert set(reasons) == set(expected)
    for name, reason in expected.items():
        assert reasons[name].startswith(reason), (name, reasons[name])
    assert inventory.counts()["files_rejected"] == 4
    assert_nothing_lost(inventory)

    report = inventory.write_rejects(tmp_path / "rejects.csv")
    rows = list(csv.DictReader(report.open()))
    assert {Path(row["path"]).name for row in rows} == set(expected)
    assert {row["split"] for row in rows} == {"train"}


def test_hidden_loose_and_stray_files_are_listed_not_trained_on(tmp_path):
    root = copy_hymenoptera(tmp_path / "data", per_class=3)
    image = next((root / "train" / "ants").iterdir())
    shutil.copy2(image, root / "train" / "ants" / ".DS_Store")
    shutil.copy2(image, root / "train" / "loose.jpg")
    shutil.copy2(image, root / "cover.jpg")
    (root / "extras" / "ants").mkdir(parents=True)
    shutil.copy2(image, root / "extras" / "ants" / "more.jpg")

    inventory = build_inventory(root)

    reasons = {Path(r.path).name: r.reason for r in inventory.rejected}
    assert reasons == {".DS_Store": "hidden file", "loose.jpg": "not inside a class folder",
                       "cover.jpg": "not inside a split folder (train/val/test)",
                       "more.jpg": "folder 'extras' is not train/val/test"}
    assert inventory.files_used == 12
    assert_nothing_lost(inventory)


def test_class_tree_is_split_stratified_and_reproducibly(tmp_path):
    root = tmp_path / "tree"
    for class_index, (class_name, count) in enumerate((("ants", 20), ("bees", 10))):
        (root / class_name).mkdir(parents=True)
        for i in range(count):  # distinct files: identical ones under two labels would be rejected
            Image.new("RGB", (16, 12), (i * 10, class_index, 0)).save(root / class_name / f"{i:02d}.png")

    inventory = build_inventory(root, val_fraction=0.2, seed=3)

    assert inventory.format == "class_tree"
    assert inventory.class_counts("val") == {"ants": 4, "bees": 2}
    assert inventory.class_counts("train") == {"ants": 16, "bees": 8}
    assert build_inventory(root, val_fraction=0.2, seed=3).splits == inventory.splits
    assert build_inventory(root, val_fraction=0.2, seed=4).splits["val"] != inventory.splits["val"]


def test_csv_manifest_with_and_without_splits(tiny_hymenoptera, tmp_path):
    images = sorted((tiny_hymenoptera / "train").rglob("*.jp*g"))
    manifest = tmp_path / "labels.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        for i, path in enumerate(images):
            writer.writerow([str(path), path.parent.name, "val" if i % 4 == 0 else "train"])
        writer.writerow([str(images[0]), "", "train"])
        writer.writerow([str(images[1]), "ants", "holdout"])
        writer.writerow([str(tmp_path / "gone.jpg"), "bees", "train"])

    inventory = build_inventory(manifest, allow_outside_root=True)  # the images are not beside the manifest

    assert inventory.format == "manifest"
    assert inventory.classes == ["ants", "bees"]
    assert sorted(Counter(r.reason.split(":")[0] for r in inventory.rejected)) == [
        "manifest row has no label", "unknown split 'holdout' (use train/val/test)", "unreadable"]
    assert inventory.files_used == len(images)
    assert_nothing_lost(inventory)


def test_manifest_without_the_required_columns_is_a_clear_error(tmp_path):
    manifest = tmp_path / "labels.csv"
    manifest.write_text("file,class\na.jpg,ants\n")
    with pytest.raises(DataError, match="path,label"):
        build_inventory(manifest)


def test_known_classes_are_enforced_for_evaluation_data(tiny_hymenoptera, tmp_path):
    root = copy_hymenoptera(tmp_path / "new", per_class=2)
    (root / "val" / "wasps").mkdir()
    shutil.copy2(next((root / "val" / "ants").iterdir()), root / "val" / "wasps" / "w.jpg")

    inventory = build_inventory(root, classes=["ants", "bees"])

    assert [Path(r.path).name for r in inventory.rejected] == ["w.jpg"]
    assert "class 'wasps'" in inventory.rejected[0].reason
    assert_nothing_lost(inventory)


def test_a_folder_with_one_usable_class_is_a_data_error(tmp_path):
    root = tmp_path / "one"
    (root / "ants").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8)).save(root / "ants" / f"{i}.png")
    (root / "bees").mkdir()
    (root / "bees" / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="at least 2 class folders"):
        build_inventory(root)


def test_odd_image_modes_become_rgb_and_exif_orientation_is_applied(odd_modes_folder):
    folder = odd_modes_folder / "a"
    for path in sorted(folder.iterdir()):
        assert why_unusable(path) is None, path
        array = read_rgb_array(path)
        assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3, path.name

    assert read_rgb_array(folder / "rotated.jpg").shape[:2] == (60, 40)  # stored 60 wide, displayed 40 wide
    assert read_rgb_array(folder / "palette.png").shape[:2] == (40, 60)

    sixteen_bit = np.asarray(Image.open(folder / "gray16.png"), dtype=np.float64)
    converted = read_rgb_array(folder / "gray16.png")[..., 0].astype(np.float64)
    assert np.abs(converted - sixteen_bit / 257.0).max() <= 0.5 + 1e-9  # scaled, not clipped to 255

    inventory = build_inventory(odd_modes_folder, val_fraction=0.2, seed=0)
    assert inventory.rejected == [] and inventory.files_used == 10


def test_transparent_pixels_become_white_not_black(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    rgba.putpixel((0, 0), (10, 20, 30, 255))
    rgba.save(tmp_path / "logo.png")

    array = read_rgb_array(tmp_path / "logo.png")

    assert tuple(array[0, 0]) == (10, 20, 30)
    assert tuple(array[3, 3]) == (255, 255, 255)


def test_builtin_digits_are_written_once_as_a_real_imagefolder(tmp_path):
    root = materialise_builtin("digits", tmp_path / "digits")
    files = sorted(root.rglob("*.png"))
    first_mtime = files[0].stat().st_mtime_ns

    assert is_materialised(root) and len(files) == 1797
    inventory = build_inventory(root)
    assert inventory.classes == [str(d) for d in range(10)]
    assert inventory.files_used == 1797 and inventory.rejected == []
    assert 0.18 < len(inventory.splits["val"]) / 1797 < 0.22

    assert materialise_builtin("digits", root) == root
    assert files[0].stat().st_mtime_ns == first_mtime  # not rewritten


def test_input_spec_defaults_to_the_backbones_pretrained_config():
    spec = resolve_input_spec("resnet18")
    assert spec.image_size == 224 and spec.mean == pytest.approx((0.485, 0.456, 0.406))

    overridden = resolve_input_spec("resnet18", image_size=64, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert overridden.image_size == 64 and overridden.std == (0.25, 0.25, 0.25)


def test_pipelines_produce_uint8_tensors_of_the_input_size_that_normalise_like_deploy(tiny_hymenoptera):
    spec = resolve_input_spec("resnet18", image_size=48)
    image = read_rgb_array(next((tiny_hymenoptera / "train" / "ants").glob("*.jpg")))
    for preset in ("none", "light", "strong"):
        steps = compose_train(f"augment={preset}", "model.input.image_size=48", "paths.run_dir=.").augment.train
        tensor = build_train_transform(spec, steps)(image=image)["image"]
        assert tuple(tensor.shape) == (3, 48, 48), preset
    evaluated = build_eval_transform(spec)(image=image)["image"]
    again = build_eval_transform(spec)(image=image)["image"]
    assert tuple(evaluated.shape) == (3, 48, 48) and bool((evaluated == again).all())
    assert evaluated.dtype == torch.uint8  # 4x smaller batches; normalised on the device
    normalised = normalise(evaluated.unsqueeze(0), spec.mean, spec.std)
    assert normalised.dtype == torch.float32 and float(normalised.min()) < 0 < float(normalised.max()) < 3
    expected = (evaluated.double() / 255 - torch.tensor(spec.mean).view(3, 1, 1)) / torch.tensor(spec.std).view(3, 1, 1)
    assert torch.allclose(normalised[0].double(), expected, atol=1e-5)


def test_weighted_sampler_balances_an_imbalanced_training_set(tmp_path):
    root = tmp_path / "imbalanced"
    for class_index, (class_name, count) in enumerate((("common", 40), ("rare", 5))):
        (root / class_name).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (8, 8), (i, i, class_index)).save(root / class_name / f"{i}.png")
    inventory = build_inventory(root, val_fraction=0.2, seed=0)
    spec = resolve_input_spec("resnet18", image_size=8)
    datamodule = ImageDataModule(inventory, build_eval_transform(spec), build_eval_transform(spec), batch_size=8,
                                 num_workers=0, balance="sampler", seed=0)

    labels = [int(label) for _ in range(10) for _, batch in datamodule.train_dataloader() for label in batch]

    weights = class_weights(inventory)
    assert weights[1] > weights[0]
    rare_share = labels.count(1) / len(labels)
    assert 0.35 < rare_share < 0.65, rare_share  # about half, against 4/36 without the sampler
