"""Fine-tuning extras a user turns on: mixup/CutMix, a weight average (EMA), test-time flips, the LR finder.

Every test runs the real thing on real photos (tiny hymenoptera, test_resnet at 32 px): a config, a model, a
Trainer or the `visiontrain` command itself.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from timm.loss import SoftTargetCrossEntropy

from conftest import compose_train, run_cli, tiny_overrides
from visiontrain.commands.validation import (
    validate_evaluate_config,
    validate_lr_find_config,
    validate_train_config,
)
from visiontrain.errors import ConfigError
from visiontrain.image.classifier import load_classifier
from visiontrain.image.export import model_inputs
from visiontrain.image.task import BuiltImageModel
from visiontrain.registry import task_for_config
from visiontrain.training.lr_find import group_rates_kept


def build(data_root: Path, run_dir: Path, *extra: str):
    cfg = compose_train(*tiny_overrides(data_root, run_dir, *extra))
    validate_train_config(cfg)
    task = task_for_config(cfg)
    built = task.build(task.prepare(run_dir, True), None)
    return built, built.datamodule, built.module


def cli_overrides(data_root: Path, run_dir: Path, *extra: str) -> list[str]:
    """The tiny settings as typed on the command line (the run dir is Hydra's)."""
    return [o for o in tiny_overrides(data_root, run_dir, *extra) if not o.startswith("paths.run_dir=")] + [
        f"hydra.run.dir={run_dir}"]


def validation_images(built: BuiltImageModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Every validation image as the model sees it in validation, and its label."""
    dataset = built.datamodule.dataset("val")
    images = model_inputs(built.datamodule, "val", range(len(dataset)), built.spec.to_dict())
    return images, torch.tensor([int(dataset[i][1]) for i in range(len(dataset))])


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
    images, labels = module.model_batch(two_ants_two_bees(datamodule))
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
    images, labels = module.model_batch(two_ants_two_bees(datamodule))
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
    from visiontrain.commands.train import train

    cfg = compose_train(*tiny_overrides(tiny_hymenoptera, tmp_path, *MIXUP, "augment.mixup.cutmix_alpha=1.0",
                                        "augment.mixup.mode=elem", "schedule=full_finetune", "trainer.max_epochs=2"))
    accuracy = train(cfg)

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["epochs_trained"] == 2 and accuracy == summary["monitor"]["best"]
    assert all(math.isfinite(row["train/loss"]) for row in summary["history"])
    assert summary["export"]["parity"]["passed"] and (tmp_path / "model.onnx").is_file()


# ----- EMA -------------------------------------------------------------------------------------------------------
EMA = ("model.ema.enabled=true", "model.ema.decay=0.9", "model.ema.warmup=false", "schedule=full_finetune",
       "optimizer.lr=0.01", "trainer.max_epochs=3", "monitor.metric=val/loss", "monitor.mode=min")


@pytest.fixture(scope="module")
def ema_run(tiny_hymenoptera, tmp_path_factory):
    """`visiontrain train ... model.ema.enabled=true`: three epochs of 4 steps, the average of the last ~10 steps."""
    base = tmp_path_factory.mktemp("ema")
    run_dir = base / "run"
    result = run_cli("train", *cli_overrides(tiny_hymenoptera, run_dir, *EMA), cwd=base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    task, _, _ = build(tiny_hymenoptera, base / "data", *EMA)  # the same validation images, read again
    return {"base": base, "run_dir": run_dir, "summary": summary, "best": summary["checkpoints"]["best"],
            "task": task}


def test_the_checkpoint_holds_both_the_trained_and_the_averaged_weights(ema_run):
    state = torch.load(ema_run["best"], map_location="cpu", weights_only=True)["state_dict"]
    trained = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    averaged = {k[len("ema.module."):]: v for k, v in state.items() if k.startswith("ema.module.")}
    assert trained.keys() == averaged.keys()
    weights = [k for k, v in trained.items() if v.is_floating_point() and "running" not in k]
    moved = [k for k in weights if not torch.allclose(trained[k], averaged[k])]
    assert len(moved) == len(weights), "after a short run every weight's average lags behind the weight"


def test_validation_and_the_best_checkpoint_are_judged_on_the_averaged_weights(ema_run):
    module = load_classifier(ema_run["best"]).eval()
    images, labels = validation_images(ema_run["task"])
    with torch.no_grad():
        ema_loss = torch.nn.functional.cross_entropy(module.ema.module(images), labels).item()
        raw_loss = torch.nn.functional.cross_entropy(module.model(images), labels).item()
    metrics = ema_run["summary"]["evaluation"]["val"]["metrics"]
    assert metrics["val/loss"] == pytest.approx(ema_loss, abs=1e-5)
    assert abs(raw_loss - ema_loss) > 1e-4, "the trained weights score differently"


def test_the_exported_onnx_model_is_the_averaged_one(ema_run):
    module = load_classifier(ema_run["best"]).eval()
    images, _ = validation_images(ema_run["task"])
    session = ort.InferenceSession(str(ema_run["run_dir"] / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(["logits"], {"image": images.numpy()})[0]
    with torch.no_grad():
        ema_logits, raw_logits = module.ema.module(images).numpy(), module.model(images).numpy()
    assert np.abs(onnx_logits - ema_logits).max() < 1e-4
    assert np.abs(onnx_logits - raw_logits).max() > 1e-2


def test_fine_tuning_from_such_a_checkpoint_starts_from_the_averaged_weights(ema_run):
    from visiontrain.image.weights import read_state_dict

    state = torch.load(ema_run["best"], map_location="cpu", weights_only=True)["state_dict"]
    loaded = read_state_dict(ema_run["best"])  # what model.weights_file=<best.ckpt> reads
    assert loaded.keys() == {k[len("ema.module."):] for k in state if k.startswith("ema.module.")}
    assert all(torch.equal(value, state[f"ema.module.{name}"]) for name, value in loaded.items())


# ----- test-time augmentation -------------------------------------------------------------------------------------
def test_hflip_tta_averages_the_predictions_on_each_photo_and_its_mirror(ema_run):
    images, _ = validation_images(ema_run["task"])
    plain, flipped = load_classifier(ema_run["best"]).eval(), load_classifier(ema_run["best"], tta="hflip").eval()
    with torch.no_grad():
        on_image = torch.softmax(plain.evaluation_model()(images), dim=-1)
        on_mirror = torch.softmax(plain.evaluation_model()(torch.flip(images, dims=[3])), dim=-1)
        tta = torch.softmax(flipped.predict_logits(images), dim=-1)
        no_tta = torch.softmax(plain.predict_logits(images), dim=-1)
    assert torch.allclose(tta, (on_image + on_mirror) / 2, atol=1e-5)
    assert not torch.allclose(tta, no_tta, atol=1e-4), "a real photo and its mirror are predicted differently"


def test_evaluate_with_tta_scores_the_averaged_prediction_and_records_the_mode(ema_run):
    out = ema_run["base"] / "evaluate_tta"
    result = run_cli("evaluate", f"ckpt={ema_run['best']}", "tta=hflip", f"hydra.run.dir={out}",
                     "trainer.enable_progress_bar=false", cwd=ema_run["base"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tta=hflip" in result.stdout
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["tta"] == "hflip" and evaluation["weights"] == "ema"

    module = load_classifier(ema_run["best"]).eval()
    images, labels = validation_images(ema_run["task"])
    with torch.no_grad():
        model = module.evaluation_model()
        probabilities = (torch.softmax(model(images), -1) + torch.softmax(model(images.flip(-1)), -1)) / 2
    assert evaluation["metrics"]["val/loss"] == pytest.approx(
        torch.nn.functional.nll_loss(probabilities.log(), labels).item(), abs=1e-4)
    assert evaluation["metrics"]["val/acc"] == pytest.approx(
        (probabilities.argmax(-1) == labels).float().mean().item())


# ----- learning-rate finder ---------------------------------------------------------------------------------------
def test_lr_find_writes_the_curve_and_prints_the_override_to_train_with(tiny_hymenoptera, tmp_path):
    run_dir = tmp_path / "lr_find"
    result = run_cli("lr_find", *cli_overrides(tiny_hymenoptera, run_dir, "lr_find.num_training=24",
                                               "lr_find.min_lr=1e-5", "lr_find.max_lr=1.0",
                                               "lr_find.early_stop_threshold=null"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    found = json.loads((run_dir / "lr_find.json").read_text())
    assert (run_dir / "lr_find.png").stat().st_size > 10_000
    assert found["points"] == len(found["lrs"]) == len(found["losses"]) == 24
    assert found["lrs"][0] == pytest.approx(1e-5) and all(a < b for a, b in zip(found["lrs"], found["lrs"][1:]))
    assert 1e-5 <= found["suggestion"] <= 1.0 and found["suggestion"] in found["lrs"]
    assert found["override"] in result.stdout and found["override"].startswith("optimizer.lr=")
    scales = found["group_scales"]
    assert scales["head"] == 1.0 and {v for k, v in scales.items() if k.startswith("backbone")} == {0.1}
    assert not list(run_dir.glob(".lr_find_*.ckpt")), "the finder's temporary checkpoint is removed"


def test_while_the_finder_runs_each_group_steps_at_its_share_of_the_probed_rate():
    head, backbone = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [head], "lr": 0.5, "lr_scale": 1.0},
                                 {"params": [backbone], "lr": 0.5, "lr_scale": 0.1}])  # as the finder sets them
    for parameter in (head, backbone):
        parameter.grad = torch.ones(1)
    with group_rates_kept():
        optimizer.step()
    assert head.item() == pytest.approx(-0.5) and backbone.item() == pytest.approx(-0.05)
    assert [g["lr"] for g in optimizer.param_groups] == [0.5, 0.5], "the probed rate is put back after the step"
    optimizer.step()  # outside the finder nothing is scaled
    assert backbone.item() == pytest.approx(-0.55)


# ----- config mistakes --------------------------------------------------------------------------------------------
TRAIN_MISTAKES = [
    (["augment.mixup.mixup_alpha=-0.2"], "augment.mixup.mixup_alpha", "augment.mixup.mixup_alpha=0.8"),
    (["augment.mixup.prob=1.5"], "augment.mixup.prob", "augment.mixup.prob=1.0"),
    (["augment.mixup.mode=row"], "augment.mixup.mode", "augment.mixup.mode=batch"),
    (["augment.mixup.label_smoothing=1.0"], "augment.mixup.label_smoothing", "label_smoothing=0.1"),
    (["augment.mixup.cutmix_alpha=1.0", "data.batch_size=5"], "data.batch_size", "data.batch_size=6"),
    (["model.ema.decay=1.0"], "model.ema.decay", "model.ema.decay=0.999"),
    (["model.ema.decay=-0.5"], "model.ema.decay", "model.ema.decay=0.999"),
    (["model.ema.enabled=maybe"], "model.ema.enabled", "model.ema.enabled=true"),
]


@pytest.mark.parametrize(("overrides", "key", "fix"), TRAIN_MISTAKES, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_a_mistake_in_the_new_keys_fails_before_training_naming_key_and_fix(overrides, key, fix, tiny_hymenoptera,
                                                                            tmp_path):
    cfg = compose_train(*tiny_overrides(tiny_hymenoptera, tmp_path, *overrides))
    with pytest.raises(ConfigError) as raised:
        validate_train_config(cfg)
    assert raised.value.key == key and fix in raised.value.fix


def compose(config: str, *overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from visiontrain.config import config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        return hydra_compose(config, overrides=list(overrides))


@pytest.mark.parametrize(("override", "key"), [
    ("lr_find.max_lr=1e-7", "lr_find.max_lr"),
    ("lr_find.num_training=5", "lr_find.num_training"),
    ("lr_find.mode=cosine", "lr_find.mode"),
    ("lr_find.early_stop_threshold=0.5", "lr_find.early_stop_threshold"),
])
def test_lr_find_checks_its_keys(override, key, tiny_hymenoptera, tmp_path):
    cfg = compose("lr_find", *tiny_overrides(tiny_hymenoptera, tmp_path, override))
    with pytest.raises(ConfigError) as raised:
        validate_lr_find_config(cfg)
    assert raised.value.key == key and raised.value.fix.startswith(key)


def test_evaluate_checks_tta_and_the_cli_says_so_without_a_traceback(tmp_path):
    with pytest.raises(ConfigError) as raised:
        validate_evaluate_config(compose("evaluate", "ckpt=x.ckpt", "tta=vflip", f"paths.run_dir={tmp_path}"))
    assert raised.value.key == "tta" and raised.value.fix == "tta=none"

    result = run_cli("evaluate", "ckpt=model.ckpt", "tta=vflip", cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "config key `tta`" in result.stderr and "Traceback" not in result.stderr
