"""``${run_name:<experiment>}``: the run folder's name from the experiment and the data it reads.

Two tables trained under one experiment would otherwise share ``outputs/churn/``. The name adds what tells the
data apart: a table file's or an image folder's name, a database URL's table or database name (never its host,
user or password; ``data.source_env`` is a secret and is never read), a Kafka source's topic, an HTTP source's
last path part (never its host or query, where API keys live), nothing for built-in data. Names are
filesystem-safe. An explicit ``task_name=...`` replaces the interpolation, so it still wins.
"""

from __future__ import annotations

import os
import re
from pathlib import PurePath
from typing import Any
from urllib.parse import urlsplit

from omegaconf import OmegaConf

from visiontrain.config.tabular import remote_kind

RESOLVER = "run_name"
MAX_LENGTH = 64
FILE_SUFFIXES = frozenset({".csv", ".tsv", ".txt", ".json", ".jsonl", ".parquet", ".pq", ".db", ".sqlite",
                           ".sqlite3", ".gz", ".bz2", ".xz", ".zip", ".zst"})
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def run_name(experiment: str, *, _root_: Any) -> str:
    """``experiment`` alone, or ``experiment-<data label>`` (the label alone when it already names it)."""
    base = safe_name(str(experiment)) or "run"
    label = safe_name(data_label(_root_) or "")
    if not label or label == base:
        return base
    if base in re.split(r"[._-]+", label):  # telco-churn under churn: already says it
        return label
    return f"{base}-{label}"[:MAX_LENGTH].rstrip("-.")


def data_label(cfg: Any) -> str | None:
    """What names this run's data: a table source, else an image root; None for built-in data."""
    source = OmegaConf.select(cfg, "data.source", default=None)
    table = OmegaConf.select(cfg, "data.table", default=None)
    if source:
        return _url_label(str(source), table) if "://" in str(source) else _file_label(str(source))
    if OmegaConf.select(cfg, "data.source_env", default=None):  # the URL is a secret: its table, if named
        return str(table) if table else None
    if OmegaConf.select(cfg, "data.builtin", default=None):
        return None
    root = OmegaConf.select(cfg, "data.root", default=None)
    return _file_label(str(root)) if root else None


def _file_label(path: str) -> str:
    name = PurePath(os.path.abspath(os.path.expanduser(path))).name
    while PurePath(name).suffix.lower() in FILE_SUFFIXES:
        name = PurePath(name).stem
    return name


def _url_label(url: str, table: str | None) -> str | None:
    """A topic; the table, else the database or API resource (the last part of the URL's path): never the
    host, user, password or query."""
    if remote_kind(url) == "kafka":
        return urlsplit(url).path.strip("/") or None
    if table:
        return str(table)
    path = urlsplit(url).path.rstrip("/")
    return _file_label(path.rsplit("/", 1)[-1]) if path.rsplit("/", 1)[-1] else None


def safe_name(text: str) -> str:
    """Letters, digits, ``.``, ``_`` and ``-`` only; no leading dot (hidden folder) or trailing separator."""
    return _UNSAFE.sub("-", text).strip("-.")[:MAX_LENGTH].rstrip("-.")


def register() -> None:
    """Make ``${run_name:...}`` resolvable (idempotent): before Hydra composes, and for ``hydra.compose``."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, run_name)
