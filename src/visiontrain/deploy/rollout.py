"""What `serve` serves from: one model file (:class:`FixedVersion`), or a registry's aliases (:class:`Rollout`).

Both give the app the same things (:class:`Versions`): the current :class:`~visiontrain.deploy.routing.Routing`,
metrics, ``start``/``close`` inside the server's event loop, and what ``/health`` and ``/metadata`` report.

:class:`Rollout` follows one registered model's ``production`` and ``candidate`` aliases
(:mod:`visiontrain.model_registry.store`). Every ``registry_poll_s`` it reads the aliases (one small JSON file);
when their revision moved it loads each newly referenced version (the ONNX file, its sha256 checked, its session
and its own batcher started) *before* switching, then swaps the routing with one assignment. Requests that
started earlier finish on the versions they leased; a version no longer referenced is closed once the last of
them has answered. A version that cannot be loaded (a corrupt file, a sha256 mismatch, another kind of model or
other input columns than production) never becomes routing: the error is logged and counted
(``visiontrain_registry_errors_total``) and production keeps answering; the load is tried again when the aliases
next move. Nothing a registry does ends the server once it is running.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any, Protocol

from visiontrain.config.commands import ServeOptions, StickyKey
from visiontrain.deploy.deployed import Deployed
from visiontrain.deploy.metrics import RolloutMetrics, ServeMetrics, registered_labels
from visiontrain.deploy.routing import CANDIDATE, PRODUCTION, Routing
from visiontrain.errors import ConfigError, RegistryError, VisiontrainError
from visiontrain.inference.onnx_model import IMAGE, OnnxModel
from visiontrain.model_registry.store import Aliases, ModelRegistry

logger = logging.getLogger("visiontrain")

PROMOTE_FIX = "visiontrain models promote registry=<the same> model=<name> version=<n> to=production"


class Versions(Protocol):
    """What the app serves from. ``registered``: versions are registry versions (responses name them, each
    prediction says which answered); otherwise one file, named by its sha256 as `serve` always has."""

    metrics: ServeMetrics
    registered: bool

    @property
    def routing(self) -> Routing: ...

    def start(self) -> None: ...

    async def close(self) -> None: ...

    def health(self) -> dict[str, Any]: ...

    def describe(self) -> dict[str, Any]: ...


class FixedVersion:
    """One model file, named ``sha256:<hex>``: what `serve model=<file.onnx>` serves."""

    registered = False

    def __init__(self, model: OnnxModel, settings: ServeOptions) -> None:
        self.metrics = ServeMetrics(model)
        self.routing = Routing(0, Deployed(model, f"sha256:{model.version}", settings, self.metrics.scored))

    def start(self) -> None:
        self.routing.production.start()

    async def close(self) -> None:
        await self.routing.production.close(force=True)

    def health(self) -> dict[str, Any]:
        production = self.routing.production
        return {"status": "ok", "model_version": production.label, "providers": production.model.providers,
                **production.batcher.stats.as_dict()}

    def describe(self) -> dict[str, Any]:
        return self.routing.production.model.describe()


def incompatibility(model: OnnxModel, production: OnnxModel) -> str | None:
    """Why ``model`` cannot take ``production``'s requests (another kind, other input columns), or None."""
    kinds = {IMAGE: "an image classifier"}
    if model.kind != production.kind:
        return (f"it is {kinds.get(model.kind, 'a table model')} and production is "
                f"{kinds.get(production.kind, 'a table model')}: clients could not send it the same requests")
    if model.kind != IMAGE:
        theirs, ours = model.input_columns(), production.input_columns()
        if theirs != ours:
            missing = sorted(set(ours) - set(theirs))
            extra = sorted(set(theirs) - set(ours))
            retyped = sorted(name for name in set(ours) & set(theirs) if ours[name] != theirs[name])
            parts = [f"{label} {', '.join(names)}" for label, names in
                     (("without", missing), ("with new", extra), ("with other types for", retyped)) if names]
            return f"its input columns differ from production's ({'; '.join(parts)})"
    return None


def check_sticky_key(sticky: StickyKey | None, kind: str) -> None:
    """A field sticky key needs table rows: an image classifier's requests are files."""
    if sticky is not None and sticky.source == "field" and kind == IMAGE:
        raise ConfigError("sticky_key", f"{sticky} names a row field, but this model is an image classifier: its "
                          "requests are files without fields", "sticky_key=header:X-User-Id")


class Rollout:
    """``name``'s production and candidate versions in ``registry``, followed as the aliases move.

    Constructing it loads production (and the candidate, when it loads), so start-up mistakes are ConfigErrors
    before the server starts. ``routing`` is replaced, never changed: read it once per request.
    """

    registered = True

    def __init__(self, registry: ModelRegistry, name: str, settings: ServeOptions) -> None:
        self.registry, self.name, self.settings = registry, name, settings
        self.metrics = RolloutMetrics()
        self.last_error: str | None = None  # why the latest alias revision is not (fully) served
        self._retiring: list[Deployed] = []  # no longer referenced; closed once nothing holds them
        self._failed_revision: int | None = None  # a revision whose production failed: retried once it moves
        self._read_failing = False
        self._task: asyncio.Task | None = None
        self.routing: Routing = self._open()

    def _open(self) -> Routing:
        """Production loaded, and the candidate if it loads; a ConfigError naming the fix when production
        cannot be served."""
        where = self.registry.where
        try:
            state = self.registry.aliases(self.name)
            numbers = [version.version for version in self.registry.versions(self.name)]
        except RegistryError:
            raise
        except (VisiontrainError, OSError, ValueError) as error:
            raise ConfigError("registry", f"{where} cannot be read: {error}",
                              "registry=<a registry folder or URL you can read>") from None
        if not numbers:
            known = self.registry.names()
            raise ConfigError("model", f"registry {where} has no model {self.name!r}"
                              f"{' (it has ' + ', '.join(known) + ')' if known else ' (it is empty)'}",
                              f"model=<a registered name>{f', e.g. model={known[0]}' if known else ''}")
        number = state.get(PRODUCTION)
        if number is None:
            aliases = ", ".join(f"{alias} -> v{n}" for alias, n in sorted(state.aliases.items())) or "none yet"
            raise ConfigError("model", f"{self.name} in {where} has no production alias (aliases: {aliases}; "
                              f"versions v{numbers[0]}..v{numbers[-1]})", PROMOTE_FIX)
        try:
            production = self._load(number, None)
        except ConfigError:
            raise
        except (VisiontrainError, OSError, ValueError) as error:
            raise ConfigError("model", f"production {self.name}:v{number} in {where} cannot be served: "
                              f"{_reason(error)}", f"{PROMOTE_FIX} (one that loads), or roll production "
                              "back") from None
        check_sticky_key(self.settings.sticky, production.model.kind)
        candidate = None
        if (wanted := self._candidate_number(state, production)) is not None:
            try:
                candidate = self._load(wanted, production.model, self.shadow_only)
            except Exception as error:  # noqa: BLE001 - a broken candidate must not stop production
                self._candidate_error(state, wanted, production, error)
        return self._routing(state, production, candidate)

    # --- in the server's event loop ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the batchers of the versions served and the task that follows the aliases."""
        for deployed in self.routing.versions:
            self._serve(deployed)
        self._published(self.routing)
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for deployed in (*self.routing.versions, *self._retiring):
            await deployed.close(force=True)

    async def refresh(self) -> bool:
        """Read the aliases once and switch when their revision moved; True when the routing was replaced."""
        try:
            state = await asyncio.to_thread(self.registry.aliases, self.name)
        except Exception as error:  # noqa: BLE001 - an unreachable registry must never end the server
            self._read_error(error)
            return False
        if self._read_failing:
            logger.info("serve: registry %s readable again", self.registry.where)
            self._read_failing = False
        current = self.routing
        if state.revision in (current.revision, self._failed_revision):
            return False
        self.last_error = None
        number = state.get(PRODUCTION)
        if number is None:
            return self._refuse(state, f"no production alias any more: {current.production.label} keeps answering")
        try:
            production = await self._obtain(number, current.production.model)
        except Exception as error:  # noqa: BLE001 - a version that cannot load is refused, never served
            return self._refuse(state, f"{self.name}:v{number} cannot serve as production ({_reason(error)}): "
                                f"{current.production.label} keeps answering; the load is tried again when the "
                                "aliases next move")
        candidate = None
        if (wanted := self._candidate_number(state, production)) is not None:
            try:
                candidate = await self._obtain(wanted, production.model, self.shadow_only)
            except Exception as error:  # noqa: BLE001 - a broken candidate must not stop production
                self._candidate_error(state, wanted, production, error)
        self._switch(self._routing(state, production, candidate))
        return True

    async def reap(self) -> None:
        """Close the versions no longer referenced that no request holds any more."""
        for deployed in [d for d in self._retiring if d.in_flight == 0]:
            self._retiring.remove(deployed)
            await deployed.close()
            if not any(live.label == deployed.label for live in self.routing.versions):  # a shadow load of the
                self.metrics.unloaded(registered_labels(deployed.model, self.name, deployed.label))  # version
                # that now answers goes, the version stays
            logger.info("serve: %s closed (no request uses it any more)", deployed.label)

    def health(self) -> dict[str, Any]:
        routing = self.routing
        production = routing.production
        versions = [{**deployed.describe(), "role": routing.role(deployed)} for deployed in routing.versions]
        versions += [{**deployed.describe(), "role": "retiring"} for deployed in self._retiring]
        return {"status": "ok", "model_version": production.label, "model_sha256": production.sha256,
                "registry": self.registry.where, "model": self.name, "routing": routing.describe(),
                "versions": versions, "registry_error": self.last_error, "providers": production.model.providers,
                **production.batcher.stats.as_dict()}

    def describe(self) -> dict[str, Any]:
        routing = self.routing
        return {**routing.production.model.describe(), "model_version": routing.production.label,
                "model_sha256": routing.production.sha256, "registry": self.registry.where, "model": self.name,
                "routing": routing.describe()}

    # --- internals ------------------------------------------------------------------------------------------

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.settings.registry_poll_s)
            try:
                await self.refresh()
                await self.reap()
            except Exception:  # noqa: BLE001 - a bug here must not stop the following, nor the server
                logger.exception("serve: following the registry failed; the routing in use is kept")

    def _load(self, number: int, production: OnnxModel | None, background: bool = False) -> Deployed:
        """Version ``number`` loaded (not started), checked against ``production``'s kind and columns.

        A candidate that only shadows (``shadow=true``, ``canary_share=0``) is loaded in the background: one
        onnxruntime thread (its calls run on the batcher's own thread) at the lowest priority, so its scoring uses
        only the CPU the answers leave idle. Under full load its queue fills and copies are dropped (counted in
        ``visiontrain_shadow_dropped_total``) rather than slowing production."""
        version = self.registry.version(self.name, number)
        path = self.registry.local_model(version, self.settings.registry_cache)
        model = OnnxModel(path, threads=1 if background else self.settings.threads, spin=self.settings.spin,
                          providers=self.settings.providers)
        if production is not None and (problem := incompatibility(model, production)):
            raise RegistryError(f"{version.label}: {problem}")
        return Deployed(model, version.label, self.settings, partial(self.metrics.scored, version=version.label),
                        number=number, background=background)

    @property
    def shadow_only(self) -> bool:
        """The candidate answers nothing: it scores copies of production's traffic only."""
        return self.settings.shadow and self.settings.canary_share == 0

    async def _obtain(self, number: int, production: OnnxModel, background: bool = False) -> Deployed:
        """Version ``number``: the one already loaded (served or retiring), else loaded now in a thread. A
        background (shadow) load is never reused to answer, nor an answering one to shadow."""
        for deployed in (*self.routing.versions, *self._retiring):
            if deployed.number == number and not deployed.closed and deployed.background == background:
                return deployed
        return await asyncio.to_thread(self._load, number, production, background)

    def _candidate_number(self, state: Aliases, production: Deployed) -> int | None:
        number = state.get(CANDIDATE)
        return None if number is None or number == production.number else number

    def _candidate_error(self, state: Aliases, number: int, production: Deployed, error: Exception) -> None:
        self._error("load", f"revision {state.revision}: candidate {self.name}:v{number} cannot be served "
                    f"({_reason(error)}): {production.label} answers every request; the load is tried again "
                    "when the aliases next move")

    def _routing(self, state: Aliases, production: Deployed, candidate: Deployed | None) -> Routing:
        return Routing(state.revision, production, candidate, canary_share=self.settings.canary_share,
                       shadow=self.settings.shadow, sticky=self.settings.sticky, salt=self.name,
                       aliases=dict(state.aliases))

    def _switch(self, new: Routing) -> None:
        """Start ``new``'s versions, swap it in (one assignment), retire what it no longer references."""
        old = self.routing
        for deployed in new.versions:
            if deployed in self._retiring:
                self._retiring.remove(deployed)
                deployed.retired = False
            elif deployed not in old.versions:
                self._serve(deployed)
        self.routing = new  # the switch: requests from now on take this one
        for deployed in old.versions:
            if deployed not in new.versions:
                deployed.retired = True
                self._retiring.append(deployed)
        self._published(new)
        changed = False
        for alias, before, after in ((PRODUCTION, old.production, new.production),
                                     (CANDIDATE, old.candidate, new.candidate)):
            if before is not after:
                changed = True
                logger.info("serve: %s %s -> %s (revision %d)", alias, before.label if before else "none",
                            after.label if after else "none", new.revision)
        if changed:
            self.metrics.switches.inc()

    def _serve(self, deployed: Deployed) -> None:
        deployed.start()
        self.metrics.loaded(registered_labels(deployed.model, self.name, deployed.label))

    def _published(self, routing: Routing) -> None:
        aliases = {PRODUCTION: routing.production.label}
        if routing.candidate is not None:
            aliases[CANDIDATE] = routing.candidate.label
        self.metrics.routing(routing.revision, aliases)

    def _refuse(self, state: Aliases, problem: str) -> bool:
        self._failed_revision = state.revision
        self._error("load", f"revision {state.revision}: {problem}")
        return False

    def _error(self, stage: str, message: str) -> None:
        self.last_error = message
        self.metrics.registry_error(stage)
        logger.error("serve: %s", message)

    def _read_error(self, error: Exception) -> None:
        self.metrics.registry_error("read")
        if not self._read_failing:  # once per outage, not once per poll
            logger.error("serve: the aliases of %s cannot be read from %s (%s); the routing in use is kept",
                         self.name, self.registry.where, _reason(error))
            self._read_failing = True


def open_rollout(settings: ServeOptions) -> Rollout:
    """The rollout of ``settings.model`` in ``settings.registry``, production loaded (ConfigErrors before the
    server starts)."""
    if settings.registry is None:
        raise ConfigError("registry", "is required to serve registered versions", "registry=<dir|URL>")
    try:
        registry = ModelRegistry(settings.registry)
    except RegistryError as error:
        raise ConfigError("registry", str(error), "registry=<a folder, or an fsspec URL whose package is "
                          "installed>") from None
    try:
        return Rollout(registry, settings.model, settings)
    except RegistryError as error:  # the model's name, most often
        raise ConfigError("model", str(error), "model=<a model registered in that registry>") from None


def _reason(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0] if len(text) < 400 else text[:400] + "..."
