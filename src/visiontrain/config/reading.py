"""Reading a composed config into pydantic models, and pydantic's complaints back into a :class:`ConfigError`.

The models (:mod:`visiontrain.config.image`, :mod:`visiontrain.config.tabular`) declare types, ranges, choices
and cross-field rules. This module reads only the keys a model declares, so an interpolation no check needs
(``${hydra:runtime.output_dir}`` outside a run) is never resolved, and it turns the first validation error into
the message users know: the dotted key, what was wrong, and a fix (``key=<the field's example>``).
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from visiontrain.errors import ConfigError

if TYPE_CHECKING:
    from visiontrain.core.image_decode import PixelLimit

Model = TypeVar("Model", bound=BaseModel)
_ABSENT = object()


class Section(BaseModel):
    """One config node. Strict: ``"1"`` is not a number and ``1`` is not ``true``; keys a model does not declare
    are ignored (unknown keys are refused earlier, by :mod:`visiontrain.config.overrides`)."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, populate_by_name=True)


def value(cfg: DictConfig, key: str, default: Any = None, example: Any = None) -> Any:
    """``cfg``'s value at the dotted ``key`` (``default`` if absent); unset or unresolvable values name the key
    (an unset one with ``key=<example>`` as the fix, when there is one)."""
    try:
        found = OmegaConf.select(cfg, key, default=default, throw_on_missing=True)
    except MissingMandatoryValue:
        shown = "<value>" if example is None else example
        raise ConfigError(key, "is required but not set", f"pass {key}={shown} on the command line") from None
    except InterpolationResolutionError as error:  # ${oc.env:DB_URL} with DB_URL unset, most often
        raise ConfigError(key, f"cannot be resolved ({str(error).splitlines()[0]})", "export the environment "
                          "variable it names before the run, or set the key directly") from None
    return found


def plain(cfg: DictConfig, key: str, default: Any = None) -> Any:
    """Like :func:`value`, with a list or mapping returned as plain Python values (resolved)."""
    found = value(cfg, key, default)
    if not isinstance(found, (DictConfig, ListConfig)):
        return found
    try:
        return OmegaConf.to_container(found, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as error:
        inner = getattr(error, "full_key", "") or key  # the dotted key from the root
        raise ConfigError(inner, "is required but not set", f"pass {inner}=<value> on the command line") from None
    except InterpolationResolutionError as error:
        raise ConfigError(key, f"cannot be resolved ({str(error).splitlines()[0]})", "export the environment "
                          "variable it names before the run, or set the key directly") from None


def existing_file(path: str | None, key: str, what: str, fix: str, folders: bool = False) -> str | None:
    """``path`` when it is unset or names a file (or, with ``folders``, a folder); otherwise the error naming
    ``key`` (``what``: "file", "checkpoint", ...)."""
    if path is None:
        return path
    found = Path(path).expanduser()
    if not (found.exists() if folders else found.is_file()):
        raise ConfigError(key, f"{what} {path} does not exist", fix)
    return path


def auto_or_count(setting: Any, key: str) -> Any:
    """``setting`` when it is ``auto`` or a whole number >= 0 (worker and thread counts)."""
    if setting != "auto" and (isinstance(setting, bool) or not isinstance(setting, int) or setting < 0):
        raise ConfigError(key, f"must be 'auto' or an integer >= 0, got {setting!r}", f"{key}=auto")
    return setting


def pixel_limit(pixels: Any, key: str) -> PixelLimit:
    """A ``max_image_pixels`` setting (None: the default) as core's :class:`PixelLimit`, after core's one rule (a
    whole number, under Pillow's cap); the one reader of the key for training, predict, serve, stream and drift."""
    from visiontrain.core.image_decode import DEFAULT_MAX_IMAGE_PIXELS, PixelLimit, pixel_limit_problem

    pixels = DEFAULT_MAX_IMAGE_PIXELS if pixels is None else pixels
    problem = pixel_limit_problem(pixels)
    if problem is not None:
        raise ConfigError(key, problem, f"{key}={DEFAULT_MAX_IMAGE_PIXELS} (decoded pixels per image)")
    return PixelLimit(int(pixels), key)


def below_one(value: float, key: str, why: str, fix: str) -> float:
    """``value`` when it is not 1 (a range's open end, with the reason 1 is refused in ``why``)."""
    if value == 1:
        raise ConfigError(key, f"must be < 1: {why}", fix)
    return value


def parse(model: type[Model], cfg: DictConfig, prefix: str = "") -> Model:
    """The node at ``prefix`` (the whole config if empty) checked against ``model``; the first mistake raises."""
    return validate(model, read(model, cfg, prefix), prefix)


def validate(model: type[Model], data: dict[str, Any], prefix: str = "") -> Model:
    """``model`` built from plain ``data`` read at ``prefix``; the first validation error as a ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise config_error(error, model, prefix) from None


def read(model: type[BaseModel], cfg: DictConfig, prefix: str = "") -> dict[str, Any]:
    """The keys ``model`` declares, read from ``cfg`` at ``prefix``: sections recursively, absent keys left out."""
    data: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key_name = field.alias or name
        key = f"{prefix}.{key_name}" if prefix else key_name
        found = value(cfg, key, _ABSENT, field.examples[0] if field.examples else None)
        if found is _ABSENT:
            continue
        section = _section_model(field.annotation)
        if section is not None and isinstance(found, DictConfig):
            data[key_name] = read(section, cfg, key)
        else:
            data[key_name] = plain(cfg, key)
    return data


def config_error(error: ValidationError, model: type[BaseModel], prefix: str = "") -> ConfigError:
    """The first of pydantic's errors in today's words; a ConfigError raised by a validator passes as it is."""
    first = error.errors()[0]
    context = first.get("ctx") or {}
    if isinstance(context.get("error"), ConfigError):
        return context["error"]
    loc = first["loc"]
    key = _dotted(prefix, loc)
    field = _field_at(model, loc)
    found = first["input"]
    example = field.examples[0] if field is not None and field.examples else None
    described = field.description if field is not None else None
    fix = f"{key}={example}" if example is not None else f"{key}=<value>"
    kind = first["type"]
    if kind == "missing":
        return ConfigError(key, "is required but not set", f"pass {key}=<value> on the command line")
    if kind == "string_too_short":
        return ConfigError(key, "must not be empty", fix)
    if kind.startswith(("int_", "float_", "string_", "list_", "dict_", "model_")):
        wanted = described or _TYPE_WORDS.get(kind.split("_")[0], "a valid value")
        return ConfigError(key, f"must be {wanted}, got {found!r} ({type(found).__name__})", fix)
    if kind.startswith("bool_"):
        return ConfigError(key, f"must be true or false, got {found!r}", f"{key}={example or 'true'}")
    if kind in _BOUNDS:
        symbol, name = _BOUNDS[kind]
        return ConfigError(key, f"must be {symbol} {context[name]:g}, got {found}", fix)
    if kind == "literal_error":
        choices = literal_choices(field.annotation) if field is not None else ()
        return ConfigError(key, f"must be one of {', '.join(map(str, choices))}; got {found!r}",
                           f"{key}={example if example is not None else choices[0]}")
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        options = ", ".join(f.alias or n for n, f in parent.model_fields.items()) if parent else ""
        return ConfigError(key, f"is not an option of {_dotted(prefix, loc[:-1])}; the options are {options}",
                           f"remove {key} or fix its spelling")
    return ConfigError(key, f"is not valid ({first['msg']}), got {found!r}", fix)


_TYPE_WORDS = {"int": "an integer", "float": "a number", "string": "text", "list": "a list", "dict": "a mapping",
               "model": "a mapping of options"}
_BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
           "less_than": ("<", "lt")}


def literal_choices(annotation: Any) -> tuple[Any, ...]:
    """The values of the ``Literal[...]`` in ``annotation`` (``Literal[...] | None`` included)."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    for argument in typing.get_args(annotation):
        choices = literal_choices(argument)
        if choices:
            return choices
    return ()


def _dotted(prefix: str, loc: tuple[Any, ...]) -> str:
    key = prefix
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        else:
            key = f"{key}.{part}" if key else str(part)
    return key


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The model class of a field typed ``SomeSection`` or ``SomeSection | None``; None for other fields."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next((found for arg in typing.get_args(annotation) if (found := _section_model(arg))), None)
    return None


def _field_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> FieldInfo | None:
    names = [part for part in loc if isinstance(part, str)]
    parent = _model_at(model, tuple(names[:-1])) if names else None
    return _field(parent, names[-1]) if parent is not None else None


def _model_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    for part in loc:
        if model is None or not isinstance(part, str):
            continue
        field = _field(model, part)
        model = _section_model(field.annotation) if field is not None else None
    return model


def _field(model: type[BaseModel], name: str) -> FieldInfo | None:
    return next((f for n, f in model.model_fields.items() if name in (n, f.alias)), None)
