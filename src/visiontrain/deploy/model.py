"""An exported ONNX file as a predictor: session, decoded metadata, the task it solves, batched calls.

Works for both kinds `visiontrain train` writes: image classifiers (``image`` in; ``logits``,
``probabilities`` out) and tables (one [N, 1] input per raw column; ``probability`` + ``label`` or
``prediction`` out). The task comes from the ``task`` metadata, or from the inputs for files without it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import onnxruntime as ort

IMAGE, TABLE = "image", "table"


class ModelError(ValueError):
    """The file is not a model these commands can run; the message says why and what to do."""


def file_sha256(path: Path) -> str:
    """The model version clients see: identical bytes, identical predictions."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def decode_metadata(raw: dict[str, str]) -> dict[str, Any]:
    """Metadata values are JSON strings (lists, dicts, numbers); plain strings stay strings."""
    decoded: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            decoded[key] = json.loads(value)
        except json.JSONDecodeError:
            decoded[key] = value
    return decoded


class OnnxModel:
    """One onnxruntime session over ``path`` plus what its metadata says about inputs and outputs."""

    def __init__(self, path: str | Path, threads: int = 0, spin: bool = True) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise ModelError(f"{self.path} does not exist: pass a model.onnx written by `visiontrain train`")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3
        if not spin:  # idle onnxruntime threads sleep instead of spinning: they share the CPU with a server
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own error classes
            raise ModelError(f"{self.path} is not a loadable ONNX model: {error}") from None
        self.metadata = decode_metadata(self.session.get_modelmeta().custom_metadata_map)
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.output_names = [node.name for node in self.session.get_outputs()]
        self.kind = self._detect_kind()
        self.version = file_sha256(self.path)
        self.class_names: list[str] = [str(name) for name in self.metadata.get("class_names") or []]

    def _detect_kind(self) -> str:
        task = str(self.metadata.get("task", ""))
        if task == "image_classification" or (not task and self.input_names == ["image"]):
            if "probabilities" not in self.output_names:
                raise ModelError(f"{self.path}: an image model must output `probabilities`")
            return IMAGE
        if task.startswith("tabular") or (not task and "image" not in self.input_names):
            if not {"probability", "prediction"} & set(self.output_names):
                raise ModelError(f"{self.path}: a table model must output `probability` or `prediction`")
            return TABLE
        raise ModelError(f"{self.path}: unknown task {task!r}: re-export it with `visiontrain export`")

    @property
    def is_regression(self) -> bool:
        return self.kind == TABLE and "prediction" in self.output_names

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One onnxruntime call; outputs by name (onnxruntime releases the GIL, so threads overlap)."""
        return dict(zip(self.output_names, self.session.run(None, feeds)))

    def describe(self) -> dict[str, Any]:
        """What `GET /metadata` and the predict report show: task, classes, inputs, version, source metric."""
        info: dict[str, Any] = {"task": self.metadata.get("task", self.kind), "model_file": self.path.name,
                                "model_version": f"sha256:{self.version}",
                                "metric": self.metadata.get("metric"), "outputs": self.output_names}
        if self.kind == IMAGE:
            keys = ("class_names", "input_size", "mean", "std", "resize_to", "crop", "interpolation",
                    "backbone")
            info.update({key: self.metadata.get(key) for key in keys})
            info["input"] = "multipart/form-data image file(s), field `files`"
        else:
            keys = ("target", "positive_label", "class_names", "threshold")
            info.update({key: self.metadata.get(key) for key in keys})
            info["input_columns"] = self.input_columns()
            info["input"] = 'application/json {"rows": [{column: value, ...}, ...]}'
        return info

    def input_columns(self) -> dict[str, str]:
        """Column name -> "float" | "string", from the metadata or else from the graph's input types."""
        declared = self.metadata.get("input_columns")
        if isinstance(declared, dict) and declared:
            return {str(k): str(v) for k, v in declared.items()}
        return {node.name: "string" if node.type == "tensor(string)" else "float"
                for node in self.session.get_inputs()}

    # --- images -----------------------------------------------------------------------------------------

    def classify(self, pixels: np.ndarray, top_k: int = 5) -> list[dict[str, Any]]:
        """[N, 3, H, W] float32 -> per image the top-k classes: ``top1``, ``top1_probability``, ``top2``..."""
        probabilities = self.run({self.input_names[0]: pixels})["probabilities"]
        k = max(1, min(int(top_k), probabilities.shape[1]))
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        names = self.class_names or [str(i) for i in range(probabilities.shape[1])]
        results = []
        for row, indices in zip(probabilities, order):
            result: dict[str, Any] = {}
            for rank, index in enumerate(indices, start=1):
                result[f"top{rank}"] = names[int(index)]
                result[f"top{rank}_probability"] = float(row[int(index)])
            results.append(result)
        return results

    def predict_images(self, sources: Sequence[str | Path | bytes], top_k: int = 5,
                       batch_size: int = 32) -> list[dict[str, Any]]:
        """Decode, preprocess and classify ``sources`` (all must be readable images; see ImageRejected)."""
        from visiontrain.core.image_decode import decode
        from visiontrain.core.image_preprocess import ImageSpec, preprocess

        spec = ImageSpec.from_metadata(self.metadata)
        table = spec.lookup_table()
        results: list[dict[str, Any]] = []
        for chunk in batched(sources, batch_size):
            pixels = np.stack([preprocess(decode(source, spec.resize_to).image, spec, table)
                               for source in chunk])
            results.extend(self.classify(pixels, top_k))
        return results

    # --- tables -----------------------------------------------------------------------------------------

    def score(self, feeds: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        """Raw-column feeds -> per row ``probability`` + ``label`` text, or ``prediction`` for regression."""
        outputs = self.run(feeds)
        if self.is_regression:
            return [{"prediction": float(value)} for value in outputs["prediction"]]
        positive = str(self.metadata.get("positive_label", "1"))
        negative = next((name for name in self.class_names if name != positive), f"not {positive}")
        labels = outputs.get("label")
        if labels is None:
            threshold = float(self.metadata.get("threshold", 0.5))
            labels = (outputs["probability"] >= threshold).astype(np.int64)
        return [{"probability": float(p), "label": positive if int(flag) == 1 else negative}
                for p, flag in zip(outputs["probability"], labels)]


def open_model(path: Any, threads: int = 0, spin: bool = True) -> OnnxModel:
    """The model named by the ``model`` config key, or a ConfigError saying what is wrong with it."""
    from visiontrain.errors import ConfigError

    if not path:
        raise ConfigError("model", "is required", "model=outputs/<experiment>/runs/<time>/model.onnx")
    try:
        return OnnxModel(str(path), threads=threads, spin=spin)
    except ModelError as error:
        raise ConfigError("model", str(error), "model=<a model.onnx from `visiontrain train`>") from None


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of at most ``size`` items."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= max(1, int(size)):
            yield chunk
            chunk = []
    if chunk:
        yield chunk
