"""A request body read under limits, and JSON rows checked value by value, before any model work.

Hostile or broken clients must get a 4xx that names the limit, row or column, never a 500 or a null
prediction: a body larger than ``max_request_mb`` (413), one that does not arrive within
``read_timeout_s`` (408), JSON nested past the parser's recursion limit (400), integers longer than
Python's int-from-text limit, ``NaN``/``Infinity`` (not JSON) or nested values in a row (422 naming
the row and column), more rows than ``max_rows`` (413).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import HTTPException
from starlette.requests import ClientDisconnect, Request

from visiontrain.core.json_rows import flat_row, loads
from visiontrain.deploy.table_input import TableSpec
from visiontrain.errors import ColumnsError, JsonProblem


class ClientError(HTTPException):
    """A client mistake whose body also lists what broke (``rejected``, ``missing``...) beside ``detail``.

    Plain mistakes are ``HTTPException``s; serve's handler for this one writes ``{"detail": ..., **extra}``.
    """

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(status_code=status, detail=detail)
        self.extra = extra


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The whole body; 413 as soon as it is known to exceed ``limit`` bytes (by header or count), 408 when
    it has not arrived within ``timeout_s`` (a body shorter than its Content-Length, a slow client)."""
    declared = request.headers.get("content-length")
    too_large = f"request body is larger than max_request_mb ({limit / 1024 / 1024:g} MB)"
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, too_large)

    async def read() -> bytes:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise HTTPException(413, too_large)
        return bytes(body)

    try:
        return await asyncio.wait_for(read(), timeout_s)
    except asyncio.TimeoutError:
        raise HTTPException(408, f"the request body did not arrive within read_timeout_s ({timeout_s:g} s)"
                            f"{f' (Content-Length: {declared})' if declared else ''}") from None
    except ClientDisconnect:
        raise HTTPException(400, "the client disconnected before sending the whole body") from None


def parse_json(body: bytes) -> Any:
    """The body as JSON (:func:`visiontrain.core.json_rows.loads`); 400 naming what is wrong with it."""
    try:
        return loads(body)
    except JsonProblem as error:
        raise HTTPException(400, f"the body is {error}") from None


def table_rows(payload: Any, spec: TableSpec, max_rows: int) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """The rows of ``{"rows": [...]}``, with nested or non-JSON values replaced by None and listed.

    Returns the rows and ``{row index: "column: reason; ..."}`` for the values that were replaced.
    """
    rows = payload.get("rows") if isinstance(payload, dict) else None
    if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
        raise ClientError(422, 'expected {"rows": [{column: value, ...}, ...]} with at least one row',
                          columns=spec.columns)
    if len(rows) > max_rows:
        raise HTTPException(413, f"{len(rows):,} rows in one request, more than max_rows ({max_rows:,}): "
                            "send them in several requests")
    for index, row in enumerate(rows):
        try:
            spec.check_columns(row)
        except ColumnsError as error:
            raise ClientError(422, f"rows[{index}]: {error}", missing=error.missing,
                              unexpected=error.unexpected[:20], columns=spec.columns) from None
    problems: dict[int, str] = {}
    flat: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        row, problem = flat_row(row)
        if problem:
            problems[index] = problem
        flat.append(row)
    return flat, problems


def rejected_rows(reasons: dict[int, str]) -> ClientError:
    """422 listing every unusable row with its columns and reasons."""
    listed = sorted(reasons.items())
    problems = "; ".join(f"rows[{index}]: {reason}" for index, reason in listed[:20])
    more = f" (and {len(listed) - 20} more rows)" if len(listed) > 20 else ""
    return ClientError(422, f"unusable values: {problems}{more}",
                       rejected=[{"row": index, "reason": reason} for index, reason in listed])

