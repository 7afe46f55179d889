"""What a run that fails leaves behind: one line for a user's mistake (no traceback), the exit code, the error
in the run's log, and, in a sweep, the failed trial's record while the sweep goes on.

The `visiontrain` command (:mod:`visiontrain.cli`) calls these around every command; Hydra's run dir is where
they write.
"""

from __future__ import annotations

import sys
from pathlib import Path

from visiontrain.core.exits import user_error


def as_write_error(error: Exception, command: str) -> Exception:
    """A write the run dir refused, wherever in ``error``'s chain (any writer, teardown included), as one
    :class:`RunWriteError` naming the folder to fix; any other error as it is."""
    from hydra.core.hydra_config import HydraConfig

    from visiontrain.errors import run_write_error, write_failure

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    failure = write_failure(error, run_dir)
    return error if failure is None else run_write_error(failure, run_dir, command)


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


def sweeper_counts_exceptions() -> bool:
    """Whether the sweeper records a trial's exception itself (the Optuna sweeper: failed or pruned), rather
    than stopping at it (Hydra's basic sweeper: the trial returns NaN instead)."""
    from hydra.core.hydra_config import HydraConfig

    return "optuna" in str(HydraConfig.get().sweeper.get("_target_", "")).lower()


def record_failed_trial(error: Exception) -> None:
    """Write failed.json (error, traceback, overrides) in the trial's dir for the sweep summary."""
    import json
    import traceback

    from hydra.core.hydra_config import HydraConfig

    from visiontrain.core.redaction import redact_text
    from visiontrain.sweeps.summary import FAILED_FILE

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    message = redact_text(f"{type(error).__name__}: {error}")
    (run_dir / FAILED_FILE).write_text(json.dumps({
        "error": message, "traceback": redact_text(traceback.format_exc()),
        "overrides": list(HydraConfig.get().overrides.task)}, indent=2))
    print(f"visiontrain: trial {run_dir.name} failed ({message}); the sweep goes on", file=sys.stderr, flush=True)


def close_failed_run(error: BaseException) -> None:
    """A run stopped by a user error: the error in its log file; after a config mistake, no run dir at all.

    The console already has the error from :func:`exit_with`; the log file gets it too, so a kept run dir says
    why it stopped. A config mistake is fixed on the command line and nothing ran: its dir (only Hydra's files)
    is removed, with the folders above it that this run made. Any other error (the data, a checkpoint, the
    weights) leaves the dir as a record of what was tried: the config, the log with the error, and whatever the
    run wrote (a rejects report, a data report, a resumed run's checkpoints).
    """
    import logging
    import shutil

    from hydra.core.hydra_config import HydraConfig

    from visiontrain.core.log_routing import FILE_ONLY
    from visiontrain.core.redaction import redact_text
    from visiontrain.errors import ConfigError

    kind, _ = user_error(error)
    logging.getLogger("visiontrain").error("%s: %s", kind, redact_text(str(error)), extra=FILE_ONLY)
    if not isinstance(error, ConfigError):
        return
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if run_dir.is_dir() and all(p.name == ".hydra" or p.suffix == ".log" for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)
        for parent in run_dir.parents:  # outputs/<experiment>/runs, if this run made them
            if parent == Path.cwd() or any(parent.iterdir()):
                break
            parent.rmdir()
