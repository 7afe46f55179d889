"""Weights & Biases for a visiontrain run: online when the user is logged in, offline otherwise, never hanging.

Before an online run starts, the key's shape is checked (wandb's own check) and the W&B server is probed
with a short TCP connect; a malformed key, an unreachable server or a key the server rejects turns the run
offline with one warning, before training, instead of a traceback or wandb's 90 s retry loop.

The run id lives in the run dir (``wandb_run_id``), so ``resume=latest`` continues the same W&B run with no id
typed by hand. Trials of one Hydra sweep share a W&B group. API keys are read by wandb from its own environment
or netrc and never pass through our config.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import string
from pathlib import Path
from typing import Any

from visiontrain.core.wandb_mode import INIT_TIMEOUT_SECONDS, online_problem, resolve_mode, warn_offline

log = logging.getLogger("visiontrain")
RUN_ID_FILE = "wandb_run_id"


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
    run_dir_path = Path(run_dir)
    if resolved == "online" and _offline_because():
        resolved = "offline"
    if resolved == "offline":
        os.environ["WANDB_MODE"] = "offline"  # also for wandb calls outside the logger (artifacts, finish)

    def build(run_mode: str) -> WandbLogger:
        extra = {"mode": "disabled"} if run_mode == "disabled" else {}
        return WandbLogger(project=project, entity=entity, save_dir=str(run_dir_path), id=run_id_for(run_dir_path),
                           resume="allow", offline=run_mode == "offline", group=group or sweep_group(), name=name,
                           tags=list(tags or []), job_type=job_type, log_model=False, **extra)

    if resolved == "online":  # a server that accepts and never answers: wandb would wait 90 s (our default 20 s)
        os.environ.setdefault("WANDB_INIT_TIMEOUT", str(INIT_TIMEOUT_SECONDS))
    logger = build(resolved)
    if resolved == "online":
        import wandb

        try:
            logger.experiment  # noqa: B018 - wandb.init now, before training: a rejected key is handled here
        except wandb.errors.Error as error:
            reason = _first_line(error).replace(os.environ.get("WANDB_API_KEY") or "\0", "***")
            warn_offline(f"W&B refused the online run ({reason})")
            os.environ["WANDB_MODE"] = resolved = "offline"
            wandb.teardown()  # the refused attempt still holds the run id in wandb's service process
            logger = build(resolved)
    log.info("W&B: %s run %s in project %s", resolved, run_id_for(run_dir_path), project)
    return logger


@functools.cache
def _offline_because() -> str | None:
    """The reason to go offline, probed and warned about once per process (cross-validation builds a logger
    per fold)."""
    problem = online_problem()
    if problem:
        warn_offline(problem)
    return problem


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def finish_active_run(exit_code: int) -> None:
    """End the W&B run of this process, if one is open: a failed trial must not leave a sweep hanging."""
    import sys

    if "wandb" not in sys.modules:
        return
    import wandb

    if wandb.run is not None:
        wandb.finish(exit_code=exit_code)
