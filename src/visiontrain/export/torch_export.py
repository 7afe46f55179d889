"""A torch module to an ONNX graph with a dynamic batch axis, by the exporter the config names.

Both exports (the image classifier, the tabular MLP) come through here, so the choice of exporter, the batch
axis and the opset check are written once. ``torchscript`` is torch's legacy exporter (deprecated since torch 2.9,
with explicit ``dynamic_axes``); ``dynamo`` is the maintained one (``torch.export``), given the batch axis as a
``dynamic_shapes`` dimension, its weights kept inside the file. Either way the graph written is checked: the
opset asked for, and a symbolic batch axis on every input and output (the dynamo exporter has been seen to drop
or mistranslate it: pytorch #149065), since a deployment file must take any batch size.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Sequence

import onnx
import torch

from visiontrain.config.choices import EXPORTERS
from visiontrain.errors import ConfigError

BATCH = "batch"  # the name of the symbolic batch axis in every exported file
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
DEFAULT_EXPORTER = EXPORTERS[0]  # what export.exporter defaults to (conf/train.yaml, conf/export.yaml)


def export_graph(module: torch.nn.Module, example: torch.Tensor, input_name: str, output_names: Sequence[str],
                 opset: int, exporter: str) -> onnx.ModelProto:
    """``module`` (eval mode, on the CPU) traced on ``example`` (batch of at least 2) into an ONNX model.

    Raises :class:`ConfigError` naming ``export.exporter`` when the chosen exporter fails or writes a graph
    that breaks the contract above: the choice is never swapped silently for the other exporter.
    """
    if exporter not in EXPORTERS:  # the config checks refuse it first
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    with torch.no_grad():
        model = _dynamo(module, example, input_name, output_names, opset) if exporter == "dynamo" \
            else _torchscript(module, example, input_name, output_names, opset)
    _check_contract(model, opset, exporter)
    return model


def _torchscript(module: torch.nn.Module, example: torch.Tensor, input_name: str, output_names: Sequence[str],
                 opset: int) -> onnx.ModelProto:
    buffer = io.BytesIO()
    axes = {name: {0: BATCH} for name in (input_name, *output_names)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its own deprecation notice: the choice is the user's (export.exporter)
        torch.onnx.export(module, (example,), buffer, dynamo=False, input_names=[input_name],
                          output_names=list(output_names), dynamic_axes=axes, opset_version=opset,
                          do_constant_folding=True)
    return onnx.load_from_string(buffer.getvalue())


def _dynamo(module: torch.nn.Module, example: torch.Tensor, input_name: str, output_names: Sequence[str],
            opset: int) -> onnx.ModelProto:
    try:
        program = torch.onnx.export(module, (example,), dynamo=True, input_names=[input_name],
                                    output_names=list(output_names),
                                    dynamic_shapes=({0: torch.export.Dim(BATCH)},), opset_version=opset,
                                    external_data=False, optimize=True, verbose=False)
    except Exception as error:  # noqa: BLE001 - torch.export's and onnxscript's errors have no common base
        raise ConfigError("export.exporter", f"the dynamo exporter could not export the model ({_reason(error)})",
                          _other_exporter("dynamo")) from error
    return program.model_proto


def _check_contract(model: onnx.ModelProto, opset: int, exporter: str) -> None:
    """The opset asked for, and a symbolic batch axis on every input and output (checks, not asserts)."""
    written = next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), None)
    if written != opset:
        raise ConfigError("export.opset", f"the {exporter} exporter wrote opset {written}, not the {opset} asked "
                          "for", f"export.opset={written} (`visiontrain export`: opset={written}), or "
                          f"{_other_exporter(exporter)}")
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if not dims or not dims[0].dim_param:
            fixed = dims[0].dim_value if dims else "no"
            raise ConfigError("export.exporter", f"the {exporter} exporter wrote {value.name!r} with batch axis "
                              f"{fixed}, not a symbolic one: the file would not take any batch size",
                              _other_exporter(exporter))


def _reason(error: BaseException) -> str:
    """What went wrong, in one line: torch's step that failed and the error at the root of it (torch's own
    message is pages long, coloured, and ends in advice to file an issue)."""
    def first_line(found: BaseException) -> str:
        return ANSI_COLOUR.sub("", str(found)).strip().split("\n")[0].split(". ")[0]

    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    cause = "" if root is error else f": {type(root).__name__}: {first_line(root)}"
    return f"{first_line(error)}{cause}"[:400]


def _other_exporter(exporter: str) -> str:
    """The fix that names the other exporter, as `train` and `export` spell it."""
    other = next(name for name in EXPORTERS if name != exporter)
    return f"export.exporter={other} (`visiontrain export`: exporter={other})"
