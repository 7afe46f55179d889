"""Which carried wheels to install on the device, and what their requirements still miss once installed.

Stdlib and `packaging` only (both in the device image): this runs before anything carried is on the path.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.tags import sys_tags
from packaging.utils import canonicalize_name, parse_wheel_filename


@dataclass
class WheelPlan:
    """The wheels this Python lacks (or has at another version), those it has, those it cannot take."""

    wanted: list[Path] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    foreign: list[Path] = field(default_factory=list)


def plan(wheels: list[Path]) -> WheelPlan:
    supported, result = set(sys_tags()), WheelPlan()
    for path in wheels:
        name, version, _, tags = parse_wheel_filename(path.name)
        if not tags & supported:
            result.foreign.append(path)
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed == str(version):  # e.g. timm, carried at the tested version, may be in the image already
            result.present.append(f"{canonicalize_name(name)}=={installed}")
        else:
            result.wanted.append(path)
    return result


def unmet_requirements(target: Path) -> dict[str, str]:
    """Requirements of the distributions in ``target`` that ``target`` + this Python's path leave unmet.

    Versions are looked up as an import would find them: ``target`` first (it goes first on PYTHONPATH).
    """
    found: dict[str, str] = {}
    for dist in metadata.distributions(path=[str(target), *sys.path]):
        found.setdefault(canonicalize_name(dist.metadata["Name"]), dist.version)
    unmet: dict[str, str] = {}
    for dist in metadata.distributions(path=[str(target)]):
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            name = canonicalize_name(requirement.name)
            have = found.get(name)
            if have is None or not requirement.specifier.contains(have, prereleases=True):
                unmet[name] = f"{dist.metadata['Name']} needs {requirement}, found {have or 'nothing'}"
    return unmet


def fallbacks_for(unmet: dict[str, str], folder: Path) -> list[Path]:
    """The fallback wheels that stand in for an unmet requirement (prepare.py put the tested versions there)."""
    return sorted(path for path in folder.glob("*.whl")
                  if canonicalize_name(parse_wheel_filename(path.name)[0]) in unmet)
