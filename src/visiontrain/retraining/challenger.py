"""Train the challenger: the champion's own command line, replayed on the fresh training part.

The recorded overrides (the champion run's ``.hydra/overrides.yaml``) are kept as they are, except those that
named where the data came from (replaced by the training part), where runs go (``hydra.*``, ``paths.run_dir``,
``paths.output_dir``), whether to export (it must), a run to continue (``resume``, ``ckpt_path``) or a sweep (``hparams_search``: a trial's
own values are in its overrides). ``extra_overrides`` come last. The result runs as a fresh `visiontrain train`
process with this Python, so every check of the command line applies to it as to anything a user types; nothing
of the record is instantiated here. Its output goes to the console (each line marked) and to ``challenger.log``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from visiontrain.config.overrides import quoted_override
from visiontrain.errors import ChallengerFailed, ConfigError
from visiontrain.retraining.holdout import IMAGES, TABLE, HeldOut

# the keys that say where a run's data comes from, per kind of data: the training part replaces them
DATA_KEYS = {TABLE: ("data.source", "data.source_env", "data.table", "data.query", "data.format"),
             IMAGES: ("data.root", "data.format", "data.builtin", "data.allow_outside_root")}
NOT_REPLAYED = ("resume", "ckpt_path", "hparams_search", "paths.run_dir", "paths.output_dir",
                "export.onnx",  # the challenger is compared and registered as its ONNX file
                "register", "registry", "register_alias")  # ... by retrain, once, and only then promoted
LOG_FILE = "challenger.log"


@dataclass(frozen=True)
class Replay:
    """The challenger's command line, and how it was made from the champion's."""

    overrides: tuple[str, ...]  # what `visiontrain train` receives, in order
    kept: tuple[str, ...]  # the champion's overrides replayed as they were
    dropped: tuple[str, ...]  # the champion's overrides left out (data, run dirs, resume, sweeps)
    added: tuple[str, ...]  # the data, extra_overrides and the run dir

    def as_dict(self) -> dict[str, list[str]]:
        return {name: list(getattr(self, name)) for name in ("overrides", "kept", "dropped", "added")}


def override_key(override: str) -> str:
    """``data.source`` of ``data.source=x``, ``+data.source=x`` and ``~data.source``."""
    return override.split("=", 1)[0].lstrip("+~").strip()


def _owned(key: str, kind: str) -> bool:
    """Whether retraining decides ``key`` itself (so neither the record nor extra_overrides may set it)."""
    return key.startswith(("hydra.", "hydra/")) or key == "hydra" or key in NOT_REPLAYED or key in DATA_KEYS[kind]


def check_extra_overrides(extra: Sequence[str], kind: str) -> None:
    """``extra_overrides`` may change how the challenger trains, not its data or where it runs."""
    for override in extra:
        key = override_key(override)
        if _owned(key, kind):
            raise ConfigError("extra_overrides", f"`{override}` sets {key}, which retraining decides: the data is "
                              "the fresh training part, the run dir is inside this run's",
                              "drop it from extra_overrides (data=<fresh data> chooses the data)")


def _trained_on_builtin(config_text: str | None) -> bool:
    """Whether the champion's composed config read a built-in dataset (``data.builtin``), which the fresh data
    replaces. Plain YAML: nothing in it is resolved or instantiated."""
    if not config_text:
        return False
    config = OmegaConf.create(config_text)
    return bool(OmegaConf.select(config, "data.builtin", default=None, throw_on_resolution_failure=False))


def replay_overrides(recorded: Sequence[str], held_out: HeldOut, extra: Sequence[str], run_dir: Path,
                     config_text: str | None = None) -> Replay:
    """The champion's overrides with the training part as data, then ``extra``, then the challenger's run dir."""
    kept = tuple(o for o in recorded if not _owned(override_key(o), held_out.kind))
    dropped = tuple(o for o in recorded if o not in kept)
    data = [_override("data.source" if held_out.kind == TABLE else "data.root", str(held_out.train_file))]
    if held_out.kind != TABLE:
        data += ["data.format=manifest", "data.allow_outside_root=true"]  # our manifest names the fresh files
        if _trained_on_builtin(config_text):
            data.append("data.builtin=null")
    added = (*data, *extra, _override("hydra.run.dir", str(run_dir)))
    return Replay(overrides=(*kept, *added), kept=kept, dropped=dropped, added=added)


def _override(key: str, value: str) -> str:
    """``key=value`` that Hydra reads back as exactly ``value`` (quoted when the path holds grammar characters)."""
    plain = f"{key}={value}"
    if all(c.isalnum() or c in "/._-+:@" for c in value):
        return plain
    quoted = quoted_override(key, value)
    if quoted is None:
        raise ConfigError(key, f"the path {value!r} cannot be passed to `visiontrain train` as an override",
                          "use a run dir and data path without quotes and backslashes")
    return quoted


def train_challenger(replay: Replay, run_dir: Path, log_dir: Path) -> Path:
    """Run `visiontrain train` with ``replay``'s overrides; returns its run dir (holding model.onnx)."""
    command = [sys.executable, "-m", "visiontrain", "train", *replay.overrides]
    log_file = log_dir / LOG_FILE
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    print(f"visiontrain retrain: training the challenger in {run_dir}\n  visiontrain train "
          f"{' '.join(replay.overrides)}", flush=True)
    last_error = ""
    with log_file.open("w") as log, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                     text=True, env=env) as process:
        try:
            for line in process.stdout or ():
                log.write(line)
                print(f"  challenger | {line}", end="", flush=True)
                if line.startswith("visiontrain: "):
                    last_error = line.strip()
            code = process.wait()
        except BaseException:  # interrupted (Ctrl-C, a job's deadline): the training stops with us
            process.terminate()
            raise
    model = run_dir / "model.onnx"
    if code != 0 or not model.is_file():
        why = f"exit code {code}" + (f": {last_error}" if last_error else "")
        if code == 0:
            why = "it wrote no model.onnx"
        raise ChallengerFailed(f"the challenger's training failed ({why}); its run dir {run_dir}, its output "
                               f"{log_file}. Nothing was registered and no alias moved.")
    return run_dir
