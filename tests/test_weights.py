"""Pretrained weights: local files are really loaded (weights equal after load); unsafe files are refused."""

from __future__ import annotations

import pickle

import pytest
import timm
import torch
from safetensors.torch import save_file

from conftest import TINY_BACKBONE
from visiontrain.errors import WeightsError
from visiontrain.image.backbone import create_backbone
from visiontrain.image.classifier import ImageClassifier

SPEC = {"image_size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}  # an InputSpec.to_dict() in short


def donor_state(num_classes: int = 7) -> dict[str, torch.Tensor]:
    """Weights of a backbone 'trained elsewhere': a different seed and a head of another size."""
    torch.manual_seed(123)
    return {k: v.clone() for k, v in timm.create_model(TINY_BACKBONE, num_classes=num_classes).state_dict().items()}


def assert_backbone_loaded(module: ImageClassifier, donor: dict[str, torch.Tensor]) -> None:
    own = module.model.state_dict()
    backbone = [k for k in donor if k not in module.head_names]
    assert backbone and all(torch.equal(own[k], donor[k]) for k in backbone)
    assert own["fc.weight"].shape[0] == 2  # the new head keeps the new task's size
    assert sorted(module.weights_report["skipped_names"]) == ["fc.bias", "fc.weight"] and module.weights_report["head"] == "re-created"


def test_safetensors_weights_are_loaded(tmp_path):
    donor = donor_state()
    save_file(donor, str(tmp_path / "backbone.safetensors"))
    module = ImageClassifier(TINY_BACKBONE, ["ant", "bee"], SPEC, weights_file=str(tmp_path / "backbone.safetensors"))
    assert_backbone_loaded(module, donor)


def test_pth_state_dict_is_loaded(tmp_path):
    donor = donor_state()
    torch.save({"model": donor, "epoch": 3}, tmp_path / "backbone.pth")  # the layout timm's train.py saves
    module = ImageClassifier(TINY_BACKBONE, ["ant", "bee"], SPEC, weights_file=str(tmp_path / "backbone.pth"))
    assert_backbone_loaded(module, donor)


def test_visiontrain_checkpoint_seeds_a_new_task(tmp_path):
    import lightning.pytorch as pl

    source = ImageClassifier(TINY_BACKBONE, [str(i) for i in range(7)], SPEC)
    trainer = pl.Trainer(max_epochs=0, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(source)
    trainer.save_checkpoint(tmp_path / "other_task.ckpt")
    module = ImageClassifier(TINY_BACKBONE, ["ant", "bee"], SPEC, weights_file=str(tmp_path / "other_task.ckpt"))
    assert_backbone_loaded(module, source.model.state_dict())


class Payload:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    with (tmp_path / "evil.pth").open("wb") as handle:
        pickle.dump({"model": Payload()}, handle)
    with pytest.raises(WeightsError, match="cannot read .* safely"):
        ImageClassifier(TINY_BACKBONE, ["ant", "bee"], SPEC, weights_file=str(tmp_path / "evil.pth"))


def test_weights_of_another_architecture_are_refused(tmp_path):
    save_file(timm.create_model("resnet18", num_classes=2).state_dict(), str(tmp_path / "resnet18.safetensors"))
    with pytest.raises(WeightsError, match="does not fit this backbone"):
        ImageClassifier(TINY_BACKBONE, ["ant", "bee"], SPEC, weights_file=str(tmp_path / "resnet18.safetensors"))


def test_unreachable_hub_names_the_local_file_option(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as HF_HUB_OFFLINE=1 would
    with pytest.raises(WeightsError) as error:
        create_backbone("resnet18", num_classes=2, pretrained=True)
    assert "model.weights_file=" in str(error.value) and "hub" in str(error.value)


def test_without_network_pretrained_weights_come_from_the_hub_cache_at_once(tiny_hymenoptera, tmp_path):
    """`model.pretrained=true` offline: the real timm / hub code loads cached weights, no retries, no env var."""
    from safetensors.torch import load_file

    from conftest import run_cli
    from visiontrain.image.backbone import hub_reachable

    if hub_reachable():
        pytest.skip("the model hub is reachable from here; this checks the offline path")
    hub_id = timm.get_pretrained_cfg("resnet18").hf_hub_id
    repo = tmp_path / "hub" / f"models--{hub_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    torch.manual_seed(5)
    save_file(timm.create_model("resnet18").state_dict(), str(snapshot / "model.safetensors"))  # "the hub's"

    run_dir = tmp_path / "run"
    result = run_cli("train", "experiment=hymenoptera", f"data.root={tiny_hymenoptera}", "model.backbone=resnet18",
                     "model.weights=null", "model.pretrained=true", "model.input.image_size=32", "data.num_workers=0", "trainer.max_epochs=2",
                     "schedule.freeze_epochs=1", "callbacks.model_checkpoint.save_top_k=-1",
                     "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", cwd=tmp_path,
                     env={"HF_HUB_OFFLINE": None, "HF_HUB_CACHE": str(tmp_path / "hub")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "unreachable: looking for pretrained weights in the local cache only" in result.stdout + result.stderr
    cached = load_file(str(snapshot / "model.safetensors"))
    state = torch.load(run_dir / "checkpoints" / "best-epoch000.ckpt", weights_only=True)["state_dict"]
    backbone = {k: v for k, v in cached.items() if not k.startswith("fc.")}
    assert all(torch.equal(state[f"model.{k}"], v) for k, v in backbone.items())  # frozen epoch: unchanged
