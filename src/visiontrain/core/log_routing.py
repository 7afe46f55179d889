"""What reaches the console and what only the run's log file (``<run dir>/visiontrain.log``).

The console is for a person: our own progress lines and warnings, errors from anyone, the end-of-run report.
Libraries' informational lines (Lightning's "GPU available", its tips, checkpoint restores) and Python warnings
from libraries (deprecations, "no optimizer" for a baseline) say nothing a user acts on, so they go to the log
file only. Import-light: Hydra builds :class:`ConsoleFilter` and :class:`RunLogFileHandler` from
``conf/hydra/default.yaml`` before any command.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from pathlib import Path

from visiontrain.errors import WRITE_ERRNOS, is_inside

OWN_LOGGER = "visiontrain"
CONSOLE_LOGGERS = (OWN_LOGGER, "hydra")  # every level: ours, and Hydra's sweep lines ("#1 : seed=2")
WARNINGS_LOGGER = "py.warnings"  # where logging.captureWarnings sends warnings.warn(...)
# loggers that attach a console handler of their own on import (lightning/__init__.py): theirs is removed, so
# their records reach the console through ours, filtered, and the log file
SELF_PRINTING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
FILE_ONLY = {"console": False}  # `extra=` of a record the console has already shown in its own words


class ConsoleFilter(logging.Filter):
    """Ours and Hydra's records at any level; other loggers' warnings and errors; library Python warnings never."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "console", True):
            return False
        if any(record.name == name or record.name.startswith(name + ".") for name in CONSOLE_LOGGERS):
            return True
        if record.name == WARNINGS_LOGGER:  # warnings.warn(...) from a library: deprecations, hints
            return False
        return record.levelno >= logging.WARNING


def route_library_output() -> None:
    """Send Python warnings through logging, and drop the console handlers libraries added for themselves.

    Call it once the command's libraries are imported (Lightning adds its handler at import time). Safe to
    call again; without Hydra's handlers on the root logger (a library used from a script) nothing changes.
    """
    if not logging.getLogger().handlers:
        return
    logging.captureWarnings(True)
    for name in SELF_PRINTING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:  # not a FileHandler (a subclass) someone added
                logger.removeHandler(handler)
        logger.propagate = True


_failures: list[OSError] = []  # writes that log files could not make, oldest first


class RunLogFileHandler(logging.FileHandler):
    """``<run dir>/visiontrain.log``; once the run dir refuses a write, it stops writing, silently.

    logging's own handler prints "--- Logging error ---" and a traceback on stderr for every record it cannot
    write, so a run dir that turns read-only would bury the run's one ``write error`` line under them. The first
    failure is kept instead (:func:`run_log_failure`), and the run stops on it like on any other refused write.
    """

    def handleError(self, record: logging.LogRecord) -> None:
        if not _keep_failure(self, sys.exc_info()[1]):
            super().handleError(record)


def quiet_file_logs(folder: Path) -> None:
    """Every other library's log file inside ``folder`` (W&B's debug.log) fails like ours: kept, never printed."""
    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    for handler in {handler for logger in loggers for handler in logger.handlers}:
        if isinstance(handler, logging.FileHandler) and not isinstance(handler, RunLogFileHandler) and \
                is_inside(handler.baseFilename, folder):
            handler.handleError = functools.partial(_handle_error, handler)  # type: ignore[method-assign]


def run_log_failure(folder: Path) -> OSError | None:
    """The first write a log file inside ``folder`` could not make; None while they are all written."""
    return next((failure for failure in _failures if is_inside(failure.filename, folder)), None)


def _handle_error(handler: logging.FileHandler, record: logging.LogRecord) -> None:
    if not _keep_failure(handler, sys.exc_info()[1]):
        type(handler).handleError(handler, record)


def _keep_failure(handler: logging.FileHandler, error: BaseException | None) -> bool:
    """Keep ``error`` if it is a refused write, and stop the handler (its file closed); False for any other."""
    if not isinstance(error, OSError) or error.errno not in WRITE_ERRNOS:
        return False
    _failures.append(OSError(error.errno, error.strerror or str(error), handler.baseFilename))
    handler.emit = lambda record: None  # type: ignore[method-assign]  # nothing more into a refusing folder
    stream, handler.stream = handler.stream, None
    with contextlib.suppress(OSError, ValueError):  # its buffer cannot be written either
        if stream is not None:
            stream.close()
    return True
