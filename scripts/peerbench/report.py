"""From each side's epochs to the figures the issue asks for, per repeat, and the ratios between sides.

Best epoch = the highest validation accuracy (the first, on a tie: the checkpoint a trainer keeps). Wall time to
the best checkpoint = from the process start to that epoch's row. The goal's time is visiontrain's time to reach
the peer's best accuracy (less 0.01) against the peer's time to its best: a peer whose best comes early but low is
not "beaten" by a later, higher best, nor the reverse. Training images/s are compared on the epochs in
which the whole network trained (a frozen-backbone epoch costs a fraction of one, and the sides freeze for 0, 1
or 2 epochs), two ways: the epoch's mean (images over the training phase's seconds, what the issue names) and the
typical step (batch size over the median time from one training batch to the next: robust to the stalls that
other work on a shared machine causes). Ratios are visiontrain / peer within one repeat (back to back), then the
median over repeats.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from peerbench.sides import EpochRow
from peerbench.watch import Watched

ACCURACY_TOLERANCE = 0.01
WALL_GOAL = 0.8
SPEED_GOAL = 1.0


def _median(values: Sequence[float]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(statistics.median(kept)) if kept else None


@dataclass(frozen=True)
class SideFigures:
    """One side's run on one set."""

    side: str
    best_val_acc: float
    best_epoch: int
    final_val_acc: float
    wall_to_best_s: float
    wall_s: float
    epoch_s: float | None            # median seconds between epoch rows (train + validate + checkpoint)
    images_per_s_all_layers: float | None  # median over the epochs where every layer trained
    images_per_s_frozen: float | None
    typical_step_images_per_s: float | None  # all-layer epochs: batch / median of their median steps
    peak_tree_pss_mib: float
    peak_process_rss_mib: float
    val_acc_per_epoch: list[float]
    epoch_end_s: list[float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def figures(side: str, epochs: list[EpochRow], watched: Watched, batch_size: int) -> SideFigures:
    """The side's figures from its epoch rows and the watcher's stamps (one stamp per row)."""
    if not epochs or len(watched.epoch_end_s) < len(epochs):
        raise ValueError(f"{side}: {len(epochs)} epoch rows but {len(watched.epoch_end_s)} stamps")
    accuracies = [e.val_acc for e in epochs]
    best = accuracies.index(max(accuracies))
    stamps = watched.epoch_end_s[:len(epochs)]
    step = _median([e.step_median_s for e in epochs if e.all_layers])
    return SideFigures(
        side=side, best_val_acc=accuracies[best], best_epoch=best, final_val_acc=accuracies[-1],
        wall_to_best_s=stamps[best], wall_s=watched.wall_s,
        epoch_s=_median([b - a for a, b in zip(stamps, stamps[1:])]),
        images_per_s_all_layers=_median([e.train_images_per_s for e in epochs if e.all_layers]),
        images_per_s_frozen=_median([e.train_images_per_s for e in epochs if not e.all_layers]),
        typical_step_images_per_s=batch_size / step if step else None,
        peak_tree_pss_mib=watched.peak_tree_pss_mib, peak_process_rss_mib=watched.peak_process_rss_mib,
        val_acc_per_epoch=accuracies, epoch_end_s=stamps)


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return ours / theirs if ours is not None and theirs else None


def time_to_reach(run: SideFigures, accuracy: float) -> float | None:
    """Seconds from the start to the first epoch at or above ``accuracy``; None if none got there."""
    return next((s for a, s in zip(run.val_acc_per_epoch, run.epoch_end_s) if a >= accuracy), None)


def ratios(ours: SideFigures, peer: SideFigures) -> dict[str, float | None]:
    """visiontrain against one peer within one repeat."""
    reach = time_to_reach(ours, peer.best_val_acc - ACCURACY_TOLERANCE)
    return {"wall_to_best": _ratio(ours.wall_to_best_s, peer.wall_to_best_s),
            "to_peer_best_accuracy": _ratio(reach, peer.wall_to_best_s),
            "images_per_s_all_layers": _ratio(ours.images_per_s_all_layers, peer.images_per_s_all_layers),
            "typical_step_images_per_s": _ratio(ours.typical_step_images_per_s, peer.typical_step_images_per_s),
            "best_val_acc_difference": ours.best_val_acc - peer.best_val_acc,
            "peak_tree_pss": _ratio(ours.peak_tree_pss_mib, peer.peak_tree_pss_mib)}


def median_ratios(per_repeat: list[dict[str, float | None]]) -> dict[str, float | None]:
    """The median of each per-repeat ratio (never a ratio of medians)."""
    keys = per_repeat[0].keys() if per_repeat else ()
    return {key: _median([r[key] for r in per_repeat]) for key in keys}


def verdict(ours: list[SideFigures], peers: dict[str, list[SideFigures]]) -> dict[str, Any]:
    """The issue's goal against the best peer (highest median best accuracy): its best accuracy (within 0.01)
    reached in at most 0.8x its wall time to that best, and at least 1.0x its training images/s; medians of
    per-repeat ratios (a repeat where visiontrain never reaches it counts as not met)."""
    if not peers:
        return {}
    best_peer = max(peers, key=lambda name: _median([f.best_val_acc for f in peers[name]]))
    paired = median_ratios([ratios(o, p) for o, p in zip(ours, peers[best_peer])])
    accuracy_ok = paired["best_val_acc_difference"] is not None and \
        paired["best_val_acc_difference"] >= -ACCURACY_TOLERANCE
    per_repeat = [ratios(o, p)["to_peer_best_accuracy"] for o, p in zip(ours, peers[best_peer])]
    wall_ok = None not in per_repeat and paired["to_peer_best_accuracy"] <= WALL_GOAL
    speed_ok = paired["images_per_s_all_layers"] is not None and paired["images_per_s_all_layers"] >= SPEED_GOAL
    return {"best_peer": best_peer, **paired, "accuracy_met": accuracy_ok, "wall_met": wall_ok,
            "speed_met": speed_ok, "met": accuracy_ok and wall_ok and speed_ok}


def _figures_of(runs: dict[str, Any], side: str) -> SideFigures | None:
    """A repeat's figures for ``side`` as saved in the results (None where it failed or did not run)."""
    run = runs.get(side)
    if not run or "error" in run:
        return None
    return SideFigures(**{k: v for k, v in run.items() if k in SideFigures.__dataclass_fields__})


def compare_set(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with its comparisons: per visiontrain row and peer, the per-repeat ratios and their medians, and
    the goal against the best peer (where every repeat of every side finished)."""
    sides = list(result["repeats"][0]) if result["repeats"] else []
    ours = [s for s in sides if s.startswith("visiontrain")]
    peers = [s for s in sides if not s.startswith("visiontrain")]
    comparisons: dict[str, Any] = {}
    for our in ours:
        mine = [_figures_of(r, our) for r in result["repeats"]]
        theirs = {peer: [_figures_of(r, peer) for r in result["repeats"]] for peer in peers}
        for peer in peers:
            per_repeat = [ratios(o, p) for o, p in zip(mine, theirs[peer]) if o and p]
            comparisons[f"{our} / {peer}"] = {"per_repeat": per_repeat, "median": median_ratios(per_repeat)}
        if all(mine) and all(all(v) for v in theirs.values()):
            comparisons[f"{our}: goal"] = verdict(mine, theirs)
    return {**result, "comparisons": comparisons}
