"""``resume=latest`` (or a checkpoint): continue a run in its own run dir, with no path or W&B id typed by hand.

Resolved before Hydra starts: the override becomes ``hydra.run.dir=<that run's dir>`` and
``ckpt_path=<its last.ckpt>``; a checkpoint outside any run dir is refused (``ckpt_path=`` starts a new run from
it); a damaged ``last.ckpt`` (a kill mid-write on an old version, a full disk) falls back to the newest intact
checkpoint of the run, with a warning. Lightning then restores epoch, optimizer, LR schedule and callback states
(best-k checkpoints, early stopping, history); the freeze stage follows from the epoch; the W&B run id is read
from the run dir.
"""

from __future__ import annotations

import logging
from pathlib import Path

from visiontrain.core.atomic import TEMPORARY_SUFFIX
from visiontrain.errors import CheckpointError, CheckpointRefused, ConfigError
from visiontrain.training.checkpoints import checkpoint_info, newest_intact

log = logging.getLogger("visiontrain")

LAST = Path("checkpoints") / "last.ckpt"
RUN_CONFIG = Path(".hydra") / "config.yaml"  # Hydra writes it into every run dir as the run starts


def _runs_root(config_name: str, overrides: list[str], config_dir: Path) -> Path:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir)):
        cfg = compose(config_name, overrides=overrides)
    return Path(str(cfg.paths.output_dir)).expanduser() / str(cfg.task_name) / "runs"


def latest_checkpoint(runs_root: Path) -> Path | None:
    """The checkpoints folder of the newest run of one experiment (the run whose last checkpoint is newest)."""
    folders = [run / LAST.parent for run in runs_root.glob("*") if any((run / LAST.parent).glob("*.ckpt"))]
    if not folders:
        return None
    return max(folders, key=lambda folder: max(p.stat().st_mtime for p in folder.glob("*.ckpt"))) / LAST.name


def intact_checkpoint(requested: Path) -> Path:
    """``requested`` if it loads; else the newest intact checkpoint beside it, with a warning saying why.

    Temporary files left by a write that was killed are removed first; they never held a finished checkpoint.
    """
    for leftover in requested.parent.glob(f".*{TEMPORARY_SUFFIX}"):
        log.warning("resume: removing %s, left by a checkpoint write that was interrupted", leftover.name)
        leftover.unlink(missing_ok=True)
    try:
        checkpoint_info(requested, key="resume")
        return requested
    except CheckpointRefused:
        raise  # not damaged but hostile: someone wrote it, and no other file of that run is to be trusted blindly
    except CheckpointError as error:
        if requested.exists() and requested.name != LAST.name:
            raise  # a checkpoint named by hand: resume exactly that one, or say why not
        damaged = str(error)
    fallback, problems = newest_intact(requested.parent, preferred=requested, key="resume")
    if fallback is None:
        raise CheckpointError(f"no intact checkpoint to resume from in {requested.parent}: " + "; ".join(
            [damaged, *[p for p in problems if damaged not in p]]))
    aside = requested.with_name(requested.name + ".damaged")
    if requested.exists():  # kept for a look, out of the way of the next last.ckpt
        requested.replace(aside)
    log.warning("resume: %s; resuming from %s (epoch %d) instead, the newest intact checkpoint of the run "
                "(the damaged file is kept as %s)", damaged, fallback.path.name, fallback.epoch, aside.name)
    return fallback.path


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
            raise ConfigError("resume", f"no run with checkpoints under {root}",
                              "train once first, or resume=<path to a run dir or a .ckpt>")
    else:
        checkpoint = Path(value).expanduser()
        if checkpoint.is_dir():
            checkpoint = checkpoint / LAST if (checkpoint / LAST.parent).is_dir() else checkpoint / LAST.name
        if not checkpoint.is_file() and not any(checkpoint.parent.glob("*.ckpt")):
            raise ConfigError("resume", f"{checkpoint} does not exist", "resume=latest, or resume=<run dir>/"
                              "checkpoints/last.ckpt")
    checkpoint = checkpoint.resolve()
    run_dir = run_dir_of(checkpoint)
    checkpoint = intact_checkpoint(checkpoint)
    return [*others, f"resume={value}", f"hydra.run.dir='{run_dir}'", f"ckpt_path='{checkpoint}'"]


def run_dir_of(checkpoint: Path) -> Path:
    """The run dir a resume from ``checkpoint`` continues (and writes into): the one it was saved in.

    A run dir is a folder Hydra ran a run in (it holds ``.hydra/config.yaml``), with the checkpoint in its
    ``checkpoints/`` or beside it. A checkpoint anywhere else (downloaded, copied out) is refused before anything
    is written: resuming would fill its folder with a whole run. ``ckpt_path=`` continues its training in a new run
    dir instead, under outputs/ or wherever ``hydra.run.dir=`` says.
    """
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == LAST.parent.name else checkpoint.parent
    if not (run_dir / RUN_CONFIG).is_file():
        raise ConfigError("resume", f"{checkpoint} is not in a run dir ({run_dir} has no {RUN_CONFIG}), and "
                          "resuming writes a whole run (checkpoints, history, reports, ONNX) into its run dir",
                          f"ckpt_path={checkpoint} to continue its training in a new run dir (outputs/<experiment>/"
                          "runs/<time>; add hydra.run.dir=<folder> to choose it), or resume=<the run dir it was "
                          "saved in>")
    return run_dir
