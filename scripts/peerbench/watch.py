"""Run one side in a fresh process and watch it from outside: when each epoch's row appears, and its memory.

Every side writes one row per epoch to a file of its own (visiontrain's history.csv, timm's summary.csv, the
fastai runner's epochs.jsonl) after validating that epoch. The watcher counts those rows every ``POLL_S`` and
stamps the moment each appears, in seconds since the process was started: the same clock for every side.
Memory is the process tree's (the trainer and its data loader workers): the largest single RSS, read every
``POLL_S`` (cheap), and the largest sum of proportional set sizes (PSS: pages the workers share with their
parent counted once in all), read every ``PSS_EVERY_S``: the kernel walks every page table for it, 0.1-0.4 s of
CPU per read of a 2 GiB tree, which polled every 0.25 s took a third of a core from the side it measured.
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
PSS_EVERY_S = 10.0


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


def _largest_rss(processes: list[psutil.Process]) -> float:
    """The largest RSS in MiB among ``processes``; those that ended meanwhile count nothing."""
    largest = 0.0
    for process in processes:
        try:
            largest = max(largest, process.memory_info().rss / 2**20)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return largest


def _pss_sum(processes: list[psutil.Process]) -> float:
    """The sum of PSS in MiB over ``processes`` (costly: see the module's docstring)."""
    total = 0.0
    for process in processes:
        try:
            total += process.memory_full_info().pss / 2**20
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return total


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
        pss_read = -PSS_EVERY_S
        while process.poll() is None:
            now = time.perf_counter() - started
            seen = rows()
            stamps += [now] * max(0, seen - len(stamps))
            tree = _tree(root)
            peak_rss = max(peak_rss, _largest_rss(tree))
            if now - pss_read >= PSS_EVERY_S:
                peak_pss, pss_read = max(peak_pss, _pss_sum(tree)), now
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
