"""Secrets in data-source URLs never reach a file, a log line, W&B or an error message.

A database URL may carry a password (``postgresql://user:secret@host/db``) or a token in its query
(``sqlite:///x.db?password=...``, ``...?access_token=...``). Everything a run writes goes through the
functions here at the point where it is written: :func:`redact_url` for one URL, :func:`redact_text` for a
message that may contain URLs, and :func:`config_without_secrets` for a resolved config (checkpoint hparams,
W&B config, summaries). Torch-free and import-light: the deploy side may use it too.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MASK = "***"
# query parameters whose value is a credential (compared lower-case, '-' read as '_')
SECRET_PARAMETERS = frozenset({
    "password", "passwd", "pwd", "pass", "secret", "token", "key", "api_key", "apikey", "access_token",
    "auth_token", "refresh_token", "client_secret", "private_key", "sslpassword", "sas_token", "signature",
    "sig", "credentials", "aws_secret_access_key", "aws_session_token"})
URL_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]*[^\s'\"<>`.,:;)\]]")  # no trailing punctuation
_QUERY_PARAMETER = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&;#\s]+)=(?P<value>[^&;#\s'\"`]*)")


def is_secret_parameter(name: str) -> bool:
    return name.lower().replace("-", "_") in SECRET_PARAMETERS


def secrets_in_url(url: str) -> list[str]:
    """The credential values in ``url``: the password of its user part and every secret-named query value."""
    text = str(url)
    if "://" not in text:
        return []
    found = []
    password = _password(text)
    if password:
        found.append(password)
    query = text.split("?", 1)[1] if "?" in text else ""
    found += [value for name, value in parse_qsl(query.split("#", 1)[0], keep_blank_values=False)
              if is_secret_parameter(name) and value]
    return [value for value in found if value != MASK]  # already redacted


def has_secret(url: str) -> bool:
    return bool(secrets_in_url(url))


def redact_url(url: str) -> str:
    """``url`` fit to print or store: its password and secret query values replaced by ``***``.

    A SQLAlchemy URL is rendered by SQLAlchemy itself (``hide_password=True``); anything else that looks like
    a URL has the password of its user part masked by pattern. Text that is not a URL comes back unchanged.
    """
    text = str(url)
    if "://" not in text or not has_secret(text):
        return text
    try:
        rendered = _sqlalchemy_url(text).render_as_string(hide_password=True)
    except ValueError:  # not a SQLAlchemy URL (or no SQLAlchemy on the deploy side)
        rendered = re.sub(r"(://[^/@]*?:)[^/]*@", rf"\g<1>{MASK}@", text, count=1)
    return _mask_query(rendered)


def redact_text(text: str, *known: str) -> str:
    """A message with every URL in it redacted, and any of the ``known`` secret values masked wherever they
    appear (drivers echo connection details in their own words)."""
    redacted = URL_PATTERN.sub(lambda match: redact_url(match.group(0)), str(text))
    for secret in sorted({s for s in known if s}, key=len, reverse=True):
        redacted = redacted.replace(secret, MASK)
    return redacted


def config_without_secrets(cfg: Any) -> Any:
    """The resolved config as plain containers, with no secret left in it.

    A value that resolved to a URL with a secret is stored as the interpolation it came from
    (``${oc.env:DB_URL}``), so a later ``evaluate`` or ``export`` of the checkpoint reads the same variable;
    a secret typed into the config itself is masked.
    """
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if not isinstance(cfg, (DictConfig, ListConfig)):
        return _scrub(cfg, None)
    return _scrub(OmegaConf.to_container(cfg, resolve=True), OmegaConf.to_container(cfg, resolve=False))


def _scrub(value: Any, raw: Any) -> Any:
    if isinstance(value, dict):
        raw = raw if isinstance(raw, dict) else {}
        return {key: _scrub(item, raw.get(key)) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        raw = raw if isinstance(raw, (list, tuple)) and len(raw) == len(value) else [None] * len(value)
        return [_scrub(item, raw_item) for item, raw_item in zip(value, raw)]
    if isinstance(value, str) and has_secret(value):
        if isinstance(raw, str) and "${" in raw and not has_secret(raw):
            return raw
        return redact_url(value)
    return value


def _sqlalchemy_url(text: str) -> Any:
    """``make_url(text)``; ValueError where it is not a SQLAlchemy URL or SQLAlchemy is not installed."""
    try:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError
    except ImportError:
        raise ValueError("SQLAlchemy is not installed") from None
    try:
        return make_url(text)
    except ArgumentError as error:
        raise ValueError(str(error)) from None


def _password(url: str) -> str | None:
    try:
        return _sqlalchemy_url(url).password or None
    except ValueError:
        try:
            return urlsplit(url).password or None
        except ValueError:
            return None


def _mask_query(url: str) -> str:
    def mask(match: re.Match[str]) -> str:
        if not is_secret_parameter(match.group("name")) or not match.group("value"):
            return match.group(0)
        return f"{match.group('lead')}{match.group('name')}={MASK}"

    if "?" not in url:
        return url
    head, query = url.split("?", 1)
    return head + _QUERY_PARAMETER.sub(mask, "?" + query)
