"""What ``visiontrain predict`` runs on (the command: :mod:`visiontrain.commands.predict`): inputs, batches, files.

An image manifest (a CSV of ``path,label[,split]``, such as a run's ``split.csv``) is read as training reads it
(:mod:`visiontrain.core.manifest`); ``split=val`` keeps its val rows, and each prediction carries the row's label
and split. Every input is accounted for: it is predicted, or listed in the rejects file beside the output with its
reason (a corrupt image, a text file in the folder, a row whose number does not parse);
``in = predicted + rejected``.
"""

from __future__ import annotations

import csv
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from visiontrain.core.files import list_images
from visiontrain.core.image_decode import PixelLimit
from visiontrain.core.image_preprocess import ImageSpec, model_input
from visiontrain.core.machine import available_cores
from visiontrain.core.manifest import SPLITS, header_columns, read_manifest
from visiontrain.core.table_files import FILE_SUFFIXES
from visiontrain.deploy.table_input import TableSpec, id_columns, is_table_file, prepare, read_table
from visiontrain.errors import ColumnsError, ConfigError, DataError, ImageRejected
from visiontrain.inference.onnx_model import OnnxModel, batched

# --- images -------------------------------------------------------------------------------------------------


def decode_threads(setting: Any) -> int:
    """``auto``: one decoding thread per core (PIL and OpenCV release the GIL), at most 8; ``0``: inline."""
    if setting == "auto":
        return max(1, min(8, available_cores()))
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 0:
        raise ConfigError("decode_threads", f"must be 'auto' or an integer >= 0, got {setting!r}", "decode_threads=auto")
    return setting


def decoded_batches(chunks: list[list[Any]], load: Any, threads: int) -> Iterator[tuple[list[Any], list[Any]]]:
    """Each chunk with its loaded items; with ``threads``, the next chunk decodes while this one is used."""
    if not threads:
        for chunk in chunks:
            yield chunk, [load(path) for path in chunk]
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending = [pool.submit(load, path) for path in chunks[0]] if chunks else []
        for index, chunk in enumerate(chunks):
            loaded = [future.result() for future in pending]
            if index + 1 < len(chunks):
                pending = [pool.submit(load, path) for path in chunks[index + 1]]
            yield chunk, loaded


ImageInput = tuple[Path, dict[str, str]]  # a file and the columns copied to its output row (a manifest's label)


def is_manifest(source: Path) -> bool:
    """A .csv with a ``path`` column names images (a table for a churn model has none)."""
    return source.is_file() and source.suffix.lower() == ".csv" and "path" in header_columns(source)


def image_inputs(source: Path, model: OnnxModel, split: str | None = None, allow_outside_root: bool = False
                 ) -> tuple[list[ImageInput], list[dict[str, Any]]]:
    """The files to predict on (one image, a folder, or a manifest's rows) and the rejects found on the way."""
    if is_manifest(source):
        return manifest_inputs(source, split, allow_outside_root)
    if source.is_file() and is_table_file(source):
        raise ConfigError("input", f"{source.name} is a table but {model.path.name} is an image classifier",
                          "input=<an image, a folder of images, or a manifest .csv of path[,label,split]>")
    files, skipped = list_images(source) if source.is_dir() else ([source], [])
    if not files:
        raise DataError(f"{source}: no files to predict on" + (f" ({len(skipped)} entries that cannot be read, "
                                                               f"e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else ""))
    return [(path, {}) for path in files], [{"path": str(path), "reason": reason} for path, reason in skipped]


def manifest_inputs(source: Path, split: str | None, allow_outside_root: bool
                    ) -> tuple[list[ImageInput], list[dict[str, Any]]]:
    """A manifest's rows (those of ``split`` if given): usable ones to predict, the rest rejected with the reason.

    The label is optional here: a manifest of paths alone is a list of images to classify.
    """
    if split is not None and split not in SPLITS:
        raise ConfigError("split", f"must be one of {', '.join(SPLITS)} (or null: every row), got {split!r}",
                          "split=val")
    if split is not None and "split" not in header_columns(source):
        raise ConfigError("split", f"{source.name} has no split column to choose rows by", "split=null")
    rows = [row for row in read_manifest(source, allow_outside_root, label_required=False,
                                         allow_key="allow_outside_root")
            if split is None or row.split == split]
    if not rows:
        raise DataError(f"{source}: no rows to predict on" + (f" in split {split!r}" if split else ""))
    inputs, rejects = [], []
    for row in rows:
        columns = {"label": row.label, "split": row.split or ""}
        if row.problem is None and row.path is not None:
            inputs.append((row.path, columns))
        else:
            rejects.append({"path": row.source, **columns, "reason": row.problem})
    return inputs, rejects


def predict_images(model: OnnxModel, inputs: list[ImageInput], rejects: list[dict[str, Any]], batch_size: int,
                   top_k: int, progress: bool = True, threads: int = 0, limit: PixelLimit = PixelLimit()
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Path + top-k rows for every image that decodes; path + reason added to ``rejects`` for the rest.

    With ``threads``, images are decoded in a thread pool, one batch ahead of the model: the next batch
    decodes while onnxruntime runs the current one. An image over ``limit`` is rejected from its header.
    """
    spec = ImageSpec.from_metadata(model.metadata.as_dict())
    table = spec.lookup_table()
    predictions: list[dict[str, Any]] = []
    rejects = list(rejects)

    def load(item: ImageInput) -> np.ndarray | ImageRejected:
        try:
            return model_input(item[0], spec, table, limit=limit)
        except ImageRejected as error:
            return error

    with Progress(len(inputs), "images", progress) as bar:
        for chunk, loaded in decoded_batches(list(batched(inputs, max(1, batch_size))), load, threads):
            pixels, used = [], []
            for (path, columns), item in zip(chunk, loaded):
                if isinstance(item, ImageRejected):
                    rejects.append({"path": str(path), **columns, "reason": str(item)})
                else:
                    pixels.append(item)
                    used.append((path, columns))
            if pixels:
                for (path, columns), result in zip(used, model.classify(np.stack(pixels), top_k)):
                    predictions.append({"path": str(path), **columns, **result})
            bar.update(len(chunk))
    return predictions, rejects


# --- tables -------------------------------------------------------------------------------------------------


def predict_table(model: OnnxModel, source: Path, batch_size: int, requested_ids: list[str] | None,
                  progress: bool = True) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every row of a table: ids + probability + label (or prediction); rejected rows with their reason.

    ``row`` is the 1-based data row in the file (the header is not a row).
    """
    if source.is_dir() or not is_table_file(source):
        raise ConfigError("input", f"{source.name} is not a table file; {model.path.name} takes table rows",
                          f"input=<a {', '.join(sorted(FILE_SUFFIXES))} file>")
    try:
        frame = read_table(source)
    except DataError:
        raise  # names the file and what is wrong with it
    except Exception as error:  # noqa: BLE001 - pandas/pyarrow raise many kinds for a broken file
        raise DataError(f"{source}: cannot be read as a table: {error}") from None
    spec = TableSpec.from_metadata(model.metadata, model.input_columns())
    try:
        spec.check_columns(frame.columns)
    except ColumnsError as error:
        raise DataError(f"{source}: {error}") from None
    ids = id_columns(frame, spec, requested_ids)
    identity = frame[ids].to_dict("records") if ids else None
    prepared = prepare(frame, spec)  # the whole file at once; then the model in batches
    all_feeds = prepared.feeds()
    rejects = [{"row": position + 1, **_ids(identity, position), "reason": reason}
               for position, reason in sorted(prepared.rejects.items())]
    predictions: list[dict[str, Any]] = []
    with Progress(len(prepared.kept), "rows", progress) as bar:
        for start in range(0, len(prepared.kept), max(1, batch_size)):
            positions = prepared.kept[start:start + batch_size]
            feeds = {name: values[start:start + batch_size] for name, values in all_feeds.items()}
            for position, result in zip(positions, model.score(feeds)):
                predictions.append({"row": int(position) + 1, **_ids(identity, int(position)), **result})
            bar.update(len(positions))
    return predictions, rejects


def _ids(identity: Any, position: int) -> dict[str, Any]:
    if identity is None:
        return {}
    return {name: None if value is None or value != value else value  # NaN -> empty
            for name, value in identity[position].items()}


# --- output -------------------------------------------------------------------------------------------------


def write_records(path: Path, records: list[dict[str, Any]], fields: list[str] | None = None) -> None:
    """CSV, JSON (a list) or JSON Lines by extension; CSV columns: the union of keys, first seen first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".json":
        path.write_text(json.dumps(records, indent=1, default=_plain) + "\n")
        return
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, default=_plain) + "\n" for r in records))
        return
    columns = list(dict.fromkeys([*(fields or []), *(key for record in records for key in record)]))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)


class Progress:
    """A tqdm bar on stderr when asked for (and tqdm is there); a no-op otherwise."""

    def __init__(self, total: int, unit: str, enabled: bool) -> None:
        self.bar: Any = None
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit=f" {unit}", file=sys.stderr, dynamic_ncols=True,
                                leave=False)
            except ImportError:
                self.bar = None

    def __enter__(self) -> Progress:
        return self

    def update(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
