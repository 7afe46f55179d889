"""What a raw table value means: missing or not, the number it holds, the category text it reads as.

One copy of the per-value rules that training's cleansing (:mod:`visiontrain.tabular.cleansing`), ``visiontrain
predict``/``serve`` (:mod:`visiontrain.deploy.table_input`) and ``visiontrain drift`` all apply, so a value means
the same thing when the model learns from it, scores it and watches it:

- missing: ``None``, ``NaN``, ``pd.NA``/``NaT``, and text that is blank once stripped (or reads ``nan``);
- a number: a number, or ASCII text in Python's float syntax without ``_`` (what pandas parses too: no
  ``1_000``, no non-ASCII digits, no currency signs or thousands separators);
- never a usable number: ``inf``, ``-inf``, ``Infinity``, and a value beyond the float range asked for. Training
  leaves it missing (imputed, counted); deploy and drift reject its row, naming it;
- a category: the value as text, stripped; in a No/Yes column yes/y/true/1 read "Yes" and no/n/false/0 "No".

pandas and numpy only: the inference side uses it without torch.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from visiontrain.core.yes_no import YES_NO, YES_NO_WORDS

FLOAT32_MAX = float(np.finfo(np.float32).max)  # what the exported table models take
FLOAT64_MAX = sys.float_info.max
EXACT_INTEGERS = 2**53  # floats below this that are whole read as integers ("1", not "1.0")
NUMBER_KINDS = ("float", "numeric")  # how the ONNX metadata and the reference statistics name a number column


def is_missing(value: Any) -> bool:
    """``None``, ``pd.NA``, ``NaT`` or a float NaN (blank text is missing too, once read as text)."""
    return (value is None or value is pd.NA or value is pd.NaT
            or (isinstance(value, (float, np.floating)) and math.isnan(value)))


def value_text(value: Any) -> str | None:
    """A value as text, as training reads every source type: None when missing; 1.0 reads "1", True "True"."""
    if is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return str(int(number)) if math.isfinite(number) and number % 1 == 0 and abs(number) < EXACT_INTEGERS \
            else str(number)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)


def yes_no_word(text: str) -> str | None:
    """"Yes" or "No" for a yes/no word in any case (yes, Y, TRUE, 1, 0.0...); None for anything else."""
    return YES_NO_WORDS.get(text.strip().lower())


def is_yes_no_column(proportions: Iterable[str]) -> bool:
    """A category the model only saw as Yes/No (its reference shares): yes/no words there read Yes/No."""
    return set(proportions) <= {*YES_NO, ""}


def category_text(value: Any, yes_no: bool = False) -> str:
    """Stripped text, ``""`` when missing or blank; in a No/Yes column, yes/no words as "Yes"/"No"."""
    text = (value_text(value) or "").strip()
    return (yes_no_word(text) or text) if yes_no else text


def parse_number(value: Any, largest: float = FLOAT64_MAX) -> tuple[float, str | None]:
    """The number ``value`` holds (NaN when missing or blank), or NaN and why it cannot be one.

    ``largest``: the magnitude the consumer can hold; :data:`FLOAT32_MAX` for a model's input (a float64 like
    ``1e39`` would become ``inf`` there, and the prediction NaN).
    """
    if is_missing(value):
        return math.nan, None
    if isinstance(value, (bool, np.bool_)):
        return float(value), None
    overflowed = isinstance(value, (int, np.integer))  # an integer is never inf: it is too large
    try:
        if isinstance(value, (int, float, np.integer, np.floating)):
            number = float(value)
        else:
            text = str(value).strip()
            if not text:
                return math.nan, None
            if not text.isascii() or "_" in text:  # float() reads "1_000" and "١٢٣"; pandas (training) does not
                raise ValueError(text)
            number = float(text)
            if math.isnan(number):  # the text "nan": missing, as pandas reads it
                return math.nan, None
            overflowed = "inf" not in text.lower()  # "1e400" overflowed; "inf" and "Infinity" are infinities
    except OverflowError:  # an integer beyond float64
        number = math.inf
    except ValueError:
        return math.nan, f"{shown(value)} is not a number"
    if not math.isfinite(number) and not overflowed:
        return math.nan, f"{shown(value)} is not a finite number"
    if abs(number) > largest:
        where = "the float32 range the model takes" if largest == FLOAT32_MAX else "the float range"
        return math.nan, f"{shown(value)} is outside {where} (|x| <= {largest:.3g})"
    return number, None


def number_or_nan(value: Any) -> float:
    """The number ``value`` holds, NaN when it is missing or holds none: what training imputes."""
    return parse_number(value)[0]


def finite_or_nan(numbers: Any) -> np.ndarray:
    """Typed numbers (a numeric column of Parquet or SQL) as float64, NaN where not finite: inf is no number."""
    numbers = np.asarray(numbers, dtype=np.float64)
    return np.where(np.isfinite(numbers), numbers, np.nan)


def shown(value: Any, limit: int = 40) -> str:
    """A value as an error message quotes it: long ones cut, with their length (messages stay short)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 3 * limit:
        digits = int(value.bit_length() * math.log10(2)) + 1  # str() of a huge int may raise
        return f"an integer of about {digits:,} digits"
    if not isinstance(value, str):
        return repr(value)[:limit]
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value):,} characters)"


@dataclass
class ModelInputs:
    """The rows a model can take: cleansed values of the kept rows, their positions, and why the rest cannot.

    ``values`` holds float64 numbers (for statistics, exactly as parsed) or ``str`` objects per column;
    :meth:`feeds` casts them to what the exported file takes.
    """

    values: dict[str, np.ndarray]
    kept: np.ndarray
    rejects: dict[int, str]

    def feeds(self) -> dict[str, np.ndarray]:
        """[N, 1] inputs for onnxruntime: float32 numbers, ``str`` objects for categories."""
        return {name: (column if column.dtype == object else column.astype(np.float32)).reshape(-1, 1)
                for name, column in self.values.items()}


def model_inputs(columns: Mapping[str, Sequence[Any]], count: int, kinds: Mapping[str, str],
                 yes_no: Collection[str] = ()) -> ModelInputs:
    """Apply the rules to raw ``columns`` (name -> one value per row, ``count`` rows) for a float32 model.

    ``kinds``: name -> "float"/"numeric" (a number column) or anything else (a category); ``yes_no``: the
    category columns the model saw as No/Yes only. A row with a value that is no usable number is rejected,
    with every reason: at prediction time a silent guess is worse than a listed reject.
    Plain Python per value: as fast as pandas for a whole file, much faster for one request's rows.
    """
    reasons: dict[int, list[str]] = {}
    values: dict[str, np.ndarray] = {}
    for name, kind in kinds.items():
        if kind not in NUMBER_KINDS:
            in_yes_no = name in yes_no
            values[name] = np.array([category_text(value, in_yes_no) for value in columns[name]], dtype=object)
            continue
        numbers = np.empty(count, dtype=np.float64)
        for position, value in enumerate(columns[name]):
            numbers[position], problem = parse_number(value, FLOAT32_MAX)
            if problem:
                reasons.setdefault(position, []).append(f"{name}: {problem}")
        values[name] = numbers
    kept = np.array([i for i in range(count) if i not in reasons], dtype=np.int64)
    return ModelInputs({name: column[kept] for name, column in values.items()}, kept,
                       {position: "; ".join(found) for position, found in reasons.items()})
