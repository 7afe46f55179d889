"""The outcome a fresh row records, read as training reads its target, so held-out rows are scored against the
labels the models learned: stripped text, yes/no words as Yes/No where the positive label is one (training's
``data.cleaning.normalise_yes_no``), numbers parsed for a regression target. The target, its classes and its
positive label come from the champion's ONNX metadata: the model says what it predicts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from visiontrain.core.table_values import category_text, number_or_nan
from visiontrain.core.yes_no import YES_NO_WORDS
from visiontrain.inference.onnx_model import OnnxModel


@dataclass(frozen=True)
class Target:
    """What a table model predicts: the column, its classes (none for regression) and the positive one."""

    name: str
    classes: tuple[str, ...]
    positive: str | None

    @classmethod
    def of(cls, model: OnnxModel) -> Target:
        metadata = model.metadata
        if metadata.is_regression:
            return cls(str(metadata.target), (), None)
        positive = str(metadata.positive_label if metadata.positive_label is not None else "1")
        return cls(str(metadata.target), tuple(map(str, model.class_names)), positive)

    @property
    def is_regression(self) -> bool:
        return not self.classes

    @property
    def yes_no(self) -> bool:
        """Whether training read this target's yes/no words as Yes/No (its positive label is such a word)."""
        word = (self.positive or "").strip().lower()
        return word in YES_NO_WORDS and not word[:1].isdigit()

    def labels(self, values: Sequence[Any]) -> list[str | None]:
        """Each value as a class name; None where it is missing or names no class of the model."""
        known = set(self.classes)
        texts = (category_text(value, self.yes_no) for value in values)
        return [text if text in known else None for text in texts]

    def numbers(self, values: Sequence[Any]) -> np.ndarray:
        """A regression target's values as float64; NaN where missing or not a number."""
        return np.array([number_or_nan(value) for value in values], dtype=np.float64)
