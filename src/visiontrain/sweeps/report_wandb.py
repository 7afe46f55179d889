"""The sweep report as one W&B run beside the trials: same group, job_type ``sweep``, named ``<group>-report``.

It holds the plots as images, the summary table as a ``wandb.Table`` and the best value, params and command in
its summary. Online or offline is decided as for training runs (:mod:`visiontrain.core.wandb_mode`): with no
API key and no netrc entry it is offline, under ``<sweep dir>/wandb``. The run is always finished, and a W&B
failure is a warning: the report files are already written by then.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from visiontrain.core.redaction import redact_text
from visiontrain.core.wandb_mode import INIT_TIMEOUT_SECONDS, online_problem, resolve_mode, warn_offline

log = logging.getLogger("visiontrain")
CONFIG_KEYS = ("project", "entity", "tags")  # what the report run takes from the sweep's logger.wandb node
STUDY_KEYS = ("metric", "mode", "n_trials", "storage", "command")  # the study attrs kept as the run's config


def log_report(config: Mapping[str, Any], sweep_dir: Path, group: str, *, columns: Sequence[str],
               rows: Sequence[Mapping[str, Any]], plots: Mapping[str, Path], best: Mapping[str, Any] | None,
               best_command: str | None, best_params: Mapping[str, Any],
               study_attrs: Mapping[str, Any]) -> Path | None:
    """Log the report to W&B; the run's files folder, or None when W&B is disabled or failed (warned)."""
    mode = resolve_mode(str(config.get("mode") or "auto"))
    if mode == "disabled":
        return None
    if mode == "online" and (problem := online_problem()):
        warn_offline(problem, str(sweep_dir))
        mode = "offline"
    try:
        import wandb

        run = _start(wandb, config, sweep_dir, group, mode, study_attrs)
    except Exception as error:  # noqa: BLE001 - W&B down or refusing: the files are written, say so and go on
        log.warning("W&B: the sweep report run could not start (%s); the report is in %s", _said(error), sweep_dir)
        return None
    exit_code = 1
    try:
        images = {f"plots/{name}": wandb.Image(str(path)) for name, path in plots.items()}
        table = wandb.Table(columns=list(columns), data=[[row.get(c) for c in columns] for row in rows],
                            allow_mixed_types=True)
        run.log({"trials": table, **images})
        if best is not None:
            run.summary.update({"best_value": best["value"], "best_trial": best["trial"],
                                "best_params": dict(best_params), "best_command": best_command})
        exit_code = 0
        return Path(run.dir).parent
    except Exception as error:  # noqa: BLE001
        log.warning("W&B: logging the sweep report failed (%s); the report is in %s", _said(error), sweep_dir)
        return None
    finally:
        run.finish(exit_code=exit_code)


def _start(wandb: Any, config: Mapping[str, Any], sweep_dir: Path, group: str, mode: str,
           study_attrs: Mapping[str, Any]) -> Any:
    """``wandb.init`` of the report run; a key the server refuses means offline, as for training runs."""
    settings = wandb.Settings(silent=True, init_timeout=float(os.environ.get("WANDB_INIT_TIMEOUT",
                                                                             INIT_TIMEOUT_SECONDS)))
    chosen = {key: config[key] for key in CONFIG_KEYS if config.get(key) is not None}
    if "tags" in chosen:
        chosen["tags"] = [str(tag) for tag in chosen["tags"]]
    run_config = {key: redact_text(str(study_attrs[key])) if key == "storage" else study_attrs[key]
                  for key in STUDY_KEYS if key in study_attrs}
    sweep_dir.mkdir(parents=True, exist_ok=True)

    def init(run_mode: str) -> Any:
        return wandb.init(**chosen, group=group, job_type="sweep", name=f"{group}-report", dir=str(sweep_dir),
                          mode=run_mode, reinit="create_new", settings=settings, config=run_config)

    if mode != "online":
        return init(mode)
    try:
        return init(mode)
    except wandb.errors.Error as error:
        warn_offline(f"W&B refused the online run ({_said(error)})", str(sweep_dir))
        wandb.teardown()  # the refused attempt still holds the run in wandb's service process
        return init("offline")


def _said(error: BaseException) -> str:
    """One line about ``error`` with any API key in it masked."""
    text = redact_text(f"{type(error).__name__}: {error}", os.environ.get("WANDB_API_KEY") or "")
    return text.strip().splitlines()[0]
