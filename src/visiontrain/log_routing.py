"""What reaches the console and what only the run's log file (``<run dir>/visiontrain.log``).

The console is for a person: our own progress lines and warnings, errors from anyone, the end-of-run report.
Libraries' informational lines (Lightning's "GPU available", its tips, checkpoint restores) and Python warnings
from libraries (deprecations, "no optimizer" for a baseline) say nothing a user acts on, so they go to the log
file only. Import-light: Hydra builds :class:`ConsoleFilter` from ``conf/hydra/default.yaml`` before any command.
"""

from __future__ import annotations

import logging

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
