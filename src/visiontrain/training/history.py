"""Record epoch metrics independently of any logger, for curves and summary.json."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl

_SPLITS = ("train/", "val/")


class MetricHistory(pl.Callback):
    """Keeps one row per epoch (train and val metrics, stage, learning rates) and writes history.csv."""

    def __init__(self, path: str | None = None) -> None:
        self.path = Path(path) if path else None
        self.rows: list[dict[str, float]] = []
        self._epoch_lrs: dict[str, float] = {}

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Rates as the epoch starts: the rates of the stage this epoch trains in."""
        self._epoch_lrs = {f"lr/{group.get('name', 'group')}": float(group["lr"])
                           for optimizer in trainer.optimizers for group in optimizer.param_groups}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        row: dict[str, float] = {"epoch": trainer.current_epoch,
                                 "frozen_backbone": float(getattr(pl_module, "backbone_frozen", False))}
        for key, value in metrics.items():  # epoch values only: ``x_step`` is the last step's, ``x_epoch`` the mean
            if key.startswith(_SPLITS) and not key.endswith("_step") and value.numel() == 1:
                row[key.removesuffix("_epoch")] = float(value)
        row.update(self._epoch_lrs)
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
