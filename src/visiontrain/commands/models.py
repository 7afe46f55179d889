"""``visiontrain models <list|show|history|register|promote|rollback>``: the team's model registry by hand.

The registry itself is :mod:`visiontrain.model_registry`; this is the command: typed options in, one action, a
short answer out (``format=json`` for scripts). Registering opens the file with onnxruntime first, so only a
model `serve` can run gets a version. No torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from visiontrain.config.commands import ModelsOptions
from visiontrain.errors import ModelError, RegistryError
from visiontrain.model_registry.records import training_record
from visiontrain.model_registry.store import LATEST, ModelRegistry, ModelVersion


def models(options: ModelsOptions) -> Any:
    """Run the action ``options.action`` names; returns what it printed, as data."""
    registry = ModelRegistry(options.registry)
    action = {"list": _list, "show": _show, "history": _history, "register": _register, "promote": _promote,
              "rollback": _rollback}[options.action]
    return action(registry, options)


def register_model(registry: ModelRegistry, name: str, onnx: str | Path, record: dict[str, Any] | None = None,
                   note: str = "", alias: str | None = None, reason: str = "") -> ModelVersion:
    """Check that ``onnx`` is a model serve can run and that it fits the versions already under ``name`` (same
    kind, same inputs), register it, and point ``alias`` at it when given. Training's ``register=`` calls this."""
    from visiontrain.inference.onnx_model import IMAGE, OnnxModel

    model = OnnxModel(onnx, providers="cpu")  # a file onnxruntime cannot run, or not visiontrain's: ModelError
    inputs = {"image": "image files"} if model.kind == IMAGE else model.input_columns()  # each image version
    interface = {"kind": model.kind, "inputs": inputs, "classes": model.class_names}  # brings its own resizing
    existing = registry.versions(name)  # [] for a new name
    if existing:
        last = existing[-1].record.get("interface")
        if last and (last.get("kind"), last.get("inputs")) != (interface["kind"], interface["inputs"]):
            raise RegistryError(f"{onnx} does not fit {name}: it is a {interface['kind']} model with inputs "
                                f"{_short(interface['inputs'])}, but {existing[-1].label} is a {last.get('kind')} "
                                f"model with inputs {_short(last.get('inputs'))}; serve could not switch between "
                                "them. Register it under another name")
    version = registry.register(name, onnx, {**(record or {}), "interface": interface}, note=note)
    if alias:
        registry.promote(name, version.version, to=alias, reason=reason or f"registered {version.label}")
    return version


def _register(registry: ModelRegistry, options: ModelsOptions) -> dict[str, Any]:
    if options.run:
        record = training_record(options.run)
        onnx = Path(options.run) / "model.onnx"
        if not onnx.is_file():
            raise ModelError(f"{options.run} has no model.onnx: was the run exported (export.onnx=true)?")
    else:
        record, onnx = {}, Path(options.onnx)
    version = register_model(registry, options.model, onnx, record, options.note)
    print(f"visiontrain models: registered {version.label} (sha256:{version.sha256[:12]}) in {registry.where}\n"
          f"  ship it: visiontrain models promote model={version.name} version={version.version} "
          "to=candidate (or to=production)", flush=True)
    return version.as_dict()


def _promote(registry: ModelRegistry, options: ModelsOptions) -> dict[str, Any]:
    move = registry.promote(options.model, options.version, to=options.to, reason=options.reason)
    before = f"v{move.from_version}" if move.from_version is not None else "nothing"
    print(f"visiontrain models: {options.model} {move.alias}: {before} -> v{move.to_version} "
          f"(revision {move.revision}); servers following {registry.where} switch within their poll interval",
          flush=True)
    return move.as_dict()


def _rollback(registry: ModelRegistry, options: ModelsOptions) -> dict[str, Any]:
    move = registry.rollback(options.model, options.alias, reason=options.reason)
    print(f"visiontrain models: {options.model} {move.alias} rolled back: v{move.from_version} -> "
          f"v{move.to_version} (revision {move.revision})", flush=True)
    return move.as_dict()


def _list(registry: ModelRegistry, options: ModelsOptions) -> list[dict[str, Any]]:
    rows = []
    for name in registry.names():
        versions = registry.versions(name)
        rows.append({"model": name, "versions": len(versions), "latest": versions[-1].version,
                     "registered_at": versions[-1].registered_at, "aliases": registry.aliases(name).aliases})
    _print_rows(rows, options, f"{registry.where}: no models yet (visiontrain models register model=<name> "
                "run=<run dir>)", _list_line)
    return rows


def _show(registry: ModelRegistry, options: ModelsOptions) -> Any:
    registry.resolve(options.model, LATEST)  # a name the registry does not hold: say what it holds
    if options.version is not None:
        version = registry.version(options.model, options.version)
        if options.format == "json":
            print(json.dumps(version.as_dict(), indent=1, default=str))
        else:
            print(_describe(version))
        return version.as_dict()
    aliases = registry.aliases(options.model).aliases
    pointing: dict[int, list[str]] = {}
    for alias, number in aliases.items():
        pointing.setdefault(number, []).append(alias)
    rows = [{"version": v.version, "sha256": v.sha256, "registered_at": v.registered_at,
             "registered_by": v.registered_by, "metric": _headline(v), "aliases": sorted(pointing.get(v.version, [])),
             "note": v.note} for v in registry.versions(options.model)]
    _print_rows(rows, options, f"{options.model}: no versions", _version_line)
    return rows


def _history(registry: ModelRegistry, options: ModelsOptions) -> list[dict[str, Any]]:
    registry.resolve(options.model, LATEST)
    moves = [move.as_dict() for move in registry.history(options.model)]
    _print_rows(moves, options, f"{options.model}: no alias has moved yet", _move_line)
    return moves


def _print_rows(rows: list[dict[str, Any]], options: ModelsOptions, empty: str, line: Any) -> None:
    """JSON for scripts (``format=json``), else one line per row, or ``empty`` when there is none."""
    if options.format == "json":
        print(json.dumps(rows, indent=1, default=str))
    else:
        print("\n".join(line(row) for row in rows) if rows else empty, flush=True)


def _list_line(row: dict[str, Any]) -> str:
    aliases = "  ".join(f"{alias} -> v{number}" for alias, number in sorted(row["aliases"].items()))
    return (f"{row['model']:<24} {row['versions']:>3} versions (latest v{row['latest']}, "
            f"{row['registered_at'][:19]})  {aliases or '(no aliases)'}")


def _version_line(row: dict[str, Any]) -> str:
    tags = f"  [{', '.join(row['aliases'])}]" if row["aliases"] else ""
    return (f"v{row['version']:<4} {row['sha256'][:12]}  {row['registered_at'][:19]}  {row['registered_by']:<20}"
            f"  {row['metric']}{tags}{'  ' + row['note'] if row['note'] else ''}")


def _move_line(move: dict[str, Any]) -> str:
    before = f"v{move['from_version']}" if move["from_version"] is not None else "-"
    after = f"v{move['to_version']}" if move["to_version"] is not None else "-"
    return (f"#{move['revision']:<4} {move['at'][:19]}  {move['action']:<8} {move['alias']:<12} {before:>5} -> "
            f"{after:<5} by {move['by']}{'  ' + move['reason'] if move['reason'] else ''}")


def _headline(version: ModelVersion) -> str:
    """The monitored metric on the held-out split it was chosen by, e.g. ``val/roc_auc=0.8412``."""
    monitor = version.record.get("monitor") or {}
    metric, value = monitor.get("metric"), monitor.get("best")
    return f"{metric}={value:.4f}" if metric and isinstance(value, (int, float)) else "(no training record)"


def _describe(version: ModelVersion) -> str:
    record = version.record
    lines = [f"{version.label}  sha256:{version.sha256}  {version.size_bytes:,} bytes",
             f"registered {version.registered_at} by {version.registered_by}" + (f": {version.note}" if version.note
                                                                                 else ""),
             f"task {record.get('task')}  experiment {record.get('experiment')}  {_headline(version)}"]
    for split, metrics in (record.get("metrics") or {}).items():
        shown = "  ".join(f"{key.split('/')[-1]}={value:.4f}" for key, value in metrics.items()
                          if isinstance(value, (int, float)))
        lines.append(f"  {split} ({(record.get('held_out_rows') or {}).get(split)} rows): {shown}")
    lines += [f"data {record.get('data_fingerprint')}", f"code {record.get('code_version')}",
              f"from {record.get('run_dir')}", f"overrides {' '.join(record.get('overrides') or []) or '(none)'}"]
    return "\n".join(lines)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) < 120 else text[:117] + "..."
