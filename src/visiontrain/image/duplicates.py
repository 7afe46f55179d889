"""Find files with identical bytes and apply ``data.duplicates``: one photo under two labels teaches nothing.

Size first, then sha256 of only the files that share a size: most datasets hash almost nothing.

Policies (``data.duplicates``):
  across_classes: reject (default: every copy is rejected, naming the other) | warn (kept, warned) | allow
  within_class:   warn (default: all copies kept, warned; a warning also says when copies sit in different
                  splits, which leaks into the validation score) | reject (the first copy is kept, in split
                  order train, val, test, then by path) | allow (kept, no word)
"""

from __future__ import annotations

import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Generic, Protocol, Sequence, TypeVar

from visiontrain.config.image import Duplicates
from visiontrain.core.files import sha256_of_file

_SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


class Labelled(Protocol):
    path: Path
    split: str | None
    class_name: str


T = TypeVar("T", bound=Labelled)


DuplicatePolicy = Duplicates  # what to do with identical files: the ``data.duplicates`` section itself


@dataclass
class Resolution(Generic[T]):
    """The outcome of a policy: what stays, what is rejected (and why), and groups still to warn about."""

    kept: list[T]
    rejected: list[tuple[T, str]] = field(default_factory=list)
    warn_groups: list[list[T]] = field(default_factory=list)  # kept copies, first in split order


def resolve_duplicates(items: Sequence[T], policy: DuplicatePolicy, workers: int = 4) -> Resolution[T]:
    """Apply ``policy`` to every group of identical files among ``items`` (order of ``kept`` preserved)."""
    dropped: dict[int, str] = {}
    resolution: Resolution[T] = Resolution(kept=[])
    for group in content_groups([item.path for item in items], workers):
        members = sorted(group, key=lambda i: (_SPLIT_ORDER.get(items[i].split or "", 3), str(items[i].path)))
        by_class: dict[str, list[int]] = defaultdict(list)
        for index in members:
            by_class[items[index].class_name].append(index)
        if len(by_class) > 1 and policy.across_classes == "reject":
            for index in members:
                other = next(items[i] for i in members if items[i].class_name != items[index].class_name)
                dropped[index] = (f"duplicate across classes: same content as {other.path} "
                                  f"(class '{other.class_name}')")
            continue
        if len(by_class) > 1 and policy.across_classes == "warn":
            resolution.warn_groups.append([items[i] for i in members])
        for copies in by_class.values():
            if len(copies) < 2 or policy.within_class == "allow":
                continue
            if policy.within_class == "reject":
                first = items[copies[0]]
                for index in copies[1:]:
                    dropped[index] = f"duplicate: same content as {first.path} (class '{first.class_name}')"
            else:
                resolution.warn_groups.append([items[i] for i in copies])
    for index, item in enumerate(items):
        if index in dropped:
            resolution.rejected.append((item, dropped[index]))
        else:
            resolution.kept.append(item)
    return resolution


def describe_group(group: Sequence[Labelled], split_of: Callable[[Labelled], str],
                   policy: DuplicatePolicy) -> str:
    """One warning line for a group of identical files that were kept."""
    classes = sorted({item.class_name for item in group})
    listing = ", ".join(f"{item.path} [{split_of(item)}]" for item in group)
    if len(classes) > 1:
        labels = ", ".join(f"'{name}'" for name in classes)
        return (f"duplicate across classes: the same image is labelled {labels} (kept: "
                f"data.duplicates.across_classes={policy.across_classes}): {listing}")
    line = f"duplicate within class '{classes[0]}' (kept: data.duplicates.within_class=warn): {listing}"
    splits = sorted({split_of(item) for item in group}, key=lambda s: _SPLIT_ORDER.get(s, 3))
    if len(splits) > 1:
        line += (f"; it is in {' and '.join(splits)}: leakage that inflates the evaluation score "
                 "(data.duplicates.within_class=reject keeps one copy)")
    return line


def content_groups(paths: Sequence[Path], workers: int = 4) -> list[list[int]]:
    """Indices of files with identical bytes, in groups of two or more."""
    by_size: dict[int, list[int]] = defaultdict(list)
    for index, path in enumerate(paths):
        try:
            by_size[os.stat(path).st_size].append(index)
        except OSError:
            continue  # gone since it was checked: nothing to compare
    candidates = [index for same_size in by_size.values() if len(same_size) > 1 for index in same_size]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        digests = list(pool.map(lambda i: _sha256(paths[i]), candidates))
    groups: dict[str, list[int]] = defaultdict(list)
    for index, digest in zip(candidates, digests):
        if digest is not None:
            groups[digest].append(index)
    return sorted((sorted(group) for group in groups.values() if len(group) > 1), key=lambda g: g[0])


def _sha256(path: Path) -> str | None:
    try:
        return sha256_of_file(path)
    except OSError:
        return None
