"""Weights & Biases for a visiontrain run: online when the user is logged in, offline otherwise, never hanging.

The run id lives in the run dir (``wandb_run_id``), so ``resume=latest`` continues the same W&B run with no id
typed by hand. Trials of one Hydra sweep share a W&B group. API keys are read by wandb from its own environment
or netrc and never pass through our config.
"""

from __future__ import annotations

import logging
import netrc
import os
import secrets
import string
from pathlib import Path
from typing import Any

log = logging.getLogger("visiontrain")
RUN_ID_FILE = "wandb_run_id"


def resolve_mode(mode: str = "auto") -> str:
    """online | offline | disabled. ``auto``: WANDB_MODE if set, online with credentials, else offline."""
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        credentials = netrc.netrc().authenticators("api.wandb.ai")
    except (OSError, netrc.NetrcParseError):
        credentials = None
    return "online" if credentials else "offline"


def run_id_for(run_dir: Path) -> str:
    """This run dir's W&B id: created once, reused when the run is resumed (WANDB_RUN_ID wins)."""
    path = Path(run_dir) / RUN_ID_FILE
    if os.environ.get("WANDB_RUN_ID"):  # a W&B Sweeps agent (or the user) chose the id: keep it
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(os.environ["WANDB_RUN_ID"] + "\n")
        return os.environ["WANDB_RUN_ID"]
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    alphabet = string.ascii_lowercase + string.digits  # W&B's own id alphabet
    run_id = "".join(secrets.choice(alphabet) for _ in range(8))
    path.write_text(run_id + "\n")
    return run_id


def sweep_group() -> str | None:
    """The sweep's name in a Hydra multirun (``<experiment>-<sweep dir>``), so its trials group together."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
    except (ImportError, ValueError):
        return None
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return f"{hydra_cfg.job.config_name}-{Path(hydra_cfg.sweep.dir).name}"


def create_wandb_logger(project: str, run_dir: str, mode: str = "auto", entity: str | None = None,
                        group: str | None = None, name: str | None = None, tags: list[str] | None = None,
                        job_type: str = "train") -> Any:
    """A Lightning ``WandbLogger`` writing under ``run_dir/wandb``, resuming this run dir's W&B run."""
    from lightning.pytorch.loggers import WandbLogger

    resolved = resolve_mode(mode)
    os.environ.setdefault("WANDB_SILENT", "true")
    if resolved == "offline":
        os.environ["WANDB_MODE"] = "offline"  # also for wandb calls outside the logger (artifacts, finish)
    run_dir_path = Path(run_dir)
    log.info("W&B: %s run %s in project %s", resolved, run_id_for(run_dir_path), project)
    extra = {"mode": "disabled"} if resolved == "disabled" else {}
    return WandbLogger(project=project, entity=entity, save_dir=str(run_dir_path), id=run_id_for(run_dir_path),
                       resume="allow", offline=resolved == "offline", group=group or sweep_group(), name=name,
                       tags=list(tags or []), job_type=job_type, log_model=False, **extra)


def finish_active_run(exit_code: int) -> None:
    """End the W&B run of this process, if one is open: a failed trial must not leave a sweep hanging."""
    import sys

    if "wandb" not in sys.modules:
        return
    import wandb

    if wandb.run is not None:
        wandb.finish(exit_code=exit_code)
