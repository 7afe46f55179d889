"""The rule: promote the challenger when it is at least as good as the champion on the champion's own monitor
metric, by ``min_improvement``, on the same held-out rows; and the verdict, with its reason in one line."""

from __future__ import annotations

import math
from dataclasses import dataclass

from visiontrain.errors import ConfigError
from visiontrain.retraining.compare import METRICS, Comparison

NO_ALIAS = "none"  # promote_to=none: the verdict is reported, no alias moves


@dataclass(frozen=True)
class Rule:
    """``metric`` improves in direction ``mode`` (max | min); the challenger must gain ``min_improvement``."""

    metric: str
    mode: str
    min_improvement: float

    def needed(self, champion: float) -> float:
        """The value the challenger must reach (max: at least; min: at most)."""
        return champion + self.min_improvement if self.mode == "max" else champion - self.min_improvement

    def passes(self, champion: float, challenger: float) -> bool:
        needed = self.needed(champion)
        return challenger >= needed if self.mode == "max" else challenger <= needed

    def describe(self) -> str:
        """``challenger roc_auc >= champion roc_auc + 0.01 (higher is better)``."""
        sign = ">=" if self.mode == "max" else "<="
        gain = self.min_improvement if self.mode == "max" else -self.min_improvement
        better = "higher" if self.mode == "max" else "lower"
        return (f"challenger {self.metric} {sign} champion {self.metric} {'+' if gain >= 0 else '-'} {abs(gain):g} "
                f"({better} is better)")


def check_rule(rule: Rule, kind: str) -> None:
    """Before any work: the champion's monitor metric must be one the held-out rows can be scored on."""
    if rule.metric not in METRICS[kind]:
        raise ConfigError("model", f"the champion was selected on val/{rule.metric}, which cannot be computed from "
                          f"its ONNX outputs on held-out rows (a {kind} model: {', '.join(METRICS[kind])})",
                          f"register a champion trained with monitor.metric=val/{METRICS[kind][0]}")


@dataclass(frozen=True)
class Decision:
    """The verdict: promote or not, why (one line), and what the registry did about it."""

    promote: bool
    reason: str
    rule: str
    metric: str
    champion: float
    challenger: float
    difference: float
    needed: float
    promote_to: str | None  # the alias the challenger moves to on promotion; None: promote_to=none
    moved: bool = False  # whether the alias moved (promote and an alias to move)

    @property
    def verdict(self) -> str:
        if not self.promote:
            return "refused"
        return f"promoted to {self.promote_to}" if self.promote_to else "would promote (promote_to=none)"


def decide(comparison: Comparison, rule: Rule, promote_to: str) -> Decision:
    """Apply ``rule`` to the compared metrics; a metric that is not a number refuses (it compares nothing)."""
    champion = comparison.champion.metrics[rule.metric]
    challenger = comparison.challenger.metrics[rule.metric]
    needed = rule.needed(champion)
    shown = f"{rule.metric} {challenger:.4f} vs {champion:.4f}"
    where = f"on {comparison.compared_rows} held-out rows"
    if comparison.compared_rows == 0 or not (math.isfinite(champion) and math.isfinite(challenger)):
        promote = False
        reason = (f"{rule.metric} is not a number for both models {where} (challenger {challenger}, champion "
                  f"{champion}): nothing to compare, so the champion stays")
    else:
        promote = rule.passes(champion, challenger)
        sign = ">=" if rule.mode == "max" else "<="
        if promote:
            reason = f"{shown} {where}: the challenger reaches {sign} {needed:.4f}"
        else:
            better = "higher" if rule.mode == "max" else "lower"
            reason = (f"{shown} {where}: the challenger needs {sign} {needed:.4f} ({better} is better, "
                      f"min_improvement {rule.min_improvement:g}), so the champion stays")
    return Decision(promote=promote, reason=reason, rule=rule.describe(), metric=rule.metric, champion=champion,
                    challenger=challenger, difference=challenger - champion, needed=needed,
                    promote_to=None if promote_to == NO_ALIAS else promote_to)
