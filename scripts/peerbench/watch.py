"""Run one side in a fresh process and watch it from outside: when each epoch's row appears, and its memory.

Every side writes one row per epoch to a file of its own (visiontrain's history.csv, timm's summary.csv, the
fastai runner's epochs.jsonl) after validating that epoch. The watcher counts those rows every ``POLL_S`` and
stamps the moment each appears, in seconds since the process was started: the same clock for every side.
Memory is the process tree's (the trainer and its data loader workers): the largest sum of proportional set
sizes (PSS: pages shared by the workers with their parent counted once in all) and the largest single RSS.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil

POLL_S = 0.25


@dataclass
class Watched:
    """What the watcher saw of one run."""

    returncode: int
    wall_s: float
    epoch_end_s: list[float]            # seconds from start to each epoch's row, in order
    peak_tree_pss_mib: float
    peak_process_rss_mib: float
    log_tail: str = ""
    notes: list[str] = field(default_factory=list)


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _memory(processes: list[psutil.Process]) -> tuple[float, float]:
    """(sum of PSS, largest RSS) in MiB over ``processes``; those that ended meanwhile count nothing."""
    pss, rss = 0.0, 0.0
    for process in processes:
        try:
            info = process.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        pss += info.pss / 2**20
        rss = max(rss, info.rss / 2**20)
    return pss, rss


def run_watched(command: list[str], env: dict[str, str], log: Path, rows: Callable[[], int],
                timeout_s: float, cwd: Path | None = None) -> Watched:
    """Run ``command`` (its own process group, output to ``log``), stamping each new row ``rows()`` counts."""
    stamps: list[float] = []
    peak_pss = peak_rss = 0.0
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                   start_new_session=True)
        root = psutil.Process(process.pid)
        while process.poll() is None:
            pss, rss = _memory(_tree(root))
            peak_pss, peak_rss = max(peak_pss, pss), max(peak_rss, rss)
            now = time.perf_counter() - started
            seen = rows()
            stamps += [now] * max(0, seen - len(stamps))
            if now > timeout_s:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                break
            threading.Event().wait(POLL_S)
        wall = time.perf_counter() - started
    seen = rows()
    stamps += [wall] * max(0, seen - len(stamps))  # a last row written as the process ended
    text = log.read_text(errors="replace")
    return Watched(process.returncode, wall, stamps, peak_pss, peak_rss, log_tail=text[-3000:],
                   notes=[f"killed after {timeout_s:.0f} s"] if wall > timeout_s else [])
