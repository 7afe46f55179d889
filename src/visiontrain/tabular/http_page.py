"""One page of an HTTP source, read within its deadline (``data.http.page_timeout_s``) and its byte limits
(``data.http.max_page_bytes``, ``data.http.max_total_bytes``).

Why a thread: requests' timeouts bound each socket read, not a page. A server that trickles one byte every few
seconds (in its headers or its body), or keeps answering 503 with a ``Retry-After``, passes every read timeout
and never finishes. The page is read in a worker thread and the caller waits for it until the deadline, so the
run stops at the deadline whatever the worker is blocked in. The worker, told to stop, drops the connection
after its current read of the body (within ``read_timeout_s``); one still in its request (a trickled header, a
retry's wait) ends with it, or with the process (it is a daemon thread). Its log lines stay redacted until then.

Why ``read1``: the body is read as it arrives, one socket read at a time, decoded (gzip, deflate) to at most the
bytes the limit leaves, so a page never holds more than its limit in memory. A Content-Length over the limit is
refused before a byte of the body is read; a body without one (chunked, or ended by closing the connection) or a
compressed one is stopped by counting.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import requests
import urllib3

from visiontrain.core.redaction import redact_text, redact_url
from visiontrain.core.table_files import first_line
from visiontrain.errors import DataError
from visiontrain.tabular.source_limits import size_text

if TYPE_CHECKING:
    from visiontrain.config.tabular import HttpSource

RETRY_STATUSES = (429, 500, 502, 503, 504)
URLLIB3_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.connection", "urllib3.response")
CHUNK = 1 << 16  # bytes asked of one read


@dataclass(frozen=True)
class ByteLimit:
    """The most one page may hold: the page limit, or what the total limit leaves if that is less."""

    bytes: int
    key: str  # the data.http key that sets it
    setting: int  # that key's value
    fix: str  # what to do instead of raising it

    @classmethod
    def for_page(cls, max_page_bytes: int, max_total_bytes: int, read_so_far: int) -> ByteLimit:
        left = max_total_bytes - read_so_far
        if left < max_page_bytes:
            return cls(max(left, 0), "data.http.max_total_bytes", max_total_bytes,
                       f"filter what the API returns (the pages before this one hold {size_text(read_so_far)})")
        return cls(max_page_bytes, "data.http.max_page_bytes", max_page_bytes,
                   "ask the API for smaller pages (a page size parameter in data.source)")

    def exceeded(self, shown: str, number: int, declared: int | None, counted: bool) -> DataError:
        """The error for page ``number``: its Content-Length (``declared``) is over the limit, or, ``counted``,
        more bytes than the limit arrived (reading stopped there)."""
        if counted:
            found = f"went on past {size_text(self.bytes)}" + (
                f" decoded (its Content-Length said {declared:,} bytes)" if declared is not None else "")
            ending = "stopped reading there"
        else:
            found, ending = f"is {declared:,} bytes (its Content-Length)", "refused before reading it"
        return DataError(f"{shown}: page {number} {found}, over {self.key}={self.setting} "
                         f"({size_text(self.setting)}); {ending}. Raise {self.key} if the API really sends this "
                         f"much, or {self.fix}.")


@dataclass
class Page:
    """A page as read: its status line, headers and links (the next page), its body, and its retries."""

    url: str
    status: int
    headers: requests.structures.CaseInsensitiveDict
    links: dict[str, Any]
    body: bytearray
    retries: int


class _Stopped(Exception):
    """The caller gave up on the page (its deadline passed): the worker drops the connection and ends."""


class _Redacting(logging.Filter):
    """Masks known secrets in urllib3's log lines ("Retrying ... /path?api_key=..."): they reach the run log."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact_text(record.getMessage(), *self.secrets), None
        return True


@contextmanager
def _redacted_logs(secrets: list[str]) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in URLLIB3_LOGGERS]  # a filter sees its own logger's records
    masking = _Redacting(secrets)
    for logger in loggers:
        logger.addFilter(masking)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(masking)


def fetch_page(session: requests.Session, url: str, number: int, options: HttpSource, secrets: list[str],
               limit: ByteLimit) -> Page:
    """Page ``number`` at ``url``, whole, or a DataError: the deadline passed, a limit was passed, the API
    refused or failed. ``secrets``: values to mask in log lines and messages (the token, the URL's keys)."""
    reader = _PageReader(session, url, number, options, secrets, limit)
    worker = threading.Thread(target=reader.run, name=f"visiontrain-http-page-{number}", daemon=True)
    worker.start()
    worker.join(options.page_timeout_s)
    if worker.is_alive():
        reader.stop.set()
        raise DataError(f"{redact_url(url)}: page {number} was not read within data.http.page_timeout_s="
                        f"{options.page_timeout_s:g} s; the deadline for one page (connecting, retries and the "
                        f"whole body) passed with {size_text(reader.received)} of it received. Raise "
                        "data.http.page_timeout_s if the API is really this slow.")
    if reader.error is not None:
        raise reader.error
    if reader.page is None:  # the worker ended with neither a page nor an error: a bug, not the server's doing
        raise RuntimeError(f"page {number} of {redact_url(url)}: the reader ended without a page or an error")
    return reader.page


class _PageReader:
    """The worker's side of :func:`fetch_page`: the request, its status, and the body within the limit."""

    def __init__(self, session: requests.Session, url: str, number: int, options: HttpSource,
                 secrets: list[str], limit: ByteLimit) -> None:
        self.session, self.url, self.number, self.options = session, url, number, options
        self.secrets, self.limit, self.shown = secrets, limit, redact_url(url)
        self.stop = threading.Event()
        self.received = 0
        self.page: Page | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with _redacted_logs(self.secrets):
                self.page = self._read()
        except _Stopped:
            pass  # nobody is waiting for this page any more
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread, which raises it
            self.error = error

    def _read(self) -> Page:
        response, retries = self._get()
        try:
            body = self._body(response)
            return Page(self.url, response.status_code, response.headers, response.links, body, retries)
        finally:
            response.close()  # a body cut short is not drained: the connection is dropped

    def _get(self) -> tuple[requests.Response, int]:
        """The response (headers only, the body not yet read), retried as configured; with its retry count."""
        options = self.options
        try:
            response = self.session.get(self.url, timeout=(options.connect_timeout_s, options.read_timeout_s),
                                        stream=True)
        except requests.RequestException as error:  # connection refused, timeouts, retries exhausted on errors
            raise DataError(f"{self.shown}: the request failed after up to {options.retries} retries "
                            f"({self._reason(error)}); check data.source and that the API is reachable.") from None
        history = getattr(getattr(response.raw, "retries", None), "history", ()) or ()
        status = response.status_code
        if status < 400:
            return response, len(history)
        response.close()
        if status in (401, 403):
            fix = f"check the token in ${options.token_env}" if options.token_env else \
                "set data.http.token_env to the name of the environment variable holding the API token"
            raise DataError(f"{self.shown}: the API refused the request ({status} {response.reason}); {fix}.")
        if status in RETRY_STATUSES:
            raise DataError(f"{self.shown}: still {status} {response.reason} after {len(history)} retries; try "
                            "again later, or raise data.http.retries.")
        raise DataError(f"{self.shown}: the API answered {status} {response.reason}; check data.source.")

    def _body(self, response: requests.Response) -> bytearray:
        """The body, decoded, as it arrives; stopped at the limit, and between reads when told to stop."""
        limit = self.limit
        declared = response.headers.get("Content-Length", "").strip()
        encoded = response.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity")
        length = int(declared) if declared.isdigit() else None
        if length is not None and not encoded and length > limit.bytes:
            raise limit.exceeded(self.shown, self.number, length, counted=False)
        body = bytearray()
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                chunk = response.raw.read1(min(CHUNK, limit.bytes + 1 - len(body)), decode_content=True)
            except (urllib3.exceptions.HTTPError, OSError) as error:  # cut short, a read timeout, bad gzip
                raise DataError(f"{self.shown}: reading page {self.number} failed after "
                                f"{size_text(len(body))} ({self._reason(error)}); check that the API is "
                                "reachable, or raise data.http.read_timeout_s if it pauses that long.") from None
            if not chunk:
                return body
            body += chunk
            self.received = len(body)
            if len(body) > limit.bytes:
                raise limit.exceeded(self.shown, self.number, length, counted=True)

    def _reason(self, error: BaseException) -> str:
        return redact_text(first_line(error), *self.secrets)

