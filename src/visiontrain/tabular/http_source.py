"""``data.source=https://...`` (or ``http://``): rows from a JSON HTTP API, page by page, for training.

Transient failures are retried by urllib3's ``Retry`` (exponential backoff on 429 and 5xx, honouring
``Retry-After``), each request has a connect and a read timeout, and a bearer token comes from the environment
variable ``data.http.token_env`` names: it is sent only to the source's own host and never written anywhere.
Pages follow a ``Link: rel="next"`` header, a ``next`` URL in the body, or a page parameter until an empty page
(``data.http.pagination``); ``max_pages`` stops a server that never says "last page", and a next link back to a
page already read stops the read too. Each page must arrive whole within ``page_timeout_s`` and hold at most
``max_page_bytes``, all pages together at most ``max_total_bytes``, and the rows at most ``data.max_rows``
(:mod:`visiontrain.tabular.http_page`): a server that trickles, never ends or sends gigabytes stops the run with
an error naming the key to raise, instead of hanging it or filling memory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import pandas as pd
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from visiontrain.config.choices import HTTP_ROWS_KEYS
from visiontrain.config.tabular import DEFAULT_MAX_ROWS, HttpSource
from visiontrain.core.json_rows import loads
from visiontrain.core.redaction import redact_url, secrets_in_url
from visiontrain.errors import ConfigError, DataError, JsonProblem
from visiontrain.tabular.http_page import RETRY_STATUSES, ByteLimit, Page, fetch_page
from visiontrain.tabular.source_limits import too_many_rows
from visiontrain.tabular.source_lineage import SourceRead

MAX_WAIT_S = 60.0  # the longest pause between two attempts, backoff or Retry-After


def bearer_token(options: HttpSource) -> str | None:
    """The bearer token from the environment; a named but unset variable is a mistake, not "no token"."""
    if not options.token_env:
        return None
    token = os.environ.get(options.token_env, "").strip()
    if not token:  # read here, at the source: the variable is the run's environment, not its config
        raise ConfigError("data.http.token_env", f"names the environment variable {options.token_env}, which is "
                          "not set", f"export {options.token_env}=<the API token> before the run")
    return token


class _BoundedRetry(Retry):
    """urllib3's Retry with ``Retry-After`` capped at ``backoff_max``: a server asking for an hour's pause
    uses up a retry sooner rather than holding the run that long (it then fails, naming the status)."""

    def get_retry_after(self, response: Any) -> float | None:
        wait = super().get_retry_after(response)
        return None if wait is None else min(wait, self.backoff_max)


class _BearerToken(requests.auth.AuthBase):
    """``Authorization: Bearer ...`` on requests to the source's own scheme and host only: a next link that
    points elsewhere is followed without the token."""

    def __init__(self, token: str, origin: tuple[str, str]) -> None:
        self.token = token
        self.origin = origin

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if _origin(str(request.url)) == self.origin:
            request.headers["Authorization"] = f"Bearer {self.token}"
        return request


@dataclass
class _Pages:
    """What the pages held so far: rows and their origin, items that were not rows, one entry per page."""

    rows: list[dict[str, Any]]
    lineage: list[tuple[int, str, int]]
    not_rows: list[dict[str, Any]]
    pages: list[dict[str, Any]]


def read_http_source(url: str, options: HttpSource, max_rows: int = DEFAULT_MAX_ROWS) -> SourceRead:
    """Every page of the JSON API at ``url`` as raw rows, each with its page URL (redacted) and index."""
    token = bearer_token(options)
    with requests.Session() as session:
        adapter = HTTPAdapter(max_retries=_BoundedRetry(
            total=options.retries, backoff_factor=options.backoff_s, backoff_max=MAX_WAIT_S,
            status_forcelist=RETRY_STATUSES, allowed_methods=frozenset({"GET"}), respect_retry_after_header=True,
            raise_on_status=False))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["Accept"] = "application/json"
        session.auth = _BearerToken(token, _origin(url)) if token else None
        return _read_pages(session, url, options, [*secrets_in_url(url), *([token] if token else [])], max_rows)


def _read_pages(session: requests.Session, url: str, options: HttpSource, secrets: list[str],
                max_rows: int) -> SourceRead:
    """Page after page until the last (no next link or field; page mode: an empty page)."""
    found = _Pages([], [], [], [])
    has_page = options.page_param in dict(parse_qsl(urlsplit(url).query))
    numbered = options.pagination == "page" or (options.pagination == "auto" and has_page)
    page_number = _page_number(url, options.page_param) if numbered else None
    if numbered and not has_page:
        url = _with_page(url, options.page_param, page_number)
    seen: dict[str, int] = {}  # page URL -> its number
    used = "none"
    read_bytes = 0
    next_url: str | None = url
    while next_url is not None:
        number = len(found.pages) + 1
        if number > options.max_pages:
            raise DataError(f"{redact_url(url)}: more than data.http.max_pages={options.max_pages} pages (page "
                            f"{number} would be {redact_url(next_url)}); raise data.http.max_pages if the API "
                            "really has that many, or check that its last page says so (no next link; page "
                            "mode: an empty page).")
        seen[next_url] = number
        limit = ByteLimit.for_page(options.max_page_bytes, options.max_total_bytes, read_bytes)
        page = fetch_page(session, next_url, number, options, [*secrets_in_url(next_url), *secrets], limit)
        read_bytes += len(page.body)
        body = _json_body(page)
        items = _rows_of(body, options.rows_key, next_url)
        _take(found, items, next_url, page.retries)
        if len(found.rows) > max_rows:
            raise too_many_rows(redact_url(url), max_rows, "filter the API's rows (a query parameter in "
                                "data.source)")
        next_url, how = _next_page(page, body, next_url, options, page_number, bool(items))
        if how == "page" and page_number is not None:
            page_number += 1
        used = how if how != "none" else used
        if next_url is not None and next_url in seen:
            raise DataError(f"{redact_url(url)}: page {number} points back at page {seen[next_url]} "
                            f"({redact_url(next_url)}), already read: following it would loop forever "
                            f"(pagination {used}). Set data.http.pagination to the way this API pages, or check "
                            "its next links.")
    if not found.rows:
        raise DataError(f"{redact_url(url)}: the API returned no rows ({len(found.pages)} pages, "
                        f"{len(found.not_rows)} items not rows); point data.source at the data.")
    return SourceRead(frame=pd.DataFrame(found.rows), lineage=_lineage(found.lineage),
                      not_rows=pd.DataFrame(found.not_rows, columns=["page", "url", "index", "reason", "value"]),
                      report=_report(url, found, used))


def _json_body(page: Page) -> Any:
    """The page as JSON, read by the parser serve and stream use (deep nesting and huge integers handled)."""
    try:
        return loads(page.body)
    except JsonProblem:
        kind = page.headers.get("Content-Type", "no content type")
        raise DataError(f"{redact_url(page.url)}: the answer is not JSON ({kind}, {len(page.body)} bytes); "
                        "data.source must be a JSON API.") from None


def _rows_of(body: Any, rows_key: str, url: str) -> list[Any]:
    """The list of items in a page: the body itself, or the list under ``rows_key`` (auto: a common key)."""
    if rows_key == "auto":
        if isinstance(body, list):
            return body
        if isinstance(body, dict):
            for key in HTTP_ROWS_KEYS:
                if isinstance(body.get(key), list):
                    return body[key]
        keys = ", ".join(map(repr, body)) if isinstance(body, dict) else _kind(body)
        raise DataError(f"{redact_url(url)}: no list of rows in the answer (the body is {keys}; looked for a list "
                        f"or one under {', '.join(HTTP_ROWS_KEYS)}); set data.http.rows_key=<the key>.")
    node = body
    for part in rows_key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, list):
        raise DataError(f"{redact_url(url)}: the answer holds no list under data.http.rows_key={rows_key!r}; "
                        "set it to the key of the rows (or auto).")
    return node


def _take(found: _Pages, items: list[Any], url: str, retries: int) -> None:
    """Add a page's items: objects are rows, anything else is listed with its reason."""
    page, shown = len(found.pages) + 1, redact_url(url)
    rows = 0
    for index, item in enumerate(items):
        if isinstance(item, dict) and item:
            found.rows.append(item)
            found.lineage.append((page, shown, index))
            rows += 1
        else:
            what = "an empty object" if isinstance(item, dict) else _kind(item)
            found.not_rows.append({"page": page, "url": shown, "index": index,
                                   "reason": f"item {index} is {what}, not a JSON object of column: value",
                                   "value": json.dumps(item, default=str)})
    found.pages.append({"page": page, "url": shown, "rows": rows, "not_rows": len(items) - rows,
                        "retries": retries})


def _next_page(page: Page, body: Any, url: str, options: HttpSource, page_number: int | None,
               had_items: bool) -> tuple[str | None, str]:
    """The next page's URL and how it was found (link | next | page), or (None, "none") after the last."""
    mode = options.pagination
    if mode in ("auto", "link") and page.links.get("next", {}).get("url"):
        return urljoin(url, page.links["next"]["url"]), "link"
    if mode in ("auto", "next") and isinstance(body, dict) and isinstance(body.get(options.next_key), str) \
            and body[options.next_key]:
        return urljoin(url, body[options.next_key]), "next"
    if page_number is not None and had_items:
        return _with_page(url, options.page_param, page_number + 1), "page"
    return None, "none"


def _kind(value: Any) -> str:
    """A parsed JSON value's kind in JSON's words, for messages."""
    names = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "text",
             list: "a list", dict: "an object"}
    return next((name for kind, name in names.items() if isinstance(value, kind)), type(value).__name__)


def _page_number(url: str, parameter: str) -> int:
    text = dict(parse_qsl(urlsplit(url).query)).get(parameter, "1")
    if not text.isdigit():
        raise ConfigError("data.source", f"has {parameter}={text!r}, not a page number",
                          f"start at {parameter}=1 (or set data.http.page_param)")
    return int(text)


def _with_page(url: str, parameter: str, number: int | None) -> str:
    parts = urlsplit(url)
    query = [(name, value) for name, value in parse_qsl(parts.query, keep_blank_values=True) if name != parameter]
    return urlunsplit(parts._replace(query=urlencode([*query, (parameter, str(number or 1))])))


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _lineage(entries: list[tuple[int, str, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(entries, columns=["page", "url", "index_in_page"])
    frame.insert(0, "row", range(1, len(frame) + 1))
    return frame


def _report(url: str, found: _Pages, pagination: str) -> dict[str, Any]:
    """The data report's ``source``: the API, its pages (redacted URLs), rows, retries and items not rows."""
    return {"kind": "http", "description": f"HTTP API {redact_url(url)}", "url": redact_url(url),
            "read": len(found.rows) + len(found.not_rows), "rows": len(found.rows),
            "not_rows": len(found.not_rows), "pages": len(found.pages), "pagination": pagination,
            "retries": sum(page["retries"] for page in found.pages), "page_list": found.pages}
