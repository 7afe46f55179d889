"""Check command-line override keys before Hydra runs, so a typo gets a suggestion instead of a stack of text.

Hydra rejects ``optimizer.lrr=0.1`` too, but its advice ("use +optimizer.lrr to append") points the wrong
way for a typo. Here the config is composed with the chosen groups and every plain ``key=value`` override is
looked up; an unknown key fails as a :class:`ConfigError` naming the nearest real keys.
"""

from __future__ import annotations

import difflib
import json
import shlex
from pathlib import Path
from typing import Any, Iterator

from omegaconf import DictConfig

from visiontrain.core.redaction import URL_PATTERN, has_secret
from visiontrain.errors import ConfigError

# keys that lived elsewhere in earlier versions: the error names the new place
MOVED = {f"augment.{name}": f"model.input.{name}" for name in ("image_size", "mean", "std", "crop_pct", "interpolation")}


def _leaf_keys(node: DictConfig, prefix: str = "") -> Iterator[str]:
    for key in node.keys():
        path = f"{prefix}{key}"
        child = node._get_node(key)  # noqa: SLF001 - reading without resolving interpolations
        if isinstance(child, DictConfig):
            yield from _leaf_keys(child, path + ".")
        elif not str(key).startswith("_"):  # _target_ and friends are not settings a user means
            yield path


def _exists(cfg: DictConfig, key: str) -> bool:
    """True for any key in the config: mandatory ones still ``???`` and interpolations (``paths.run_dir`` is
    Hydra's run dir, which does not resolve outside a run) included. Walks nodes without resolving them."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node.keys():  # keys() resolves nothing
            return False
        node = node._get_node(part)  # noqa: SLF001 - the node itself, unresolved
    return True


def _value_above(cfg: DictConfig, key: str) -> str | None:
    """The dotted prefix of ``key`` that holds a plain value (not a section), if any: ``data`` of ``data.source``
    when ``data`` is a path."""
    node: Any = cfg
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1], start=1):
        if not isinstance(node, DictConfig) or part not in node.keys():
            return None
        node = node._get_node(part)  # noqa: SLF001 - the node itself, unresolved
        if not isinstance(node, DictConfig):
            return ".".join(parts[:depth])
    return None


def _is_group(key: str, conf: Path) -> bool:
    return (conf / key.lstrip("/")).is_dir()


def compose_for_sweep(config_name: str, overrides: list[str], conf: Path) -> DictConfig:
    """The config of a multirun's first trial, with its ``hydra`` node (sweeper settings included)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    first = []
    for text, override in zip(overrides, OverridesParser.create().parse_overrides(overrides)):
        if override.is_sweep_override():
            text = f"{override.get_key_element()}={_first_value(override)}"
        first.append(text)
    with initialize_config_dir(version_base="1.3", config_dir=str(conf), job_name="visiontrain"):
        return compose(config_name, overrides=first, return_hydra_config=True)


def _first_value(override: Any) -> str:
    """A sweep's first value as override text: a choice's or range's first, an interval's start."""
    from hydra.core.override_parser.types import IntervalSweep

    sweep = override.value()
    if isinstance(sweep, IntervalSweep):
        return repr(sweep.start)
    return next(iter(override.sweep_string_iterator()))


def check_override_keys(config_name: str, overrides: list[str], conf: Path) -> None:
    """Raise ConfigError for the first ``key=value`` override whose key is not in the composed config.

    Group choices (``trainer=gpu``, sweeps included: the first choice is composed) and ``+``/``++``/``~``
    overrides are left to Hydra, which explains those well.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    group_choices, plain_keys = [], []
    for override in parsed:
        key = override.key_or_group
        if override.package or key.startswith("hydra") or override.is_add() or override.is_force_add() \
                or override.is_delete():
            continue
        if _is_group(key, conf):
            value = next(iter(override.sweep_string_iterator())) if override.is_sweep_override() \
                else override.get_value_element_as_str()
            group_choices.append(f"{key}={value}")
        else:
            plain_keys.append(key)
    if not plain_keys:
        return
    with initialize_config_dir(version_base="1.3", config_dir=str(conf), job_name="visiontrain"):
        cfg = compose(config_name, overrides=group_choices)
    for key in plain_keys:
        if key == "paths.run_dir":  # an interpolation of Hydra's run dir: setting it would split the run's files
            raise ConfigError(key, "follows Hydra's run dir and is not set directly",
                              "hydra.run.dir=/path/to/run (or paths.output_dir=/path for the parent of all runs)")
        if key in MOVED and not _exists(cfg, key):
            raise ConfigError(key, f"has moved to {MOVED[key]}: the input spec describes the model and its weights, "
                              "not the augmentation", f"{MOVED[key]}=<value>")
        value_above = _value_above(cfg, key)
        if value_above is not None:  # `data.source=x` where `data` is one value (retrain's fresh data)
            raise ConfigError(key, f"{value_above} is a single value in this config, not a section with keys",
                              f"{value_above}=<value>")
        if not _exists(cfg, key):
            raise ConfigError(key, "is not a key of this config", _suggestion(key, sorted(_leaf_keys(cfg))))


def _suggestion(key: str, known: list[str]) -> str:
    """Nearest keys by name within the same section (``trainer.max_epoch``), else anywhere; else the section."""
    parent, _, name = key.rpartition(".")
    siblings = [k for k in known if k.rpartition(".")[0] == parent]
    by_name = {k.rpartition(".")[2]: k for k in siblings}
    nearest = [by_name[n] for n in difflib.get_close_matches(name, list(by_name), n=3, cutoff=0.6)]
    nearest = nearest or difflib.get_close_matches(key, known, n=3, cutoff=0.85)
    if nearest:
        hint = f"did you mean {' or '.join(nearest)}? "
    elif siblings:
        hint = f"keys here: {', '.join(siblings)}; "
    else:
        hint = ""
    return f"{hint}to add a new key on purpose write +{key}=..."


# characters Hydra's override grammar reads as syntax when a value is not quoted (``?page=1``'s ``=`` most often)
GRAMMAR_CHARACTERS = "=&#;!^<>`'\"~"


def check_override_syntax(overrides: list[str]) -> None:
    """Every override as Hydra's grammar reads it; the first it cannot read fails naming it and the quoting fix.

    Hydra's own message (``mismatched input '=' expecting <EOF>``) names neither the key nor the fix. A URL with a
    query (``data.source=https://host/api?page=1``) is the usual cause: its value needs quotes inside the override,
    and the whole override quotes for the shell, ``'data.source="https://host/api?page=1"'``.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_overrides([override])
        except OverrideParseException as error:
            raise _unreadable(override, str(error).strip().splitlines()[0], parser) from None


def _unreadable(override: str, reason: str, parser: Any) -> ConfigError:
    """The error for an override Hydra cannot read: ``key=value`` missing, or a value to quote (and how)."""
    key, equals, value = override.partition("=")
    name = key.lstrip("+~") or override
    if not equals:
        return ConfigError(name, f"`{override}` is not an override: each is key=value", f"{name}=<value>")
    quoted = quoted_list(key, value, parser) or quoted_override(key, value, parser)
    special = sorted({c for c in value if c in GRAMMAR_CHARACTERS or not c.isascii()})
    if quoted is None or not special:
        example = shlex.quote(quoted or f'{key}="<text>"')
        return ConfigError(name, f"`{override}` cannot be read as an override (Hydra: {reason})",
                           f"check its brackets and quotes; a value meant as text can be quoted: {example}")
    shown = " ".join(f"`{c}`" for c in special)
    return ConfigError(name, f"`{override}` cannot be read as an override: a value holding {shown} must be quoted "
                       "inside the override, and the override quoted for the shell", shlex.quote(quoted))


def quoted_list(key: str, value: str, parser: Any = None) -> str | None:
    """``key=["a=1","b"]`` for ``key=[a=1,b]``: each item of a list quoted (not the list, which would become one
    string), when Hydra reads that back as exactly those items; None for a value that is no list."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    if not (value.startswith("[") and value.endswith("]")) or not value[1:-1].strip():
        return None
    items = [item.strip() for item in value[1:-1].split(",")]
    candidate = f"{key}=[{','.join(json.dumps(item) for item in items)}]"
    try:
        parsed = (parser or OverridesParser.create()).parse_overrides([candidate])[0]
    except OverrideParseException:
        return None
    return candidate if parsed.value() == items else None


def quoted_override(key: str, value: str, parser: Any = None) -> str | None:
    """``key="value"`` (or ``key='value'``, or escaped) that Hydra reads back as exactly ``value``; None if none."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = parser or OverridesParser.create()
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    for candidate in (f'{key}="{value}"', f"{key}='{value}'", f'{key}="{escaped}"'):
        try:
            parsed = parser.parse_overrides([candidate])[0]
        except OverrideParseException:
            continue
        if parsed.value() == value:
            return candidate
    return None


def check_no_secrets(overrides: list[str]) -> None:
    """Refuse an override whose value is a URL with a password or token in it, before Hydra sees it.

    Refused rather than moved into the environment behind the user's back: the command line has already
    reached the shell history and ``ps``, Hydra would write it to ``.hydra/overrides.yaml`` and ``hydra.yaml``
    and echo it in "Error executing job with overrides", and a secret moved into this process's environment
    would be gone when ``resume=latest`` or a sweep trial re-reads the stored overrides. An environment
    variable named in the config works the same way in every one of those places.
    """
    for override in overrides:
        key, _, value = override.partition("=")
        _refuse_client_secret(key.lstrip("+~"))
        if any(has_secret(url) for url in URL_PATTERN.findall(value)):
            key = key.lstrip("+~")
            fix = (f"put the URL in an environment variable (export DB_URL='...') and pass {key}_env=DB_URL, or "
                   f"{key}='${{oc.env:DB_URL}}'") if key == "data.source" else \
                f"put the value in an environment variable (export SECRET_URL='...') and pass " \
                f"{key}='${{oc.env:SECRET_URL}}'"
            raise ConfigError(key, "holds a URL with a password or token; on the command line it would be stored "
                              "in the run's .hydra files and logs", fix)


def _refuse_client_secret(key: str) -> None:
    """A Kafka client password given as a setting (``kafka.sasl.password=...``): refused, naming the variable."""
    from visiontrain.core.kafka import SECRET_SETTINGS

    for name, variable in SECRET_SETTINGS.items():
        if key == name or key.endswith(f".{name}"):
            raise ConfigError(key, "is a secret: on the command line it would be stored in the run's .hydra files "
                              "and logs", f"export {variable}=<the value> instead; the Kafka clients read it there")


# librdkafka settings are dotted names of their own (fetch.wait.max.ms): every key under these sections is passed
# through to the client, so ``kafka.security.protocol=SASL_SSL`` works without Hydra's ``+``
PASS_THROUGH = {"stream": ("kafka.", "consumer.", "producer."), "train": ("data.kafka.",),
                "evaluate": ("data.kafka.",)}


def pass_through_overrides(command: str, overrides: list[str]) -> list[str]:
    """``section.some.setting=value`` as ``++section.some.setting=value`` (add or replace) for pass-through sections."""
    prefixes = PASS_THROUGH.get(command, ())
    return [f"++{item}" if prefixes and item.startswith(prefixes) and "=" in item else item for item in overrides]

