"""Which onnxruntime execution providers a session runs on: decided here, once, for every session visiontrain opens.

``providers=`` of `predict`, `serve` and `stream`:

- ``auto``: TensorRT (when its provider is in this onnxruntime build), then CUDA, then CPU, when onnxruntime
  lists ``CUDAExecutionProvider``; CPU alone otherwise. onnxruntime-gpu falls back to the CPU by itself when the
  GPU cannot be used (no device, no CUDA libraries), so what a session *uses* is read back from the session.
- ``cpu``: the CPU alone.
- ``cuda`` / ``tensorrt``: required: a ConfigError naming ``providers`` when this onnxruntime build lacks the
  provider or the session could not start it, before anything is served.

It lives in core, not in inference, because core's :class:`ModelMetadata` opens sessions too (layers only look
down). torch-free; onnxruntime is imported only by the functions that need it.
"""

from __future__ import annotations

from typing import Any, Sequence

from visiontrain.errors import ConfigError

PROVIDER_CHOICES = ("auto", "cpu", "cuda", "tensorrt")  # the values of `providers=`; auto first (the default)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"

# Sessions that check or read a file rather than serve it run on the CPU on purpose: export's parity checks compare
# onnxruntime with the CPU model it came from (a GPU's kernels differ in the last bits), quantization compares the
# int8 file with the float file on the CPU (where int8 runs), and reading metadata needs no device at all.
CPU_ONLY = (CPU,)

_REQUIRED = {"cuda": CUDA, "tensorrt": TENSORRT}  # a choice that must be honoured -> the provider it needs
_GPU_FIX = ("pip install onnxruntime-gpu (in place of onnxruntime) on a machine with an NVIDIA GPU and CUDA, "
            "or providers=auto (the GPU when there is one, else the CPU) or providers=cpu")


def available_providers() -> list[str]:
    """The providers this onnxruntime build offers (a CPU-only wheel lists no GPU one)."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def choose_providers(choice: str, available: Sequence[str] | None = None) -> list[str]:
    """The providers to ask onnxruntime for, in order of preference, for ``providers=<choice>``.

    ``available``: what the build offers (default: this onnxruntime's). ``cuda`` / ``tensorrt`` missing from it
    is a ConfigError naming ``providers``; whether the GPU then starts is :func:`check_session`'s question.
    """
    if choice not in PROVIDER_CHOICES:
        raise ConfigError("providers", f"must be one of {', '.join(PROVIDER_CHOICES)}, got {choice!r}",
                          "providers=auto")
    offered = set(available_providers() if available is None else available)
    if choice == "cpu" or (choice == "auto" and CUDA not in offered):
        return list(CPU_ONLY)
    needed = _REQUIRED.get(choice)
    if needed is not None and needed not in offered:
        raise ConfigError("providers", f"{choice} needs onnxruntime's {needed}, which this onnxruntime build "
                          f"lacks (it offers {', '.join(sorted(offered))})", _GPU_FIX)
    gpu = [TENSORRT] if TENSORRT in offered and choice in ("auto", "tensorrt") else []
    return [*gpu, CUDA, CPU]  # the CPU last: it runs what the GPU providers do not


def check_session(session: Any, choice: str) -> None:
    """A ConfigError when ``providers=cuda|tensorrt`` and the session fell back without that provider (a build
    with it, but no usable GPU or CUDA libraries: onnxruntime only logs that)."""
    needed = _REQUIRED.get(choice)
    if needed is not None and needed not in session.get_providers():
        raise ConfigError("providers", f"{choice}: this onnxruntime build has {needed} but the session could not "
                          f"start it (no usable GPU, or the CUDA/cuDNN{'/TensorRT' if choice == 'tensorrt' else ''} "
                          f"libraries it needs are missing); it would run on {', '.join(session.get_providers())}",
                          "run on a machine with an NVIDIA GPU and the CUDA libraries onnxruntime-gpu needs, "
                          "or providers=auto or providers=cpu")


def describe(session: Any, choice: str) -> str:
    """One line: the providers ``session`` uses and why, e.g. ``onnxruntime: CPUExecutionProvider
    (providers=auto: no GPU provider in this onnxruntime build)``."""
    used = list(session.get_providers())
    why = f"providers={choice}"
    if choice == "auto" and used == list(CPU_ONLY):
        why += (": no GPU provider in this onnxruntime build" if CUDA not in available_providers()
                else ": onnxruntime has CUDAExecutionProvider but no usable GPU (or its CUDA libraries) was found")
    elif choice == "auto":
        why += ": a GPU"
    return f"onnxruntime: {', '.join(used)} ({why})"
