"""Print, as JSON, what the interpreter running it sees: GPU, driver, library versions, unmet requirements.

Run by `check.py` in the environment the check built (its wheels first on the path), so the figures are those
of the Python that trains; it imports only what it reports on.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

from packaging.requirements import Requirement
from prepare import project_requirements  # beside this file

LIBRARIES = ("torch", "torchvision", "lightning", "torchmetrics", "timm", "onnx", "onnxruntime", "albumentations",
             "hydra-core", "omegaconf", "numpy", "opencv-python-headless", "pillow", "scikit-learn", "wandb",
             "pytest")


def version_of(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def unmet_requirements() -> list[str]:
    """visiontrain's base + train requirements that the running environment does not satisfy."""
    unmet = []
    for text in project_requirements():
        requirement = Requirement(text)
        installed = version_of(requirement.name)
        if installed is None or not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(f"{text} (found {installed or 'nothing'})")
    return unmet


def nvidia_smi() -> dict[str, str] | None:
    try:
        line = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
                               "--format=csv,noheader"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    fields = [field.strip() for field in line.splitlines()[0].split(",")] if line.strip() else []
    return dict(zip(("name", "driver", "memory", "compute_capability"), fields)) or None


def torch_facts() -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {"cuda_build": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
                             "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        facts.update(gpu=properties.name, gpus=torch.cuda.device_count(), bf16=torch.cuda.is_bf16_supported(),
                     capability=f"{properties.major}.{properties.minor}",
                     memory_gib=round(properties.total_memory / 2**30, 1))
    return facts


def main() -> None:
    import onnxruntime

    facts = {"python": sys.version.split()[0], "executable": sys.executable, "machine": platform.machine(),
             "cores": len(__import__("os").sched_getaffinity(0)), "nvidia_smi": nvidia_smi(), **torch_facts(),
             "onnxruntime_providers": onnxruntime.get_available_providers(),
             "versions": {name: version_of(name) for name in LIBRARIES},
             "unmet_requirements": unmet_requirements(),
             "timm_task_importable": _importable("timm.task")}
    print(json.dumps(facts))


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
