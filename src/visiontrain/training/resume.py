"""``resume=latest`` (or a checkpoint): continue a run in its own run dir, with no path or W&B id typed by hand.

Resolved before Hydra starts: the override becomes ``hydra.run.dir=<that run's dir>`` and
``ckpt_path=<its last.ckpt>``. Lightning then restores epoch, optimizer, LR schedule and callback states (best-k
checkpoints, early stopping, history); the freeze stage follows from the epoch; the W&B run id is read from the
run dir.
"""

from __future__ import annotations

from pathlib import Path

from visiontrain.errors import ConfigError

LAST = Path("checkpoints") / "last.ckpt"


def _runs_root(config_name: str, overrides: list[str], config_dir: Path) -> Path:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir)):
        cfg = compose(config_name, overrides=overrides)
    return Path(str(cfg.paths.output_dir)).expanduser() / str(cfg.task_name) / "runs"


def latest_checkpoint(runs_root: Path) -> Path | None:
    """The newest ``last.ckpt`` among the runs of one experiment."""
    candidates = [run / LAST for run in runs_root.glob("*") if (run / LAST).is_file()]
    return max(candidates, key=lambda path: path.stat().st_mtime) if candidates else None


def resume_overrides(config_name: str, overrides: list[str], config_dir: Path, multirun: bool) -> list[str]:
    """``overrides`` with ``resume=...`` turned into the run dir and checkpoint to continue from."""
    values = [o.split("=", 1)[1] for o in overrides if o.startswith("resume=")]
    if not values or values[-1] in ("null", "None", ""):
        return overrides
    if multirun:
        raise ConfigError("resume", "cannot resume a sweep as a whole", "resume one trial without -m, "
                          "or start the sweep again")
    others = [o for o in overrides if not o.startswith(("resume=", "ckpt_path=", "hydra.run.dir="))]
    value = values[-1]
    if value == "latest":
        root = _runs_root(config_name, others, config_dir)
        checkpoint = latest_checkpoint(root)
        if checkpoint is None:
            raise ConfigError("resume", f"no run with {LAST} under {root}",
                              "train once first, or resume=<path to a run dir or a .ckpt>")
    else:
        checkpoint = Path(value).expanduser()
        if checkpoint.is_dir():
            checkpoint = checkpoint / LAST
        if not checkpoint.is_file():
            raise ConfigError("resume", f"{checkpoint} does not exist", "resume=latest, or resume=<run dir>/"
                              "checkpoints/last.ckpt")
    checkpoint = checkpoint.resolve()
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    return [*others, f"resume={value}", f"hydra.run.dir='{run_dir}'", f"ckpt_path='{checkpoint}'"]
