"""The freeze-then-fine-tune schedule under two-process DDP on CPU (gloo), launched through Hydra."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from safetensors.torch import save_file

from conftest import TINY_BACKBONE, run_cli


@pytest.mark.ddp
def test_schedule_runs_under_two_process_ddp(tiny_hymenoptera, tmp_path):
    torch.manual_seed(11)
    initial = timm.create_model(TINY_BACKBONE, num_classes=2).state_dict()
    save_file(initial, str(tmp_path / "init.safetensors"))
    run_dir = tmp_path / "run"
    result = run_cli("train", "experiment=hymenoptera", f"data.root={tiny_hymenoptera}", "trainer=ddp",
                     "trainer.accelerator=cpu", "trainer.devices=2",
                     "trainer.precision=32-true", f"model.backbone={TINY_BACKBONE}",
                     "model.weights=null", f"model.weights_file={tmp_path / 'init.safetensors'}",
                     "model.input.image_size=32", "data.batch_size=4", "data.num_workers=0",
                     "schedule.freeze_epochs=1", "trainer.max_epochs=2", "callbacks.model_checkpoint.save_top_k=-1",
                     "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    logs = "".join(path.read_text() for path in sorted(run_dir.glob("*.log")))  # Lightning's info lines: logs only
    output = result.stdout + result.stderr + logs
    assert result.returncode == 0, output[-5000:]
    assert "MEMBER: 2/2" in output, "two processes must have joined the process group"
    assert not (tmp_path / "outputs").exists(), "DDP workers must reuse the run dir, not create their own"

    def backbone(epoch: int) -> dict[str, torch.Tensor]:
        path = run_dir / "checkpoints" / f"best-epoch{epoch:03d}.ckpt"
        state = torch.load(path, weights_only=True)["state_dict"]
        return {k[6:]: v for k, v in state.items() if k.startswith("model.") and not k.startswith("model.fc.")}

    assert all(torch.equal(v, initial[k]) for k, v in backbone(0).items())  # frozen, BN statistics included
    assert any(not torch.equal(v, initial[k]) for k, v in backbone(1).items() if k.endswith("weight"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["export"]["parity"]["passed"]
