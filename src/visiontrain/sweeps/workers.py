"""Workers that join one study: processes on this machine, each pinned to its own GPU or share of the cores, or
jobs on a SLURM cluster (submitit, with the settings of ``hydra/launcher=slurm``).

Each worker is the sweep's own command line run again with ``hydra.sweeper.workers=1`` and its label, in the
same sweep dir: it opens the same study and runs the ask-run-tell loop (:mod:`visiontrain.sweeps.study_loop`).
The same command started on another machine against the same storage is one more worker; nothing here is a
scheduler, Optuna's storage is the only thing they share.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("visiontrain")

# keys of the sweep's command line a worker is given anew
WORKER_KEYS = ("hydra.sweep.dir=", "hydra.sweeper.resume=", "hydra.sweeper.workers=", "hydra.sweeper.worker=",
               "hydra.sweeper.deadline=", "hydra/launcher=", "resume=", "-m", "--multirun")


@dataclass(frozen=True)
class WorkerPlan:
    """One worker to start: its label, its extra environment, and the cores it may use (None: any)."""

    label: str
    env: Mapping[str, str]
    cores: tuple[int, ...] | None = None
    device: str = "cpu"


def plan_workers(workers: int, gpus: Sequence[str]) -> list[WorkerPlan]:
    """``workers`` plans: one GPU each (round robin past the count) when there are ``gpus``, else an even share
    of this process's cores, with the thread count of every library set to it."""
    if gpus:
        return [WorkerPlan(f"w{k}", {"CUDA_VISIBLE_DEVICES": gpus[k % len(gpus)]}, device=f"cuda:{gpus[k % len(gpus)]}")
                for k in range(workers)]
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    per = max(1, len(cores) // workers)
    plans = []
    for k in range(workers):
        share = tuple(cores[(k * per + i) % len(cores)] for i in range(per))
        threads = str(len(share))
        env = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
               "OPENBLAS_NUM_THREADS": threads}
        plans.append(WorkerPlan(f"w{k}", env, cores=share, device="cores " + ",".join(map(str, share))))
    return plans


def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES``, else the NVIDIA driver's list. Asked without
    importing torch: the workers must start before anything pins this process's threads or devices."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    driver = Path("/proc/driver/nvidia/gpus")
    if driver.is_dir():
        return [str(i) for i in range(sum(1 for _ in driver.iterdir()))]
    if shutil.which("nvidia-smi"):
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
        return [str(i) for i, line in enumerate(line for line in listing.splitlines() if line.startswith("GPU "))]
    return []


def pin_this_process(plan: WorkerPlan) -> None:
    """Make this process worker ``plan`` (the sweep process runs trials too): its environment and cores, set
    before torch is first imported (the first trial imports it), so its thread count and devices follow."""
    os.environ.update(plan.env)
    if plan.cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, plan.cores)
    log.info("sweep: worker %s is this process, on %s", plan.label, plan.device)


def worker_command(argv: Sequence[str], *, sweep_dir: Path, label: str, deadline: float | None,
                   launcher: str | None = None) -> list[str]:
    """The sweep's command line (``argv``: its overrides as typed) for one worker of the same sweep."""
    kept = [a for a in argv if not a.startswith(WORKER_KEYS)]
    extra = [f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.workers=1", f"hydra.sweeper.worker={label}"]
    if deadline is not None:
        extra.append(f"hydra.sweeper.deadline={deadline:.0f}")
    if launcher:
        extra.append(f"hydra/launcher={launcher}")
    return [sys.executable, "-m", "visiontrain", "train", "-m", *kept, *extra]


@dataclass
class LocalWorkers:
    """Worker processes on this machine. They die with the sweep (``PR_SET_PDEATHSIG``): a killed sweep leaves
    no worker behind, and its running trials are re-asked on resume."""

    logs: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, plan: WorkerPlan, command: list[str]) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        log_file = (self.logs / f"{plan.label}.log").open("ab")
        env = {**os.environ, **plan.env}
        cores = plan.cores

        def pin() -> None:  # runs in the child before exec
            _die_with_parent()
            if cores and hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(0, cores)

        self.processes[plan.label] = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                                      preexec_fn=pin)
        log_file.close()
        log.info("sweep: worker %s started on %s (pid %d, log %s)", plan.label, plan.device,
                 self.processes[plan.label].pid, self.logs / f"{plan.label}.log")

    def wait(self, progress: Callable[[], None], every_s: float = 10.0) -> dict[str, int]:
        """Wait for every worker, calling ``progress`` every ``every_s`` seconds; their exit codes."""
        shown = time.monotonic()
        try:
            while any(p.poll() is None for p in self.processes.values()):
                time.sleep(0.5)
                if time.monotonic() - shown >= every_s:
                    progress()
                    shown = time.monotonic()
        except BaseException:
            self.stop()
            raise
        return {label: p.returncode for label, p in self.processes.items()}

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies (no orphaned worker keeps running trials)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def run_command(command: list[str], env: Mapping[str, str]) -> int:
    """What a SLURM job runs: one worker's command line (picklable, for submitit)."""
    return subprocess.run(command, env={**os.environ, **env}, check=False).returncode


def submit_workers(launcher: Mapping[str, Any], commands: list[tuple[str, list[str]]], folder: Path) -> list[Any]:
    """Each worker as a submitit job with the launcher's settings (``hydra/launcher=slurm``; its local twin
    ``submitit_local`` runs them as local processes). Returns the jobs."""
    import submitit

    local = "LocalLauncher" in str(launcher.get("_target_", ""))
    executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster="local" if local else "slurm")
    params: dict[str, Any] = {"timeout_min": launcher.get("timeout_min", 60), "nodes": 1, "tasks_per_node": 1,
                              "name": "visiontrain-sweep"}
    for key in ("cpus_per_task", "gpus_per_node", "mem_gb"):
        if launcher.get(key) is not None:
            params[key] = launcher[key]
    if not local:
        for key in ("partition", "qos", "comment", "constraint", "exclude", "gres", "account", "mem_per_cpu",
                    "mem_per_gpu", "cpus_per_gpu", "gpus_per_task"):
            if launcher.get(key) is not None:
                params[f"slurm_{key}"] = launcher[key]
        if launcher.get("setup"):
            params["slurm_setup"] = list(launcher["setup"])
        if launcher.get("additional_parameters"):
            params["slurm_additional_parameters"] = dict(launcher["additional_parameters"])
    executor.update_parameters(**params)
    jobs = [executor.submit(run_command, command, {}) for _, command in commands]
    for (label, _), job in zip(commands, jobs):
        log.info("sweep: worker %s submitted as job %s (logs in %s)", label, job.job_id, folder)
    return jobs
