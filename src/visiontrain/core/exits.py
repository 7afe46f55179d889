"""How a command ends on an error meant for the user: one line on stderr, secrets masked, its exit code.

Every layer that can end a command uses it: the CLI around each command, and the sweeper, whose errors Hydra
would otherwise print with a traceback.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from visiontrain.core.redaction import redact_text


def user_error(error: BaseException) -> tuple[str, int] | None:
    """What to call an error meant for the user, and the exit code (both carried by each class in
    :mod:`visiontrain.errors`); None for a bug (its traceback is shown)."""
    from visiontrain.errors import VisiontrainError

    return (error.kind, error.exit_code) if isinstance(error, VisiontrainError) else None


def exit_with(error: BaseException) -> NoReturn:
    """One line on stderr, secrets masked, and the exit code of :func:`user_error`: no traceback."""
    kind, code = user_error(error)
    print(f"visiontrain: {kind}: {redact_text(_own_message(error))}", file=sys.stderr, flush=True)
    raise SystemExit(code) from None


def _own_message(error: BaseException) -> str:
    """``error``'s message without the wrapper torch puts around an error raised in a DataLoader worker process
    ("Caught DataError in DataLoader worker process 0. Original Traceback ..."): the user reads our line only."""
    text = str(error)
    raised_as = f"{type(error).__module__}.{type(error).__qualname__}: "
    if text.startswith("Caught ") and "Original Traceback" in text and raised_as in text:
        return text.rsplit(raised_as, 1)[1].rstrip("\n")
    return text
