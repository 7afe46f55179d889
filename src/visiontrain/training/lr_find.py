"""The learning-rate range test (Lightning's ``Tuner.lr_find``) for the rate a user sets as ``optimizer.lr``.

Why: the best rate depends on the backbone, the batch size and the data; a range test (Smith, 2015; fastai's
``lr_find``) trains for a few dozen steps while raising the rate from tiny to huge and suggests the rate where the
loss falls fastest, which is a far better first guess than a default.

What is probed. Lightning's finder replaces the run's scheduler (the freeze schedule's ``LambdaLR``) with its own,
which sets one and the same rate on every parameter group. Ours are meant to differ: the head trains at
``optimizer.lr`` and each backbone layer at ``optimizer.lr x schedule.backbone_lr_scale (x layer_decay^k)``. While
the finder runs, :func:`group_rates_kept` therefore scales each group's rate by its ``lr_scale`` for the duration of
every optimizer step, so the curve is recorded against the head's rate: exactly the number to pass as
``optimizer.lr``. The caller builds the model with no frozen epochs, so head and backbone train together as in the
fine-tune stage (the frozen stage gives the head the same ``optimizer.lr``). The finder restores the starting
weights when it is done.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import lightning.pytorch as pl
from lightning.pytorch.tuner import Tuner
from torch.optim.optimizer import (
    Optimizer,
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)
from torch.utils.data import DataLoader

from visiontrain.config.checks import LrFind
from visiontrain.training.reports import write_json


@dataclass(frozen=True)
class LRFindResult:
    """The probed curve (the head's rate, the smoothed training loss) and Lightning's suggestion."""

    settings: LrFind
    lrs: list[float]
    losses: list[float | None]  # None: a step whose loss is not a number
    suggestion: float | None
    group_scales: dict[str, float]  # parameter group -> its share of the probed rate

    @property
    def override(self) -> str | None:
        return f"optimizer.lr={self.suggestion:.3g}" if self.suggestion is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {"suggestion": self.suggestion, "override": self.override, **self.settings.model_dump(),
                "points": len(self.lrs), "stopped_early": len(self.lrs) < self.settings.num_training,
                "probed_rate": "the head's, i.e. optimizer.lr; every other group at its share (group_scales)",
                "group_scales": self.group_scales, "lrs": self.lrs, "losses": self.losses}


@contextmanager
def group_rates_kept() -> Iterator[None]:
    """While active, every optimizer step runs each group that has an ``lr_scale`` at ``lr x lr_scale``.

    The group's ``lr`` is put back right after the step, so the finder's scheduler keeps setting (and its callback
    keeps recording) the unscaled rate, and nothing compounds. Hooks are global to torch optimizers but only touch
    groups with an ``lr_scale`` (ours), and are removed on exit.
    """
    def scale(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        for group in optimizer.param_groups:
            if "lr_scale" in group:
                group["probed_lr"] = group["lr"]
                group["lr"] = group["lr"] * group["lr_scale"]

    def restore(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        for group in optimizer.param_groups:
            if "probed_lr" in group:
                group["lr"] = group.pop("probed_lr")

    handles = [register_optimizer_step_pre_hook(scale), register_optimizer_step_post_hook(restore)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def find_learning_rate(trainer: pl.Trainer, module: pl.LightningModule, train_loader: DataLoader,
                       settings: LrFind) -> LRFindResult:
    """Run Lightning's finder on ``train_loader`` (no validation) with the groups' rates kept in proportion."""
    with group_rates_kept():
        finder = Tuner(trainer).lr_find(module, train_dataloaders=train_loader, min_lr=settings.min_lr,
                                        max_lr=settings.max_lr, num_training=settings.num_training,
                                        mode=settings.mode, early_stop_threshold=settings.early_stop_threshold,
                                        update_attr=False)
    lrs = [float(lr) for lr in finder.results["lr"]]
    losses = [float(loss) if math.isfinite(loss) else None for loss in finder.results["loss"]]
    suggestion = finder.suggestion()  # steepest descent of the smoothed loss; None with too few points
    groups = trainer.optimizers[0].param_groups if trainer.optimizers else []
    scales = {str(g.get("name", i)): float(g.get("lr_scale", 1.0)) for i, g in enumerate(groups)}
    return LRFindResult(settings, lrs, losses, float(suggestion) if suggestion is not None else None, scales)


def write_lr_find(result: LRFindResult, run_dir: Path) -> dict[str, Path]:
    """lr_find.json (settings, suggestion, the curve) and lr_find.png (the curve, the suggestion marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir.mkdir(parents=True, exist_ok=True)
    json_path = write_json(result.to_dict(), run_dir / "lr_find.json")
    points = [(lr, loss) for lr, loss in zip(result.lrs, result.losses) if loss is not None]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.plot([p[0] for p in points], [p[1] for p in points], color="tab:blue")
    if result.settings.mode == "exponential":
        axes.set_xscale("log")
    if result.suggestion is not None:
        loss = dict(points).get(result.suggestion)
        axes.axvline(result.suggestion, color="tab:red", linestyle="--", linewidth=1)
        if loss is not None:
            axes.plot([result.suggestion], [loss], marker="o", markersize=8, color="tab:red")
        axes.set_title(f"suggestion: {result.override}")
    else:
        axes.set_title("no suggestion: too few points before the loss diverged")
    axes.set_xlabel("learning rate of the head (optimizer.lr); backbone groups at their share")
    axes.set_ylabel("training loss (smoothed)")
    axes.grid(True, which="both", alpha=0.3)
    png_path = run_dir / "lr_find.png"
    figure.savefig(png_path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return {"json": json_path, "png": png_path}
