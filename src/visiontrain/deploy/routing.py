"""Which version answers a request: production, or the candidate for a share of the traffic (torch-free).

A :class:`Routing` is immutable: the rollout builds a new one when an alias moves and swaps it in with one
assignment, and a request takes the routing once, at its start, holding a lease on its versions until it has
answered (:meth:`Routing.lease`), so it finishes on the versions it started with.

The rule, with ``canary_share`` s (0..1) and a candidate that is not production:

- with a sticky key (``header:X-User-Id``, or ``field:customerID`` per table row) the key is hashed with the
  model's name into a point of [0, 1) (:func:`bucket`: sha256, the same in every process and on every
  restart); points below s go to the candidate. One user therefore always sees one version, and raising s
  only moves users from production to the candidate, never back (a point below 0.1 is below 0.3 too);
- without one (or a request or row that lacks it) one random draw per request decides.

``shadow``: the candidate also scores a copy of what production answers (never returned). Canary and shadow
combine: the candidate answers its share, and shadows the rest.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

from visiontrain.config.commands import StickyKey
from visiontrain.deploy.deployed import Deployed
from visiontrain.monitoring.current import SHADOW_ROLE

PRODUCTION, CANDIDATE, SHADOW = "production", "candidate", SHADOW_ROLE  # the roles a version plays for an input
_POINTS = float(2 ** 64)


def bucket(salt: str, key: str) -> float:
    """``key``'s point in [0, 1): the first 64 bits of sha256(salt, key); stable across processes and versions."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _POINTS


@dataclass(frozen=True)
class Routing:
    """The versions one alias revision serves and how requests are split between them; never changed in place."""

    revision: int
    production: Deployed
    candidate: Deployed | None = None  # None: no candidate alias, the same version as production, or unloadable
    canary_share: float = 0.0
    shadow: bool = False
    sticky: StickyKey | None = None
    salt: str = ""  # the registered model's name: another model splits its users differently
    aliases: Mapping[str, int] = field(default_factory=dict)  # as the registry's revision had them
    draw: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    @property
    def versions(self) -> tuple[Deployed, ...]:
        return (self.production,) if self.candidate is None else (self.production, self.candidate)

    @property
    def splits(self) -> bool:
        """Whether the candidate answers any request."""
        return self.candidate is not None and self.canary_share > 0

    def choose(self, key: str | None = None) -> Deployed:
        """The version that answers for ``key`` (None: a random draw)."""
        if self.candidate is None or self.canary_share <= 0:
            return self.production
        point = self.draw() if key is None else bucket(self.salt, key)
        return self.candidate if point < self.canary_share else self.production

    def role(self, deployed: Deployed) -> str:
        return PRODUCTION if deployed is self.production else CANDIDATE

    def shadow_of(self, deployed: Deployed) -> Deployed | None:
        """The version that shadows what ``deployed`` answered: the candidate, for production's answers."""
        if self.shadow and self.candidate is not None and deployed is self.production:
            return self.candidate
        return None

    @contextmanager
    def lease(self) -> Iterator[Routing]:
        """Hold every version of this routing until the block ends (the request has answered)."""
        held = self.versions
        for deployed in held:
            deployed.acquire()
        try:
            yield self
        finally:
            for deployed in held:
                deployed.release()

    def describe(self) -> dict[str, Any]:
        """What /health and /metadata show of the split."""
        return {"revision": self.revision, "aliases": dict(self.aliases), "production": self.production.label,
                "candidate": self.candidate.label if self.candidate is not None else None,
                "canary_share": self.canary_share if self.candidate is not None else 0.0,
                "sticky_key": str(self.sticky) if self.sticky else None,
                "shadow": self.shadow and self.candidate is not None}
