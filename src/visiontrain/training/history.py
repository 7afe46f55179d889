"""Record epoch metrics independently of any logger, for curves and summary.json."""

from __future__ import annotations

import csv
import logging
import resource
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

_SPLITS = ("train/", "val/")
STARVING = 0.3  # share of training time spent waiting for batches that earns a warning
log = logging.getLogger("visiontrain")


def resident_mib() -> float:
    """This process's resident memory now (Linux ``/proc``), or its peak where ``/proc`` is missing."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _batch_size(batch: Any) -> int:
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    return int(first.shape[0]) if hasattr(first, "shape") else len(first)


class MetricHistory(pl.Callback):
    """Keeps one row per epoch (train and val metrics, stage, learning rates) and writes history.csv.

    Each row also has the epoch's training throughput (samples per second over the training batches,
    validation excluded), the median time from one training batch to the next, and memory (this process's resident MiB, and the CUDA peak), so speed and memory
    growth from epoch to epoch are visible in every run, not only in benchmarks.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = Path(path) if path else None
        self.rows: list[dict[str, float]] = []
        self._epoch_lrs: dict[str, float] = {}
        self._epoch_started: float | None = None
        self._last_batch_end, self._epoch_samples = 0.0, 0
        self._step_seconds: list[float] = []
        self._data_wait, self._warned_starving = 0.0, False

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Rates as the epoch starts: the rates of the stage this epoch trains in."""
        self._epoch_lrs = {f"lr/{group.get('name', 'group')}": float(group["lr"])
                           for optimizer in trainer.optimizers for group in optimizer.param_groups}
        self._epoch_started = self._last_batch_end = time.perf_counter()
        self._epoch_samples, self._step_seconds, self._data_wait = 0, [], 0.0
        if torch.cuda.is_available() and pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if batch_idx > 0:  # since the last step ended: the loop was fetching batches (workers started at 0)
            self._data_wait += time.perf_counter() - self._last_batch_end

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._epoch_samples += _batch_size(batch)
        now = time.perf_counter()
        if batch_idx > 0:  # batch to batch: loading, step and framework; the first waits for the workers
            self._step_seconds.append(now - self._last_batch_end)
        self._last_batch_end = now

    def _speed_and_memory(self, pl_module: pl.LightningModule) -> dict[str, float]:
        seconds = self._last_batch_end - self._epoch_started
        row = {"time/train_seconds": round(seconds, 3),
               "time/train_samples_per_second": round(self._epoch_samples / seconds, 2) if seconds > 0 else 0.0,
               "memory/rss_mib": round(resident_mib(), 1)}
        if self._step_seconds:  # robust to a stall: the typical step, loading included
            row["time/step_median_ms"] = round(1000 * float(np.median(self._step_seconds)), 2)
            row["time/data_wait_fraction"] = round(self._data_wait / sum(self._step_seconds), 4)
        if pl_module.device.type == "cuda":
            row["memory/cuda_peak_mib"] = round(torch.cuda.max_memory_allocated(pl_module.device) / 2**20, 1)
        return row

    def _warn_if_starving(self, trainer: pl.Trainer, wait: float) -> None:
        """Once per run: the model spent a large part of an epoch waiting for batches."""
        if wait < STARVING or trainer.current_epoch == 0 or self._warned_starving or not trainer.is_global_zero:
            return
        self._warned_starving = True
        loader = trainer.train_dataloader
        workers = getattr(loader, "num_workers", "?")
        log.warning("epoch %d: the model waited for data %.0f%% of the time (%s loader workers); more "
                    "data.num_workers, faster storage or a smaller model.input.image_size would keep it busy",
                    trainer.current_epoch, 100 * wait, workers)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        row: dict[str, float] = {"epoch": trainer.current_epoch,
                                 "frozen_backbone": float(getattr(pl_module, "backbone_frozen", False))}
        for key, value in metrics.items():  # epoch values only: ``x_step`` is the last step's, ``x_epoch`` the mean
            if key.startswith(_SPLITS) and not key.endswith("_step") and value.numel() == 1:
                row[key.removesuffix("_epoch")] = float(value)
        row.update(self._epoch_lrs)
        if self._epoch_started is not None:
            speed = self._speed_and_memory(pl_module)
            self._warn_if_starving(trainer, speed.get("time/data_wait_fraction", 0.0))
            row.update(speed)
            for logger in trainer.loggers:  # W&B and CSV show throughput and memory per epoch too
                logger.log_metrics(speed, step=trainer.global_step)
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]
        if self.path and trainer.is_global_zero:
            self.write(self.path)

    def write(self, path: Path) -> Path:
        columns = list(dict.fromkeys(k for row in self.rows for k in row))
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        return path

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict.get("rows", []))
