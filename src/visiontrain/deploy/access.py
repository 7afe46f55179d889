"""Who may call the service: an optional bearer token, read from the environment or a file only.

A token on the command line would show in ``ps``, the shell history and Hydra's saved overrides, so
``visiontrain serve token=...`` is refused before Hydra starts. The token is compared in constant time
and never printed, logged or echoed in an error.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

from visiontrain.errors import ConfigError

log = logging.getLogger("visiontrain")

TOKEN_ENV = "VISIONTRAIN_SERVE_TOKEN"
SHORTEST_TOKEN = 16  # characters: shorter ones can be guessed
SECRET_KEYS = ("token", "bearer_token", "auth_token", "api_token", "api_key", "password")
TOKEN_FIX = (f"export {TOKEN_ENV}=<token>, or token_file=<a file only the server's user can read> "
             "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def refuse_command_line_secrets(overrides: Iterable[str]) -> None:
    """Raise ConfigError for ``token=...`` (or ``+token=...``) in the overrides, never echoing the value."""
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~").strip().lower()
        if "=" in override and key in SECRET_KEYS:
            raise ConfigError(key, "a token on the command line is not accepted: it would show in `ps`, the "
                              "shell history and Hydra's saved overrides", TOKEN_FIX)


def load_token(token_file: str | None, environ: dict[str, str] | None = None) -> tuple[str | None, str]:
    """The bearer token (None: no authentication) and where it came from, for the start-up line."""
    environ = dict(os.environ if environ is None else environ)
    from_env = environ.get(TOKEN_ENV)
    if token_file and from_env is not None:
        raise ConfigError("token_file", f"is set and so is {TOKEN_ENV}: the token must come from one place",
                          f"unset {TOKEN_ENV}, or drop token_file")
    if token_file:
        path = Path(token_file).expanduser()
        try:
            token, source = path.read_text().strip(), f"token_file {path}"
            mode = path.stat().st_mode
        except OSError as error:
            problem = f"{path} cannot be read ({error.strerror or error})"
            raise ConfigError("token_file", problem, TOKEN_FIX) from None
        if mode & 0o077:
            log.warning("token_file %s can be read by other users (mode %o): chmod 600 %s", path, mode & 0o777, path)
        key = "token_file"
    elif from_env is not None:
        token, source, key = from_env.strip(), f"${TOKEN_ENV}", TOKEN_ENV
    else:
        return None, "none (anyone who can reach the port can call it)"
    if len(token) < SHORTEST_TOKEN or any(char.isspace() for char in token):
        raise ConfigError(key, f"the token must be at least {SHORTEST_TOKEN} characters with no spaces "
                          f"(this one has {len(token)})", TOKEN_FIX)
    return token, source


class BearerAuth:
    """ASGI middleware: every path but ``open_paths`` needs ``Authorization: Bearer <token>``, else 401.

    Pure ASGI (no body buffering): a refused request is answered before its body is read.
    """

    def __init__(self, app: Callable, token: str, open_paths: Iterable[str] = ()) -> None:
        self.app, self.token, self.open_paths = app, token.encode(), frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, credentials = given.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.token):
            await self.app(scope, receive, send)
            return
        problem = "a bearer token is required" if not given else "the bearer token is not valid"
        body = json.dumps({"detail": f"{problem}: send the header `Authorization: Bearer <token>`"}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer realm="visiontrain"')]})
        await send({"type": "http.response.body", "body": body})
