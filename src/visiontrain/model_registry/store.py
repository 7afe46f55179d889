"""The registry's storage: versions that never change once written, and aliases that move atomically.

Layout under the registry root (a local folder, a shared filesystem, or any fsspec URL such as ``s3://bucket/models``)::

    <name>/versions/<n>/model.onnx      the file, byte for byte as registered
    <name>/versions/<n>/version.json    sha256, size, who and when, the training record (written last: a version
                                        without it is unfinished and ignored)
    <name>/history/<revision>.json      one per alias move: what moved, from and to, who, why, and every alias after
    <name>/aliases.json                 the latest revision's aliases (what `serve` polls)

A move is committed by creating ``history/<revision>.json`` exclusively (on local and shared filesystems a
hard link of the whole file, which fails when the name exists; two writers racing for one revision: the second
re-reads and retries), then ``aliases.json`` is
replaced atomically (a rename locally, one object PUT on object stores). A reader therefore sees the aliases
before or after a move, never half of one; and since two racing movers may replace aliases.json out of order, a
reader also checks that no later revision exists (one stat) and reads the history when one does. Object stores have no exclusive create: there, two simultaneous moves
of one model are last-writer-wins, and the history still records both.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import socket
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from visiontrain.core.atomic import create_exclusively, write_atomically
from visiontrain.core.files import sha256_of_file
from visiontrain.core.redaction import redact_url
from visiontrain.core.registry_names import LATEST, NAME, check_alias, check_name
from visiontrain.errors import RegistryError

PRODUCTION, CANDIDATE = "production", "candidate"
MODEL_FILE, VERSION_FILE, ALIASES_FILE = "model.onnx", "version.json", "aliases.json"
RETRIES = 20  # exclusive creates lost to a racing writer before giving up


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def who() -> str:
    """``$VISIONTRAIN_USER``, else ``user@host``: the name history records for a registration or a move."""
    if os.environ.get("VISIONTRAIN_USER"):
        return os.environ["VISIONTRAIN_USER"]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid without a passwd entry
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class ModelVersion:
    """One registered version; never changes once written."""

    name: str
    version: int
    sha256: str
    size_bytes: int
    registered_at: str
    registered_by: str
    record: dict[str, Any] = field(default_factory=dict)  # the training record (records.training_record)
    note: str = ""

    @property
    def label(self) -> str:
        """``churn:v3``: how responses, metrics and logs name this version."""
        return f"{self.name}:v{self.version}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AliasMove:
    """One entry of the history: ``alias`` moved from ``from_version`` to ``to_version`` (None: absent)."""

    revision: int
    alias: str
    from_version: int | None
    to_version: int | None
    action: str  # promote | rollback | remove
    by: str
    at: str
    reason: str
    aliases: dict[str, int]  # every alias after this move

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Aliases:
    """The aliases of one model at ``revision`` (0: none ever set)."""

    revision: int
    aliases: dict[str, int]

    def get(self, alias: str) -> int | None:
        return self.aliases.get(alias)


class ModelRegistry:
    """A registry at ``url``: a folder (created on first write) or an fsspec URL."""

    def __init__(self, url: str | Path) -> None:
        self.url = str(url)
        try:
            self.fs, root = fsspec.core.url_to_fs(os.path.expanduser(self.url))
        except (ImportError, ValueError) as error:  # an unknown protocol, or its package is not installed
            raise RegistryError(f"registry {redact_url(self.url)}: {error}") from None
        self.root = root.rstrip("/")
        self.is_local = isinstance(self.fs, LocalFileSystem)

    def __repr__(self) -> str:
        return f"ModelRegistry({redact_url(self.url)!r})"

    @property
    def where(self) -> str:
        """The registry as it may be printed (a password in the URL masked)."""
        return redact_url(self.url)

    # --- reading ------------------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """The registered models (those with at least one finished version)."""
        if not self.fs.isdir(self.root):
            return []
        found = []
        for entry in self.fs.ls(self.root, detail=False):
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            if NAME.fullmatch(name) and self._version_numbers(name):
                found.append(name)
        return sorted(found)

    def versions(self, name: str) -> list[ModelVersion]:
        """Every finished version of ``name``, oldest first."""
        return [self._read_version(name, number) for number in self._version_numbers(check_name(name))]

    def version(self, name: str, ref: int | str) -> ModelVersion:
        """The version ``ref`` names: a number (``3``, ``v3``), an alias, or ``latest``."""
        number = self.resolve(name, ref)
        return self._read_version(name, number)

    def resolve(self, name: str, ref: int | str) -> int:
        """The version number ``ref`` names, or a RegistryError saying what there is."""
        check_name(name)
        numbers = self._version_numbers(name)
        if not numbers:
            raise RegistryError(f"registry {self.where} has no model {name!r}"
                                f"{self._known_names()}: register one with `visiontrain models register`")
        text = str(ref).strip()
        if text == LATEST:
            return numbers[-1]
        digits = text[1:] if text[:1] in "vV" else text
        if digits.isdigit():
            if int(digits) not in numbers:
                raise RegistryError(f"{name} has no version {text}: versions {_ranges(numbers)}")
            return int(digits)
        state = self.aliases(name)
        if text not in state.aliases:
            known = ", ".join(f"{alias} -> v{number}" for alias, number in sorted(state.aliases.items()))
            raise RegistryError(f"{name} has no alias {text!r} ({known or 'no aliases yet'}): give a version "
                                f"number, `latest`, or an alias")
        return state.aliases[text]

    def aliases(self, name: str) -> Aliases:
        """The aliases as of the latest committed move (what serving follows)."""
        path = self._path(check_name(name), ALIASES_FILE)
        try:
            data = json.loads(self.fs.cat_file(path))
        except FileNotFoundError:
            return self._aliases_from_history(name)
        cached = Aliases(int(data["revision"]), {str(k): int(v) for k, v in data["aliases"].items()})
        if self.fs.exists(self._history_file(name, cached.revision + 1)):  # two moves raced and the older one
            return self._aliases_from_history(name)  # wrote aliases.json last: the history is the truth
        return cached

    def history(self, name: str) -> list[AliasMove]:
        """Every alias move of ``name``, oldest first."""
        moves = []
        for revision in self._revisions(check_name(name)):
            data = json.loads(self.fs.cat_file(self._history_file(name, revision)))
            moves.append(AliasMove(**data))
        return moves

    def local_model(self, version: ModelVersion, cache_dir: str | Path | None = None) -> Path:
        """The version's ONNX file on this machine, its sha256 checked against the registration.

        A local registry's file is used in place; a remote one is downloaded once into ``cache_dir`` (named by
        its sha256, so a cache is shared by every model and registry)."""
        source = self._path(version.name, "versions", str(version.version), MODEL_FILE)
        if self.is_local:
            path = Path(source)
        else:
            cache = Path(cache_dir or Path(tempfile.gettempdir()) / "visiontrain-registry").expanduser()
            path = cache / f"{version.sha256}.onnx"
            if not path.is_file():
                cache.mkdir(parents=True, exist_ok=True)
                partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
                self.fs.get_file(source, str(partial))
                os.replace(partial, path)
        actual = sha256_of_file(path)
        if actual != version.sha256:
            raise RegistryError(f"{version.label}: {path} has sha256 {actual[:12]}..., not the {version.sha256[:12]}"
                                "... it was registered with: the file was changed after registration; register "
                                "the model again rather than editing a version")
        return path

    # --- writing ------------------------------------------------------------------------------------------

    def register(self, name: str, onnx_file: str | Path, record: dict[str, Any] | None = None, note: str = "",
                 by: str | None = None) -> ModelVersion:
        """Copy ``onnx_file`` in as the next version of ``name``; returns it. Aliases do not move."""
        source = Path(onnx_file).expanduser()
        if not source.is_file():
            raise RegistryError(f"{source} is not a file: register a model.onnx written by `visiontrain train`")
        check_name(name)
        sha256 = sha256_of_file(source)
        for _ in range(RETRIES):
            numbers = self._version_numbers(name, finished_only=False)
            number = (numbers[-1] if numbers else 0) + 1
            folder = self._path(name, "versions", str(number))
            if not self._claim_folder(folder):
                continue  # another writer took this number first
            self.fs.put_file(str(source), f"{folder}/{MODEL_FILE}")
            version = ModelVersion(name=name, version=number, sha256=sha256, size_bytes=source.stat().st_size,
                                   registered_at=now(), registered_by=by or who(), record=record or {}, note=note)
            self._write(f"{folder}/{VERSION_FILE}", version.as_dict())
            return version
        raise RegistryError(f"{name}: could not claim a version number after {RETRIES} tries (many writers at once?)")

    def move_alias(self, name: str, alias: str, ref: int | str | None, action: str = "promote",
                   reason: str = "", by: str | None = None) -> AliasMove:
        """Point ``alias`` at the version ``ref`` names (None: remove the alias), as one committed move."""
        check_alias(alias)
        target = None if ref is None else self.resolve(name, ref)
        for _ in range(RETRIES):
            state = self._aliases_from_history(name)
            current = state.aliases.get(alias)
            if ref is None and current is None:
                raise RegistryError(f"{name} has no alias {alias!r} to remove")
            after = dict(state.aliases)
            if target is None:
                after.pop(alias)
            else:
                after[alias] = target
            move = AliasMove(revision=state.revision + 1, alias=alias, from_version=current, to_version=target,
                             action=action, by=by or who(), at=now(), reason=reason, aliases=after)
            if not self._create_exclusive(self._history_file(name, move.revision), move.as_dict()):
                continue  # another move took this revision: re-read and retry
            self._write(self._path(name, ALIASES_FILE), {"revision": move.revision, "aliases": after,
                                                          "updated_at": move.at})
            return move
        raise RegistryError(f"{name}: could not commit the move of {alias!r} after {RETRIES} tries")

    def promote(self, name: str, ref: int | str, to: str = PRODUCTION, reason: str = "",
                by: str | None = None) -> AliasMove:
        """Point alias ``to`` at ``ref`` (a number, another alias such as ``candidate``, or ``latest``)."""
        return self.move_alias(name, to, ref, "promote", reason, by)

    def rollback(self, name: str, alias: str = PRODUCTION, reason: str = "", by: str | None = None) -> AliasMove:
        """Point ``alias`` back at the version it pointed at before its latest move."""
        moves = [move for move in self.history(name) if move.alias == alias]
        if not moves:
            raise RegistryError(f"{name}: alias {alias!r} has never moved, so there is nothing to roll back to")
        previous = moves[-1].from_version
        if previous is None:
            raise RegistryError(f"{name}: alias {alias!r} pointed at nothing before v{moves[-1].to_version} "
                                f"(its first move, revision {moves[-1].revision}): promote a version instead")
        return self.move_alias(name, alias, previous, "rollback", reason or f"back from v{moves[-1].to_version}",
                               by)

    # --- storage ------------------------------------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _history_file(self, name: str, revision: int) -> str:
        return self._path(name, "history", f"{revision:08d}.json")

    def _known_names(self) -> str:
        names = self.names()
        return f" (it has {', '.join(names)})" if names else " (it is empty)"

    def _version_numbers(self, name: str, finished_only: bool = True) -> list[int]:
        folder = self._path(name, "versions")
        try:
            entries = self.fs.ls(folder, detail=False)
        except FileNotFoundError:
            return []
        numbers = sorted(int(last) for entry in entries if (last := entry.rstrip("/").rsplit("/", 1)[-1]).isdigit())
        if finished_only:
            numbers = [n for n in numbers if self.fs.exists(self._path(name, "versions", str(n), VERSION_FILE))]
        return numbers

    def _read_version(self, name: str, number: int) -> ModelVersion:
        data = json.loads(self.fs.cat_file(self._path(name, "versions", str(number), VERSION_FILE)))
        return ModelVersion(**data)

    def _revisions(self, name: str) -> list[int]:
        try:
            entries = self.fs.ls(self._path(name, "history"), detail=False)
        except FileNotFoundError:
            return []
        return sorted(int(stem) for entry in entries
                      if (stem := entry.rstrip("/").rsplit("/", 1)[-1].removesuffix(".json")).isdigit())

    def _aliases_from_history(self, name: str) -> Aliases:
        """The aliases as the latest history entry left them (the truth aliases.json caches)."""
        revisions = self._revisions(name)
        if not revisions:
            return Aliases(0, {})
        data = json.loads(self.fs.cat_file(self._history_file(name, revisions[-1])))
        return Aliases(revisions[-1], {str(k): int(v) for k, v in data["aliases"].items()})

    def _claim_folder(self, folder: str) -> bool:
        if self.is_local:
            Path(folder).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.mkdir(folder)
            except FileExistsError:
                return False
            return True
        if self.fs.exists(f"{folder}/{MODEL_FILE}"):
            return False
        self.fs.makedirs(folder, exist_ok=True)
        return True

    def _create_exclusive(self, path: str, data: dict[str, Any]) -> bool:
        payload = (json.dumps(data, indent=1, default=str) + "\n").encode()
        if self.is_local:
            return create_exclusively(payload, Path(path))
        if self.fs.exists(path):
            return False
        self.fs.pipe_file(path, payload)
        return True

    def _write(self, path: str, data: dict[str, Any]) -> None:
        payload = (json.dumps(data, indent=1, default=str) + "\n").encode()
        if self.is_local:
            write_atomically(payload, Path(path))
        else:
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            self.fs.pipe_file(path, payload)


def _ranges(numbers: list[int]) -> str:
    return f"v{numbers[0]}..v{numbers[-1]}" if len(numbers) > 1 else f"v{numbers[0]}"
