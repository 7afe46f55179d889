"""Read the records of an offline W&B run file (``run-<id>.wandb``) to check what a run really logged.

The file is a LevelDB-style log (32 KiB blocks, 7-byte record headers) of ``wandb_internal_pb2.Record``
protobufs, after a 7-byte ``:W&B`` header. wandb ships the protobuf classes but no reader, so this is ours.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(data: bytes) -> Iterator[bytes]:
    position, pending = 7, b""  # skip ":W&B" + magic + version
    while position + 7 <= len(data):
        left_in_block = BLOCK - position % BLOCK
        if left_in_block < 7:  # block trailer: padding
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        chunk = data[position + 7:position + 7 + length]
        position += 7 + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""
        else:  # zero padding at the end of a block
            position += BLOCK - position % BLOCK if position % BLOCK else 0


def read_records(run_dir: Path) -> list:
    """Every record of the offline run under ``run_dir/wandb`` (exactly one run file expected)."""
    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))
    assert files, f"no offline W&B run under {run_dir}"
    records = []
    for file in files:
        for payload in _payloads(file.read_bytes()):
            record = pb.Record()
            record.ParseFromString(payload)
            records.append(record)
    return records


def logged_keys(records: list, kind: str) -> set[str]:
    """Top-level keys of every ``history``/``summary``/``config`` record (media and tables have nested keys)."""
    field = {"history": "item", "summary": "update", "config": "update"}[kind]
    keys = set()
    for record in records:
        if record.WhichOneof("record_type") == kind:
            for item in getattr(getattr(record, kind), field):
                keys.add(item.key or (item.nested_key[0] if item.nested_key else ""))
    return keys - {""}
