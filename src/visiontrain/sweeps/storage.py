"""Where a study lives: a journal file in the sweep dir by default, or any database URL Optuna takes.

The journal (Optuna's ``JournalStorage`` over a file, locked with a symlink) needs no server and works on a
shared filesystem, so workers on several machines can join one study through a shared sweep dir. A database URL
(``sqlite:///sweeps.db``, ``postgresql://user@host/db``) takes its password from the environment: libpq's own
``PGPASSWORD``, or an ``${oc.env:VAR}`` interpolation inside the URL, which Hydra stores unresolved. The URL is
only ever printed or stored redacted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visiontrain.core.redaction import redact_text, redact_url
from visiontrain.errors import ConfigError

if TYPE_CHECKING:
    import optuna

JOURNAL_FILE = "study.journal"


@dataclass(frozen=True)
class StudyStorage:
    """A study's storage: ``url`` (resolved, may hold a password: never print it) or the journal ``path``."""

    url: str | None
    journal: Path | None

    @classmethod
    def choose(cls, url: str | None, sweep_dir: Path) -> StudyStorage:
        if url in (None, "", "journal"):
            return cls(url=None, journal=sweep_dir / JOURNAL_FILE)
        text = str(url)
        if text.startswith("journal:"):  # journal:/shared/path/study.journal
            return cls(url=None, journal=Path(text.removeprefix("journal:")).expanduser())
        if "://" not in text:
            raise ConfigError("hydra.sweeper.storage", f"{redact_url(text)!r} is neither a database URL nor a "
                              "journal file", "leave it null (a journal file in the sweep dir), or "
                              "sqlite:///sweeps.db, postgresql://user@host/db, journal:/shared/study.journal")
        return cls(url=text, journal=None)

    @property
    def shown(self) -> str:
        """What logs, summaries and errors may say about it."""
        return f"journal file {self.journal}" if self.journal else redact_url(self.url or "")

    @property
    def dashboard_argument(self) -> str:
        """What to pass to ``optuna-dashboard`` for a live view (the password stays in the environment)."""
        return str(self.journal) if self.journal else redact_url(self.url or "").replace(":***@", "@")

    def open(self) -> optuna.storages.BaseStorage:
        """The Optuna storage; a URL that cannot be opened fails naming the key, the password masked."""
        import optuna
        from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

        if self.journal is not None:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            lock = JournalFileSymlinkLock(str(self.journal))  # works on NFS too (no fcntl)
            return optuna.storages.JournalStorage(JournalFileBackend(str(self.journal), lock_obj=lock))
        try:
            return optuna.storages.RDBStorage(self.url, engine_kwargs=_engine_kwargs(self.url))
        except Exception as error:  # noqa: BLE001 - a driver missing, a server down: one line, masked
            secret = _password(self.url)
            raise ConfigError("hydra.sweeper.storage", f"cannot open {self.shown}: "
                              f"{redact_text(f'{type(error).__name__}: {error}', secret or '')}",
                              "check the URL, that its driver is installed (e.g. psycopg2 for postgresql://) "
                              "and that the server is up; the password comes from the environment") from None


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):  # several workers write one file: wait for the lock instead of failing
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True}


def _password(url: str | None) -> str | None:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url or "").password
    except Exception:  # noqa: BLE001
        return None
