"""How much a training source may deliver: ``data.max_rows`` for every source, and byte sizes in messages.

A source that holds far more than expected (a SQL query without its WHERE, a topic that grew, an API that
ignores its page size) must stop the run with an error naming the key to raise, not fill memory until the
process is killed, and not be cut silently: a model trained on an arbitrary first part of a table is a wrong
result nobody sees. The limits are :class:`visiontrain.config.tabular.SourceOptions`' (their defaults apply
where a stored config, an older checkpoint's, lacks the key; ``conf/data/*.yaml`` state the same values).
"""

from __future__ import annotations

from visiontrain.errors import DataError

MAX_ROWS_KEY = "data.max_rows"


def too_many_rows(where: str, limit: int, fix: str, counted: int | None = None) -> DataError:
    """The error for a source holding more than ``data.max_rows`` rows: ``counted``, the rows it holds (a file,
    read whole), or None where reading stopped at the first row over the limit."""
    held = f"{counted:,} rows, more than {MAX_ROWS_KEY}={limit}" if counted is not None else \
        f"more than {MAX_ROWS_KEY}={limit} rows (reading stopped at row {limit + 1:,})"
    return DataError(f"{where}: {held}; raise {MAX_ROWS_KEY} if the table really is this large, or {fix}.")


def size_text(count: int) -> str:
    """Bytes as people read them: ``64 MiB``, ``1.5 KiB``, ``200 bytes``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} bytes"
