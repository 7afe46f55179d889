"""The freeze-then-fine-tune schedule, proven on real images with a real timm backbone and Trainer."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import timm
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from conftest import compose_train, tiny_overrides
from visiontrain.registry import task_for_config
from visiontrain.training.schedule import (
    FineTuneSchedule,
    StagedLR,
    build_param_groups,
    trainable_in_stage_two,
)


def build(data_root: Path, run_dir: Path, *extra: str):
    cfg = compose_train(*tiny_overrides(data_root, run_dir, *extra))
    task = task_for_config(cfg)
    built = task.build(task.prepare(run_dir, True), None)
    datamodule, module = built.datamodule, built.module
    return cfg, datamodule, module


def trainer(run_dir: Path, max_epochs: int, **kwargs) -> pl.Trainer:
    checkpoints = ModelCheckpoint(dirpath=run_dir / "checkpoints", save_top_k=-1, filename="epoch{epoch}", auto_insert_metric_name=False,
                                  save_last=True)
    return pl.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False, callbacks=[checkpoints],
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      limit_train_batches=3, **kwargs)


def snapshot(module) -> dict[str, dict[str, torch.Tensor]]:
    state = {k: v.detach().clone() for k, v in module.model.state_dict().items()}
    head = {k: v for k, v in state.items() if k in module.head_names}
    backbone = {k: v for k, v in state.items() if k not in module.head_names}
    return {"head": head, "backbone": backbone}


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    return [name for name in before if not torch.equal(before[name], after[name])]


def test_stage_one_trains_only_the_head_and_stage_two_trains_the_backbone(tiny_hymenoptera, tmp_path):
    _, datamodule, module = build(tiny_hymenoptera, tmp_path, "schedule.freeze_epochs=1", "schedule.bn_stats=train")
    initial = snapshot(module)
    assert any("running_mean" in k for k in initial["backbone"]), "the test backbone must have BatchNorm"

    trainer(tmp_path, max_epochs=1).fit(module, datamodule=datamodule)
    after_stage_one = snapshot(module)
    assert changed(initial["backbone"], after_stage_one["backbone"]) == []  # weights and BN buffers bit-identical
    assert changed(initial["head"], after_stage_one["head"]), "the head must learn in stage 1"

    trainer(tmp_path, max_epochs=2).fit(module, datamodule=datamodule, ckpt_path=str(tmp_path / "checkpoints/last.ckpt"))
    after_stage_two = snapshot(module)
    moved = changed(after_stage_one["backbone"], after_stage_two["backbone"])
    weights = [k for k in after_stage_one["backbone"] if k.endswith("weight")]
    assert set(weights) <= set(moved), "every backbone weight must train in stage 2"
    assert any("running_mean" in k for k in moved), "BatchNorm statistics update once unfrozen"


def test_resume_after_the_unfreeze_keeps_the_backbone_trainable(tiny_hymenoptera, tmp_path):
    """Lightning's BackboneFinetuning has re-frozen modules on resume (Lightning #21901); we must not."""
    _, datamodule, module = build(tiny_hymenoptera, tmp_path, "schedule.freeze_epochs=1")
    trainer(tmp_path, max_epochs=2).fit(module, datamodule=datamodule)
    after_unfreeze = tmp_path / "checkpoints" / "epoch1.ckpt"
    assert after_unfreeze.is_file()

    _, datamodule, resumed = build(tiny_hymenoptera, tmp_path / "resumed", "schedule.freeze_epochs=1")
    resumed_trainer = trainer(tmp_path / "resumed", max_epochs=3)
    resumed_trainer.fit(resumed, datamodule=datamodule, ckpt_path=str(after_unfreeze))
    assert resumed_trainer.current_epoch == 3
    assert resumed.backbone_frozen is False
    saved = torch.load(after_unfreeze, map_location="cpu", weights_only=True)["state_dict"]
    backbone_weights = [k for k in saved if k.startswith("model.") and k[6:] not in resumed.head_names
                        and k.endswith("weight")]
    now = resumed.state_dict()
    assert all(not torch.equal(saved[k], now[k]) for k in backbone_weights), "backbone must train after resume"
    backbone_groups = [g for g in resumed_trainer.optimizers[0].param_groups if g["role"] == "backbone"]
    assert backbone_groups and all(g["lr"] > 0 for g in backbone_groups)


def test_optimizer_groups_carry_the_configured_rates(tiny_hymenoptera, tmp_path):
    _, datamodule, module = build(tiny_hymenoptera, tmp_path, "optimizer.lr=0.01", "optimizer.weight_decay=0.1",
                                  "schedule.backbone_lr_scale=0.1", "schedule.layer_decay=0.5",
                                  "schedule.freeze_epochs=1", "trainer.max_epochs=4")
    fit_trainer = trainer(tmp_path, max_epochs=4)
    fit_trainer.fit(module, datamodule=datamodule)
    groups = fit_trainer.optimizers[0].param_groups
    head = [g for g in groups if g["role"] == "head"]
    backbone = sorted((g for g in groups if g["role"] == "backbone"), key=lambda g: -g["initial_lr"])
    assert {g["initial_lr"] for g in head} == {0.01}
    depth = max(module.layer_ids.values()) + 1
    for group in backbone:
        layer = int(group["name"].split(".layer")[1].split(".")[0])
        assert group["initial_lr"] == pytest.approx(0.01 * 0.1 * 0.5 ** (depth - 1 - layer))
    assert backbone[0]["initial_lr"] == pytest.approx(0.001)  # the top layer gets lr x backbone_lr_scale
    assert all(g["weight_decay"] == (0.0 if g["name"].endswith("no_decay") else 0.1) for g in groups)
    covered = {id(p) for g in groups for p in g["params"]}
    assert covered == {id(p) for p in module.model.parameters()}, "every parameter is in exactly one group"


def test_partial_unfreeze_trains_only_the_top_blocks(tiny_hymenoptera, tmp_path):
    _, datamodule, module = build(tiny_hymenoptera, tmp_path, "schedule.freeze_epochs=1", "schedule.unfreeze=1")
    initial = snapshot(module)
    trainer(tmp_path, max_epochs=2).fit(module, datamodule=datamodule)
    moved = set(changed(initial["backbone"], snapshot(module)["backbone"]))
    assert moved and all(name.startswith("layer4.") for name in moved), sorted(moved)[:5]


def test_learning_rate_curve_has_the_two_stages():
    head = StagedLR("head", steps_per_epoch=10, total_steps=100, freeze_epochs=2, warmup_epochs=1, min_lr_ratio=0.01)
    backbone = StagedLR("backbone", 10, 100, 2, 1, 0.01)
    assert [backbone(s) for s in range(20)] == [0.0] * 20  # frozen: no backbone updates
    assert [head(s) for s in range(20)] == [1.0] * 20  # a zero head on frozen features: a linear probe, no warmup
    assert backbone(20) == pytest.approx(0.1) and backbone(29) == pytest.approx(0.97, abs=0.01)  # warmup
    assert head(20) == pytest.approx(1.0)  # the head does not re-warm
    assert head(99) == pytest.approx(0.01, abs=0.005) and backbone(99) == pytest.approx(0.01, abs=0.005)
    assert all(head(s) >= head(s + 1) for s in range(20, 99))  # cosine decays monotonically


def test_without_a_frozen_stage_everything_warms_up_together():
    head, backbone = (StagedLR(role, 10, 100, 0, 1, 0.01) for role in ("head", "backbone"))
    assert head(0) == backbone(0) == pytest.approx(0.1) and head(9) == pytest.approx(1.0, abs=0.03)


def test_batchnorm_keeps_its_pretrained_statistics_while_fine_tuning(tiny_hymenoptera, tmp_path):
    """schedule.bn_stats=frozen (freeze_then_finetune's default): stage 2 trains the weights, not the statistics."""
    for bn_stats, statistics_move in (("frozen", False), ("train", True)):
        _, datamodule, module = build(tiny_hymenoptera, tmp_path, "schedule.freeze_epochs=1",
                                      f"schedule.bn_stats={bn_stats}")
        norms = [m for m in module.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        means, scales = [m.running_mean.clone() for m in norms], [m.weight.detach().clone() for m in norms]
        trainer(tmp_path / bn_stats, max_epochs=2).fit(module, datamodule=datamodule)
        assert any(not torch.equal(a, m.running_mean) for a, m in zip(means, norms)) == statistics_move, bn_stats
        assert any(not torch.equal(a, m.weight) for a, m in zip(scales, norms))  # their scales train either way


def test_frozen_stage_is_derived_from_the_epoch():
    schedule = FineTuneSchedule(freeze_epochs=3)
    assert [schedule.is_frozen(e) for e in range(5)] == [True, True, True, False, False]
    layers = {"stem.w": 0, "a.w": 1, "b.w": 2, "c.w": 3}
    assert trainable_in_stage_two(layers, "all") == set(layers)
    assert trainable_in_stage_two(layers, 2) == {"b.w", "c.w"}
    assert trainable_in_stage_two(layers, 0) == set()


def test_vit_tokens_and_position_embedding_get_no_weight_decay():
    """What timm's no_weight_decay() names (cls_token, pos_embed) trains without decay, as biases and norms do."""
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, img_size=32)
    names = {name for name, _ in model.named_parameters()}
    head = {name for name in names if name.startswith("head.")}
    layer_ids = {name: 0 for name in names - head}
    groups = build_param_groups(model, head, layer_ids, names - head, lr=0.01, weight_decay=0.05,
                                schedule=FineTuneSchedule())
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    parameters = dict(model.named_parameters())
    assert {"cls_token", "pos_embed"} <= set(model.no_weight_decay())
    for name in ("cls_token", "pos_embed", "blocks.0.norm1.weight", "blocks.0.attn.qkv.bias", "head.bias"):
        assert decay_of[id(parameters[name])] == 0.0, name
    for name in ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "head.weight"):
        assert decay_of[id(parameters[name])] == 0.05, name
    assert len(decay_of) == len(parameters), "every parameter is in exactly one group"
