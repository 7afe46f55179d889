"""The split a run made, in its run dir: `split.csv` lists every image used once, with its label and split.

The user's story: train on a class tree (the split is ours to make), then score and predict exactly the run's
validation images from split.csv, and retrain from it with the same split. On the real fixture photos.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import TINY_BACKBONE, add_bad_files, copy_hymenoptera, run_cli

TINY = [f"model.backbone={TINY_BACKBONE}", "model.weights=null", "model.input.image_size=32", "data.batch_size=4",
        "data.num_workers=0", "trainer.enable_progress_bar=false", "trainer.max_epochs=1",
        "schedule.freeze_epochs=0"]


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def resolved(split_csv: Path) -> list[tuple[str, str, str]]:
    """split.csv as (real path, label, split), in file order: comparable across run dirs."""
    return [(os.path.realpath(split_csv.parent / row["path"]), row["label"], row["split"])
            for row in read_rows(split_csv)]


def class_tree(target: Path, per_class: int) -> Path:
    """hymenoptera's train and val photos together as root/<class>/*: a tree whose split the run makes."""
    photos = copy_hymenoptera(target.with_name(target.name + "_source"), per_class=per_class)
    for class_dir in sorted((photos / "train").iterdir()):
        shutil.copytree(class_dir, target / class_dir.name)
        for photo in (photos / "val" / class_dir.name).iterdir():
            shutil.copy2(photo, target / class_dir.name / f"val_{photo.name}")
    return target


# --- every layout the image task accepts ---------------------------------------------------------------------


def imagefolder_with_test(tmp_path: Path) -> tuple[Path, dict]:
    root = copy_hymenoptera(tmp_path / "folder", per_class=3)
    shutil.copytree(root / "val", root / "test")
    add_bad_files(root / "val" / "bees")
    return root, {}


def seeded_class_tree(tmp_path: Path) -> tuple[Path, dict]:
    root = class_tree(tmp_path / "tree", per_class=3)
    add_bad_files(root / "ants")
    return root, {"val_fraction": 0.34, "seed": 3}


def manifest_without_split(tmp_path: Path) -> tuple[Path, dict]:
    root = class_tree(tmp_path / "tree", per_class=3)
    manifest = root / "labels.csv"
    rows = [f"{p.relative_to(root).as_posix()},{p.parent.name}" for p in sorted(root.rglob("*.*"))]
    manifest.write_text("path,label\n" + "\n".join([*rows, "missing.jpg,ants", ",bees"]) + "\n")
    return manifest, {"val_fraction": 0.5, "seed": 1}


@pytest.mark.parametrize("layout", [imagefolder_with_test, seeded_class_tree, manifest_without_split])
def test_split_csv_lists_every_image_once_and_reads_back_as_the_same_split(layout, tmp_path):
    from visiontrain.image.inventory import build_inventory

    root, options = layout(tmp_path)
    inventory = build_inventory(root, **options)
    split_csv = inventory.write_split(tmp_path / "run" / "split.csv")
    rejects_csv = inventory.write_rejects(tmp_path / "run" / "rejects.csv")

    rows = resolved(split_csv)
    rejected = read_rows(rejects_csv)
    assert rejected and len(rows) + len(rejected) == inventory.files_in  # every file found: used here, or there
    assert len({path for path, _, _ in rows}) == len(rows)  # each image once
    assert not {path for path, _, _ in rows} & {os.path.realpath(r["path"]) for r in rejected}
    expected = [(os.path.realpath(s.path), inventory.classes[s.label], split)
                for split, samples in inventory.splits.items() for s in samples]
    assert rows == expected  # the split, the labels and the order training reads them in
    assert all(not Path(row["path"]).is_absolute() for row in read_rows(split_csv))  # relative to its folder

    again = build_inventory(split_csv, allow_outside_root=True)  # no seed, no val_fraction: the file decides
    assert again.format == "manifest" and again.classes == inventory.classes and not again.rejected
    assert samples_of(again) == samples_of(inventory)


def samples_of(inventory) -> dict[str, list[tuple[str, int]]]:
    return {split: [(os.path.realpath(sample.path), sample.label) for sample in samples]
            for split, samples in inventory.splits.items()}


def test_a_split_csv_of_symlinked_data_names_the_same_files(tmp_path):
    """A data root reached through a symlink, and a symlinked photo: the file reads back as the same images."""
    from visiontrain.image.inventory import build_inventory

    real = class_tree(tmp_path / "disk" / "tree", per_class=2)
    photo = next((real / "bees").iterdir())
    (real / "bees" / "linked.jpg").symlink_to(photo)
    (tmp_path / "data").symlink_to(real)
    (tmp_path / "deeper" / "runs").mkdir(parents=True)  # the run dir through a symlink, at another depth:
    (tmp_path / "runs_link").symlink_to(tmp_path / "deeper" / "runs")  # a `..` counted by name would miss
    inventory = build_inventory(tmp_path / "data", val_fraction=0.25)  # the linked copy: a duplicate, kept
    split_csv = inventory.write_split(tmp_path / "runs_link" / "a" / "split.csv")
    again = build_inventory(split_csv, allow_outside_root=True)
    assert samples_of(again) == samples_of(inventory)
    assert "linked.jpg" in {Path(row["path"]).name for row in read_rows(split_csv)}


def test_a_split_csv_names_files_outside_its_folder_and_says_which_key_trusts_it(tmp_path):
    from visiontrain.errors import DataError
    from visiontrain.image.inventory import build_inventory

    inventory = build_inventory(copy_hymenoptera(tmp_path / "photos", per_class=2))
    split_csv = inventory.write_split(tmp_path / "run" / "split.csv")
    with pytest.raises(DataError, match=r"8 manifest rows name files outside its folder: .* add "
                                        r"data\.allow_outside_root=true"):
        build_inventory(split_csv)


def test_the_data_line_counts_each_split_and_class_and_the_rejected():
    from visiontrain.image.task import ImageTask

    data = {"per_split": {"train": 196, "val": 48},
            "per_class": {"train": {"ants": 98, "bees": 98}, "val": {"ants": 24, "bees": 24}},
            "files_rejected": 1, "rejects_csv": "/runs/a/rejects.csv"}
    assert ImageTask.describe_data(data) == \
        "data: train 196 (ants 98, bees 98) · val 48 (ants 24, bees 24) · rejected 1 (rejects.csv)"


def test_predict_reads_a_manifest_as_training_does(tmp_path):
    """Rows of the chosen split only; the rest of the file is not input. Outside rows are rejected, named."""
    from visiontrain.deploy.predict import manifest_inputs
    from visiontrain.errors import ConfigError

    inventory_root = copy_hymenoptera(tmp_path / "photos", per_class=2)
    manifest = tmp_path / "photos" / "some.csv"
    rows = [f"{p.relative_to(inventory_root).as_posix()},{p.parent.name},{p.parts[-3]}"
            for p in sorted(inventory_root.rglob("*.*")) if p.suffix != ".csv"]
    manifest.write_text("path,label,split\n" + "\n".join([*rows, "../../elsewhere.jpg,ants,val"]) + "\n")
    inputs, rejects = manifest_inputs(manifest, "val", allow_outside_root=False)
    assert sorted(path.name for path, _ in inputs) == sorted(p.name for p in (inventory_root / "val").rglob("*.*"))
    assert {columns["split"] for _, columns in inputs} == {"val"}
    assert all(columns["label"] == path.parent.name for path, columns in inputs)
    assert [r["reason"] for r in rejects] == ["outside the manifest folder (set allow_outside_root=true to allow)"]
    with pytest.raises(ConfigError, match="`split`"):
        manifest_inputs(manifest, "validation", allow_outside_root=False)
    paths_only = tmp_path / "photos" / "paths.csv"  # a list of images to classify: no label, no split
    paths_only.write_text("path\n" + "\n".join(row.split(",")[0] for row in rows) + "\n")
    inputs, rejects = manifest_inputs(paths_only, None, allow_outside_root=False)
    assert len(inputs) == len(rows) and not rejects and {columns["label"] for _, columns in inputs} == {""}
    with pytest.raises(ConfigError, match="has no split column"):
        manifest_inputs(paths_only, "val", allow_outside_root=False)


# --- the user's story through the real command -----------------------------------------------------------


@pytest.fixture(scope="module")
def tree_run(tmp_path_factory):
    """One real run on a class tree (12 photos per class, 4 bad files): the run makes the split."""
    base = tmp_path_factory.mktemp("split")
    data = class_tree(base / "photos", per_class=6)
    bad = add_bad_files(data / "ants")
    run_dir = base / "run"
    result = run_cli("train", "experiment=hymenoptera", f"data.root={data}", "data.val_fraction=0.25", "seed=5",
                     *TINY, f"hydra.run.dir={run_dir}", cwd=base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"base": base, "data": data, "bad": bad, "run_dir": run_dir, "summary": summary,
            "stdout": result.stdout}


def test_the_run_writes_its_split_and_says_so_per_split_and_class(tree_run):
    run_dir, summary = tree_run["run_dir"], tree_run["summary"]
    rows = resolved(run_dir / "split.csv")
    on_disk = {os.path.realpath(p) for p in tree_run["data"].rglob("*") if p.is_file()}
    rejected = {os.path.realpath(r["path"]) for r in read_rows(run_dir / "rejects.csv")}
    assert {path for path, _, _ in rows} | rejected == on_disk and len(rows) + len(rejected) == len(on_disk)
    assert all(label == Path(path).parent.name for path, label, _ in rows)
    per_class = {split: {name: sum(1 for _, label, s in rows if (s, label) == (split, name))
                         for name in ("ants", "bees")} for split in ("train", "val")}
    assert per_class == {"train": {"ants": 9, "bees": 9}, "val": {"ants": 3, "bees": 3}}  # 12 a class, 0.25 to val
    assert summary["data"]["per_class"] == per_class and summary["data"]["files_rejected"] == len(tree_run["bad"])
    assert summary["files"]["split_csv"] == str(run_dir / "split.csv")
    line = "data: train 18 (ants 9, bees 9) · val 6 (ants 3, bees 3) · rejected 4 (rejects.csv)"
    assert line in tree_run["stdout"]
    assert f"image split        {run_dir / 'split.csv'}" in tree_run["stdout"]


def test_evaluate_and_predict_on_split_csv_score_exactly_the_run_s_val_images(tree_run):
    run_dir, summary, base = tree_run["run_dir"], tree_run["summary"], tree_run["base"]
    val = {(path, label) for path, label, split in resolved(run_dir / "split.csv") if split == "val"}

    out = base / "evaluate"
    evaluated = run_cli("evaluate", f"ckpt={summary['checkpoints']['best']}",
                        f"data_root={run_dir / 'split.csv'}", "split=val", "allow_outside_root=true",
                        f"hydra.run.dir={out}", "trainer.enable_progress_bar=false", cwd=base)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert {row["class"]: row["support"] for row in evaluation["per_class"]} == {"ants": 3, "bees": 3}
    assert evaluation["metrics"]["val/acc"] == pytest.approx(summary["evaluation"]["val"]["metrics"]["val/acc"])

    predictions = base / "predict" / "val.csv"
    predicted = run_cli("predict", f"model={run_dir / 'model.onnx'}", f"input={run_dir / 'split.csv'}",
                        "split=val", "allow_outside_root=true", f"output={predictions}", "progress=false",
                        cwd=base)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert "6 files in = 6 predicted + 0 rejected" in predicted.stdout
    rows = read_rows(predictions)
    assert {(os.path.realpath(r["path"]), r["label"]) for r in rows} == val
    assert {r["split"] for r in rows} == {"val"}
    accuracy = sum(r["top1"] == r["label"] for r in rows) / len(rows)
    assert accuracy == pytest.approx(evaluation["metrics"]["val/acc"])  # ONNX agrees with the checkpoint


def test_retraining_from_split_csv_reproduces_the_split(tree_run):
    """Another seed and val_fraction: the file's split column decides, so both are ignored."""
    base, first = tree_run["base"], tree_run["run_dir"]
    second = base / "again"
    result = run_cli("train", "experiment=hymenoptera", f"data.root={first / 'split.csv'}",
                     "data.allow_outside_root=true", "data.val_fraction=0.5", "seed=11", *TINY,
                     "export.onnx=false", f"hydra.run.dir={second}", cwd=base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert resolved(second / "split.csv") == resolved(first / "split.csv")  # same images, labels, splits, order
    assert read_rows(second / "rejects.csv") == []  # the bad files stayed in the first run's rejects.csv
    assert json.loads((second / "summary.json").read_text())["data"]["per_class"] == \
        tree_run["summary"]["data"]["per_class"]
