"""Whether a W&B run can go online from here: training runs and the sweep report decide it the same way.

``auto`` is online only with credentials (WANDB_API_KEY, or a netrc entry from ``wandb login``), offline
otherwise. Before going online, the key's shape is checked (wandb's own rule) and the server gets a TCP connect
of at most PROBE_SECONDS, so a bad key or an unreachable server means offline with one warning, not a hang.
Library-free (wandb is imported only for its key check), so any layer can ask.
"""

from __future__ import annotations

import logging
import netrc
import os
import socket
from urllib.parse import urlsplit

log = logging.getLogger("visiontrain")
DEFAULT_BASE_URL = "https://api.wandb.ai"
PROBE_SECONDS = 3.0
INIT_TIMEOUT_SECONDS = 20  # how long wandb.init may wait for the server; WANDB_INIT_TIMEOUT overrides


def resolve_mode(mode: str = "auto") -> str:
    """online | offline | disabled. ``auto``: WANDB_MODE if set, online with credentials, else offline."""
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        credentials = netrc.netrc().authenticators("api.wandb.ai")
    except (OSError, netrc.NetrcParseError):
        credentials = None
    return "online" if credentials else "offline"


def online_problem() -> str | None:
    """Why an online run cannot start from here (a malformed API key, an unreachable server), or None.

    The key is checked for shape only (wandb's own rule), never printed; the server (WANDB_BASE_URL, or the
    HTTPS proxy when one is set) gets a TCP connect of at most PROBE_SECONDS.
    """
    key = os.environ.get("WANDB_API_KEY")
    if key:
        try:
            from wandb.sdk.lib.wbauth.validation import check_api_key
        except ImportError:  # another wandb layout: leave the key to wandb.init (its errors fall back too)
            check_api_key = None
        problem = check_api_key(key) if check_api_key else None
        if problem:
            return f"WANDB_API_KEY is not a W&B API key ({problem})"
    host, port = _probe_address()
    try:
        with socket.create_connection((host, port), timeout=PROBE_SECONDS):
            return None
    except OSError as error:
        return f"the W&B server {host}:{port} cannot be reached ({error.strerror or type(error).__name__})"


def warn_offline(problem: str, where: str = "<run dir>") -> None:
    """One warning that says why the run went offline and how to upload it later."""
    log.warning("W&B: %s; logging offline instead. Upload the run later with "
                "`wandb sync %s/wandb/offline-run-*`", problem, where)


def _probe_address() -> tuple[str, int]:
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    parts = urlsplit(proxy or os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL)
    default_port = 443 if parts.scheme == "https" else 80
    return parts.hostname or "api.wandb.ai", parts.port or default_port
