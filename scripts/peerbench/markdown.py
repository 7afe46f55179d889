"""benchmarks/peers.md: the command, the settings, what each side used, and per set the figures and ratios."""

from __future__ import annotations

import statistics
from typing import Any

from benchlib import machine, markdown_table

FIGURES = ("best_val_acc", "best_epoch", "final_val_acc", "wall_to_best_s", "wall_s", "epoch_s",
           "images_per_s_all_layers", "typical_step_images_per_s", "images_per_s_frozen", "peak_tree_pss_mib",
           "peak_process_rss_mib")
HEADER = ["side", "best val acc", "best epoch", "final val acc", "wall to best s", "wall s (all)", "s / epoch",
          "train img/s, all layers", "typical step img/s, all layers", "train img/s, frozen",
          "peak PSS MiB (tree)", "peak RSS MiB (largest)"]
RATIOS = ("to_peer_best_accuracy", "wall_to_best", "images_per_s_all_layers", "typical_step_images_per_s",
          "best_val_acc_difference", "peak_tree_pss")


def _cell(value: Any, digits: int = 1) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}" if digits == 4 else f"{value:,.{digits}f}"


def _median_of(runs: list[dict[str, Any]], key: str) -> Any:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def side_rows(result: dict[str, Any]) -> list[list[str]]:
    """Per side, the median over repeats of each figure (accuracies to 4 places, the rest to 1)."""
    rows = []
    for side in result["repeats"][0] if result["repeats"] else []:
        runs = [r[side] for r in result["repeats"]]
        good = [r for r in runs if "error" not in r]
        if not good:
            rows.append([side, f"failed: {runs[0]['error']}", *[""] * (len(HEADER) - 2)])
            continue
        rows.append([side, *(_cell(_median_of(good, key), 4 if "acc" in key else (0 if key == "best_epoch" else 1))
                             for key in FIGURES)])
    if "linear_probe" in result:
        rows.append(["linear probe (frozen features)", _cell(result["linear_probe"]["val_acc"], 4),
                     *[""] * (len(HEADER) - 2)])
    return rows


def _ratio_cell(key: str, value: float | None) -> str:
    return _cell(value, 4 if key.startswith("best_val_acc") else 3)


def ratio_rows(result: dict[str, Any]) -> list[list[str]]:
    """Per visiontrain row and peer: the median ratio in bold, each repeat's in brackets."""
    rows = []
    for pair, comparison in result["comparisons"].items():
        if pair.endswith(": goal"):
            continue
        per_repeat = comparison["per_repeat"]
        rows.append([pair, *(f"**{_ratio_cell(key, comparison['median'][key])}** ("
                             + ", ".join(_ratio_cell(key, r[key]) for r in per_repeat) + ")" for key in RATIOS)])
    return rows


def goal_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for pair, goal in result["comparisons"].items():
        if pair.endswith(": goal") and goal:
            reach = _cell(goal["to_peer_best_accuracy"], 3)
            lines.append(
                f"- {pair.removesuffix(': goal')} against the best peer ({goal['best_peer']}): accuracy "
                f"{goal['best_val_acc_difference']:+.4f} ({'met' if goal['accuracy_met'] else 'not met'}, within "
                f"0.01), time to its best accuracy {reach + 'x' if reach else 'never reached'} "
                f"({'met' if goal['wall_met'] else 'not met'}, at most 0.8x), training images/s "
                f"{goal['images_per_s_all_layers']:.3f}x "
                f"({'met' if goal['speed_met'] else 'not met'}, at least 1.0x)")
    return lines


def render(command: str, started: str, settings: dict[str, Any], sets: list[dict[str, Any]]) -> str:
    host = machine()
    parts = [
        "# visiontrain against fastai and timm's train.py (`scripts/bench_peers.py`)", "",
        f"```\n{command}\n```", "",
        f"Started {started} on {host['cpu']}, {host['cores']} cores, Python {host['python']}, torch "
        f"{host.get('torch')}, timm {host.get('timm')}, Lightning {host.get('lightning')}; peers' venv: "
        f"{settings.get('peers')}.", "",
        f"Shared knobs: image size {settings['image_size']} px, batch {settings['batch_size']}, "
        f"{settings['epochs']} epochs (frozen ones included), {settings['workers']} loader workers, "
        f"{settings['threads']} OMP/MKL threads, seed {settings['seed']}; {settings['repeats']} repeat(s), each side "
        "in a fresh process, back to back. Figures are medians over repeats; ratios are visiontrain / peer per "
        "repeat, then the median (per-repeat values in brackets).", "",
        "What each side used (its own defaults):", "",
        *[f"- **{side}**: {text}" for side, text in settings["defaults"].items()], ""]
    for result in sets:
        parts += [f"## {result['set']}", "",
                  f"`{result['root']}`: classes {', '.join(result['classes'])}; images {result['images']}.", "",
                  markdown_table(HEADER, side_rows(result)), ""]
        if result["comparisons"]:
            parts += [markdown_table(["visiontrain / peer", "time to the peer's best acc (-0.01) / its time to it",
                                      "wall to best", "train img/s (all layers)",
                                      "typical step img/s", "best val acc difference", "peak PSS"],
                                     ratio_rows(result)), "",
                      *goal_lines(result), ""]
    return "\n".join(parts)
