"""What every `scripts/bench_*.py` shares: the machine it ran on, medians, tables, JSON, composed configs."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def machine() -> dict[str, Any]:
    """CPU model, cores, GPU (if any) and library versions: the context a figure needs."""
    cpu = platform.processor() or "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "platform": platform.platform(),
                            "python": platform.python_version()}
    for name in ("torch", "onnxruntime", "timm", "albumentations", "lightning", "torchvision"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            pass
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def timed(function: Callable[[], Any]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.3g}" if isinstance(value, float) and abs(value) < 1 else (
            f"{value:,.1f}" if isinstance(value, float) else str(value))

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(path: Path | None, command: str, results: dict[str, Any]) -> None:
    """JSON with the command, the machine and the time, next to the numbers themselves."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"command": command, "machine": machine(),
                                "when": time.strftime("%Y-%m-%d %H:%M"), **results}, indent=2, default=str))
    print(f"\nwritten {path}")


def compose_train(*overrides: str):
    """visiontrain's training config, composed as the CLI would."""
    from hydra import compose, initialize_config_dir

    from visiontrain.config import config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        return compose("train", overrides=list(overrides))
