"""Write docs/reference/config.md: every config key of every command, from the typed config and conf/.

    python scripts/gen_config_reference.py                 # rewrite docs/reference/config.md
    python scripts/gen_config_reference.py --output x.md   # write elsewhere (tests/test_docs.py compares)

Where each column comes from:

- key, default: the config Hydra composes for the command (``conf/<command>.yaml`` and its groups), in the
  order ``visiontrain <command> --cfg job`` prints it; a field of a typed section that the YAML leaves out is
  listed after, with the model's default.
- type, allowed: the pydantic sections of :mod:`visiontrain.config` (``Literal`` choices, the bounds
  ``ge``/``gt``/``le``/``lt``/``min_length``, the field's example); a key no section types gets the type of
  its YAML value.
- help: the comment beside the key in conf/ (group files first), else the field's ``description``, else the
  comment beside the field in Python; a section's heading carries its model's docstring.

The models are discovered by walking the modules of the ``visiontrain.config`` package; ``COMMANDS`` below is
the one place that says which sections each command reads (as :mod:`visiontrain.config.checks` parses them).
Sections no command reaches are listed at the end, so a new one never goes missing silently.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "docs" / "reference" / "config.md"


@dataclass(frozen=True)
class Command:
    """One table family: a command (and a task), how its config is composed, and its typed sections."""

    title: str
    config: str  # conf/<config>.yaml
    overrides: tuple[str, ...]
    sections: tuple[tuple[str, str], ...]  # (dotted prefix, model class name); "" is the config's root
    only: tuple[str, ...] = ()  # show only these top-level keys (the rest is documented elsewhere)
    hide: tuple[str, ...] = ()  # leave out these top-level keys (documented under another command)
    note: str = ""


PATHS_NOTE = "`paths.*` (where run dirs and the cache go) as for `train`."

# The roots, per command: what visiontrain.config.checks parses for it. Models are named, not imported, so a
# class moving between modules of visiontrain.config changes nothing here.
COMMANDS: tuple[Command, ...] = (
    Command("visiontrain train (images)", "train", ("data=image_folder", "logger=wandb"),
            (("", "TaskChoice"), ("", "ImageTrainConfig")),
            note="Defaults as composed for `visiontrain train data=image_folder data.root=... logger=wandb` "
                 "(your own images; `logger=wandb` shows both loggers, the default `logger=csv` only the CSV "
                 "one). The quickstart's `data=digits` changes a few (64 px, `schedule=domain_shift`, "
                 "8 epochs); `experiment=hymenoptera` others (`augment=strong`, batch 16, 10 epochs)."),
    Command("visiontrain train (tables)", "train", ("experiment=churn", "logger=wandb"),
            (("", "TaskChoice"), ("model", "TabularModelKind"), ("", "TabularTrainConfig"),
             ("model", "MlpModel"), ("model", "EstimatorModel"), ("optimizer", "Optimizer"),
             ("trainer", "Trainer")),
            hide=("paths",),
            note="Defaults as composed for `visiontrain train experiment=churn logger=wandb` (the MLP on the "
                 "built-in churn table). `model.scale_features` belongs to the scikit-learn models "
                 "(`model=logistic_regression`, `gradient_boosting`, `hist_gradient_boosting`), whose "
                 "`model.estimator` holds the scikit-learn class and its arguments. `paths.*` as for "
                 "images."),
    Command("visiontrain lr_find", "lr_find", ("data=image_folder",), (("lr_find", "LrFind"),),
            only=("lr_find",),
            note="`lr_find` takes every key of `visiontrain train (images)` above, plus these."),
    *(Command(f"visiontrain {name}", name, (), sections, hide=("paths",), note=PATHS_NOTE)
      for name, sections in (
        ("evaluate", (("", "EvaluateOptions"), ("trainer", "Trainer"))),
        ("export", (("", "ExportOptions"),)),
        ("predict", (("", "PredictOptions"),)),
        ("serve", (("", "ServeOptions"),)),
        ("stream", (("", "StreamOptions"),)),
        ("drift", (("", "DriftOptions"),)),
        ("models", (("", "ModelsOptions"),)),
        ("retrain", (("", "RetrainOptions"),)))),
    Command("sweeps (hydra.sweeper)", "train", ("experiment=churn", "hparams_search=churn_optuna"),
            (("hydra.sweeper", "Sweeper"),), only=("hydra",),
            note="Checked once before a multirun's first trial; defaults as composed for "
                 "`visiontrain train experiment=churn hparams_search=churn_optuna`."),
)

SKIP_MODULES = ("validation",)  # imports torch, Lightning and timm, and declares no sections of its own
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NO_VALUE = object()


# ---------------------------------------------------------------------------------------------- the models


PACKAGE = "visiontrain.config"
IMPORT_ERRORS: dict[str, str] = {}  # module -> why it could not be imported (reported if a root is missing)


def discover_models() -> dict[str, type[BaseModel]]:
    """Every pydantic model in the namespace of a module of the visiontrain.config package, by class name: the
    ones defined there first, then any a module imports (a section that moved out and is used from here)."""
    package = importlib.import_module(PACKAGE)
    defined: dict[str, type[BaseModel]] = {}
    imported: dict[str, type[BaseModel]] = {}
    for module_info in pkgutil.iter_modules(package.__path__):
        if module_info.name in SKIP_MODULES:
            continue
        name = f"{PACKAGE}.{module_info.name}"
        try:
            module = importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - one broken module must not hide the others' sections
            IMPORT_ERRORS[name] = f"{type(error).__name__}: {error}"
            continue
        for attribute, member in vars(module).items():
            if inspect.isclass(member) and issubclass(member, BaseModel) and member is not BaseModel:
                own = member.__module__.startswith(PACKAGE)
                (defined if own else imported).setdefault(attribute, member)
    return {**imported, **defined}


def root_models(command: Command, models: dict[str, type[BaseModel]]
                ) -> tuple[tuple[str, type[BaseModel]], ...]:
    """The (prefix, model) sections of ``command``; a model no longer found fails naming what to fix."""
    missing = [name for _, name in command.sections if name not in models]
    if missing:
        errors = "".join(f"\n  {module}: {error}" for module, error in IMPORT_ERRORS.items())
        raise SystemExit(f"gen_config_reference: {command.title} reads {', '.join(missing)}, which no module "
                         f"of {PACKAGE} holds any more; update COMMANDS at the top of {Path(__file__).name}"
                         + (f"\nmodules that failed to import:{errors}" if errors else ""))
    return tuple((prefix, models[name]) for prefix, name in command.sections)


def section_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a field typed ``Section`` or ``Section | None``."""
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next((m for arg in typing.get_args(annotation) if (m := section_model(arg))), None)
    return None


def literal_choices(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    for argument in typing.get_args(annotation):
        if choices := literal_choices(argument):
            return choices
    return ()


def type_name(annotation: Any) -> str:
    """``int``, ``float | null``, ``choice``, ``list of str``, ``mapping``, ``any``."""
    if annotation is Any or annotation is None:
        return "any"
    if annotation is type(None):
        return "null"
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "choice"
    if origin in (typing.Union, types.UnionType):
        names: list[str] = []
        for argument in typing.get_args(annotation):
            name = type_name(argument)
            if name not in names:
                names.append(name)
        return " | ".join(sorted(names, key=lambda n: n == "null"))
    if origin in (list, tuple, set):
        inner = typing.get_args(annotation)
        return f"list of {type_name(inner[0])}" if inner else "list"
    if origin is dict or annotation is dict:
        return "mapping"
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def bounds(info: FieldInfo) -> list[str]:
    words = []
    for item in info.metadata:
        for attribute, symbol in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            limit = getattr(item, attribute, None)
            if limit is not None:
                shown = f"{limit:g}" if isinstance(limit, (int, float)) else str(limit)
                words.append(f"{symbol} {shown}")
        if getattr(item, "min_length", None):
            words.append("not empty" if item.min_length == 1 else f"at least {item.min_length} long")
    return words


def python_comments(model: type[BaseModel]) -> dict[str, str]:
    """The comment beside each field's line in the source of the model and its bases (``type: ignore``
    removed)."""
    comments: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (inspect.isclass(cls) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            lines = inspect.getsource(cls).splitlines()
        except (OSError, TypeError):
            continue
        for line in lines:
            match = re.match(r"\s+(\w+)\s*:[^#]*#(.*)$", line)
            if not match or match.group(1) not in cls.model_fields:
                continue
            text = re.sub(r"type:\s*ignore(\[[^\]]*\])?", "", match.group(2)).strip(" #")
            if text:
                comments[match.group(1)] = text
    return comments


def first_paragraph(doc: str | None) -> str:
    if not doc:
        return ""
    paragraph = inspect.cleandoc(doc).split("\n\n")[0]
    return rst_to_markdown(" ".join(paragraph.split()))


def rst_to_markdown(text: str) -> str:
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)  # :class:`X` -> `X`
    return text.replace("``", "`")


@dataclass
class TypedKey:
    model: type[BaseModel]
    name: str
    info: FieldInfo


def typed_keys(sections: tuple[tuple[str, type[BaseModel]], ...]) -> tuple[dict[str, TypedKey],
                                                                           dict[str, type[BaseModel]]]:
    """Every dotted key the sections declare (recursively), and the model of each section key."""
    keys: dict[str, TypedKey] = {}
    section_of: dict[str, type[BaseModel]] = {}

    def walk(prefix: str, model: type[BaseModel]) -> None:
        if prefix:
            section_of.setdefault(prefix, model)
        for name, info in model.model_fields.items():
            key = f"{prefix}.{info.alias or name}" if prefix else (info.alias or name)
            keys.setdefault(key, TypedKey(model, name, info))
            inner = section_model(info.annotation)
            if inner is not None:
                walk(key, inner)

    for prefix, model in sections:
        walk(prefix, model)
    return keys, section_of


def reached(models: dict[str, type[BaseModel]], roots: set[type[BaseModel]]) -> set[type[BaseModel]]:
    """The roots, the sections their fields hold, and every base class of those."""
    seen: set[type[BaseModel]] = set()
    todo = list(roots)
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        todo.extend(c for c in model.__mro__ if inspect.isclass(c) and issubclass(c, BaseModel))
        todo.extend(m for info in model.model_fields.values() if (m := section_model(info.annotation)))
    return seen


# ------------------------------------------------------------------------------------------ the YAML side


def compose(command: Command) -> tuple[dict[str, Any], dict[str, str | None]]:
    """The composed config (interpolations kept as written) and the group choices Hydra made."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from visiontrain.config import config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        cfg = hydra_compose(command.config, overrides=list(command.overrides), return_hydra_config=True)
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    tree = OmegaConf.to_container(cfg, resolve=False)
    hydra_node = tree.pop("hydra")
    tree["hydra"] = {"sweeper": hydra_node.get("sweeper", {})}  # the only hydra node a command documents
    return tree, choices


def yaml_files(command: Command, choices: dict[str, str | None]) -> list[tuple[Path, str]]:
    """(file, package) of the YAML files composed: group files in their own package first, then the files
    written for the global package (experiments, data that brings settings along), then the primary config."""
    from visiontrain.config import config_dir

    conf = config_dir()
    own, global_ = [], []
    for group, option in choices.items():
        if option is None or group == "hydra" or group.startswith("hydra/"):
            continue
        for path in with_plain_defaults(conf / group / f"{option}.yaml"):
            declared = re.search(r"^#\s*@package\s+(\S+)", path.read_text(), re.MULTILINE)
            package = group.replace("/", ".") if declared is None else declared.group(1)
            if package == "_global_":
                global_.append((path, ""))
            else:
                own.append((path, package))
    primaries = with_plain_defaults(conf / f"{command.config}.yaml")
    return own + global_ + [(path, "") for path in primaries]


def with_plain_defaults(path: Path) -> list[Path]:
    """``path`` and the files its defaults list names plainly (``- default`` in conf/trainer/cpu.yaml,
    ``- train`` in conf/lr_find.yaml): files of its own folder, composed under it."""
    if not path.is_file():
        return []
    names = re.findall(r"^\s*-\s*(\w+)\s*$", path.read_text(), re.MULTILINE)
    return [path] + [path.parent / f"{name}.yaml" for name in names
                     if name != "_self_" and (path.parent / f"{name}.yaml").is_file()]


def yaml_comments(path: Path, package: str) -> dict[str, str]:
    """The comment beside each key of a YAML file (with its continuation lines), by dotted key."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the open mappings
    last_key, last_column = None, -1
    depth = 0  # open flow brackets ({...} and [...] over several lines)
    list_indent: int | None = None
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        if depth > 0:
            depth += _brackets(raw)
            continue
        if stripped.startswith("#"):
            if last_key is not None and indent >= last_column > 0:  # continues the comment above
                comments[last_key] += " " + stripped.lstrip("#").strip()
            else:
                last_key = None
            continue
        if not stripped:
            last_key = None
            continue
        if list_indent is not None and (indent > list_indent or (indent == list_indent
                                                                 and stripped.startswith("-"))):
            continue
        list_indent = None
        if stripped.startswith("-"):
            list_indent, last_key = indent, None
            continue
        match = re.match(r"(\s*)([\w.$@-]+|\"[^\"]*\"|'[^']*')\s*:(\s|$)", raw)
        if not match:
            last_key = None
            continue
        name = match.group(2).strip("\"'")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = ".".join([p for p in (package,) if p] + [k for _, k in stack] + [name])
        stack.append((indent, name))
        rest = raw[match.end():]
        value, comment = _split_comment(rest)
        depth = _brackets(value)
        if comment is not None:
            comments[key] = comment.strip()
            last_key, last_column = key, len(raw) - len(comment) - 1  # the column of its #
        else:
            last_key = None
    return comments


def _split_comment(text: str) -> tuple[str, str | None]:
    """``value  # comment`` -> (value, comment); a # inside quotes is part of the value."""
    quote = None
    for index, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "#" and (index == 0 or text[index - 1] in " \t"):
            return text[:index], text[index + 1:]
    return text, None


def _brackets(text: str) -> int:
    value, _ = _split_comment(text)
    value = re.sub(r"\"[^\"]*\"|'[^']*'", "", value)
    return value.count("{") + value.count("[") - value.count("}") - value.count("]")


def file_header(path: Path) -> list[str]:
    """The comment block a YAML file opens with (``@package`` lines left out), as paragraphs: its text, then
    its ``- item`` lines as one markdown list."""
    text, items = [], []
    for raw in path.read_text().splitlines():
        if not raw.startswith("#"):
            break
        line = raw.lstrip("#").strip()
        if line.startswith("@package"):
            continue
        if line.startswith("- "):
            items.append(line[2:])
        elif items and line:
            items[-1] += " " + line
        elif line:
            text.append(line)
    out = [escape(" ".join(" ".join(text).split()))] if text else []
    if items:
        out.append("\n".join(f"- {escape(' '.join(item.split()))}" for item in items))
    return out


# ----------------------------------------------------------------------------------------------- the rows


@dataclass
class Row:
    key: str
    type: str
    default: str
    allowed: str
    help: str


@dataclass
class Section:
    key: str  # top-level key; "" for the top-level scalars
    intro: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)


def is_section_like(node: Any) -> bool:
    """A YAML mapping no model types is shown key by key when its keys are names and not all its values are
    mappings (``paths``, ``logger.csv``); a mapping of mappings (``data.columns``) or of dotted keys
    (``hydra.sweeper.params``) is one value."""
    return (isinstance(node, dict) and bool(node) and all(isinstance(k, str) and IDENTIFIER.fullmatch(k)
                                                          for k in node)
            and not all(isinstance(v, dict) for v in node.values()))


def show(value: Any, limit: int = 60) -> str:
    if value is NO_VALUE:
        return "—"
    if value == "???":
        return "required"
    text = _yaml_inline(value)
    if text == "":
        return '`""`'
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return f"`{text}`"


def _yaml_inline(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_inline(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def yaml_type(value: Any) -> str:
    if value is None or value == "???" or value is NO_VALUE:
        return "any"
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        return "any"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def typed_row(key: str, typed: TypedKey, value: Any, yaml_help: str | None, py_help: dict[str, str]) -> Row:
    info = typed.info
    choices = literal_choices(info.annotation)
    allowed = [", ".join(f"`{_yaml_inline(c)}`" for c in choices)] if choices else []
    allowed += bounds(info)
    if info.examples and not choices:
        allowed.append(f"e.g. `{info.examples[0]}`")
    if value is NO_VALUE and not info.is_required():  # the YAML leaves it out: the model's default, if any
        default = info.get_default(call_default_factory=True)
        value = NO_VALUE if default is None else default
    inner = section_model(info.annotation)
    help_text = yaml_help or info.description or py_help.get(typed.name) or (
        first_paragraph(inner.__doc__) if inner is not None else "")
    shown_default = "" if inner is not None and isinstance(value, dict) else show(value)
    return Row(key, type_name(info.annotation), shown_default, "; ".join(allowed), help_text)


def rows_for(command: Command, models: dict[str, type[BaseModel]]
             ) -> tuple[list[Section], set[type[BaseModel]]]:
    """The sections of one command's reference, and the models it used."""
    sections = root_models(command, models)
    keys, section_of = typed_keys(sections)
    tree, choices = compose(command)
    comments: dict[str, str] = {}
    for path, package in yaml_files(command, choices):
        for key, text in yaml_comments(path, package).items():
            comments.setdefault(key, text)
    py_help = {model: python_comments(model) for model in {k.model for k in keys.values()}}

    out: list[Section] = []
    top = Section("")
    shown: set[str] = set()

    def add(section: Section, key: str, value: Any) -> None:
        typed = keys.get(key)
        shown.add(key)
        if typed is not None:
            section.rows.append(typed_row(key, typed, value, comments.get(key), py_help[typed.model]))
            if section_model(typed.info.annotation) is not None and isinstance(value, dict):
                for child, child_value in value.items():
                    add(section, f"{key}.{child}", child_value)
            return
        under_typed = key.rpartition(".")[0] in section_of or "." not in key
        if under_typed and is_section_like(value):
            section.rows.append(Row(key, "section", "", "", comments.get(key, "")))
            for child, child_value in value.items():
                add(section, f"{key}.{child}", child_value)
            return
        section.rows.append(Row(key, yaml_type(value), show(value), "", comments.get(key, "")))

    def add_missing(section: Section, prefix: str) -> None:
        """Typed keys under ``prefix`` that the composed YAML leaves out, with the model's default."""
        for key in keys:
            if key.startswith(prefix) and key not in shown and key.rpartition(".")[0] in shown | {""}:
                add(section, key, NO_VALUE)

    for name, value in tree.items():
        if (command.only and name not in command.only) or name in command.hide:
            continue
        if name == "hydra":  # only its sweeper, and only where a command asks for it
            if "hydra" not in command.only:
                continue
            name, value = "hydra.sweeper", value.get("sweeper", {})
        if is_section_like(value) or name in section_of:
            section = Section(name)
            model = section_of.get(name)
            group = choices.get(name)
            if group:
                options = sorted(p.stem for p in (_conf() / name).glob("*.yaml"))
                section.intro.append(f"Config group `{name}`: `{name}={group}` here; options: "
                                     + ", ".join(f"`{o}`" for o in options) + ".")
                files = with_plain_defaults(_conf() / name / f"{group}.yaml")
                section.intro += next((header for path in files if (header := file_header(path))), [])
            if model is not None and first_paragraph(model.__doc__):
                section.intro.append(first_paragraph(model.__doc__))
            shown.add(name)
            for child, child_value in (value or {}).items():
                add(section, f"{name}.{child}", child_value)
            add_missing(section, f"{name}.")
            out.append(section)
        else:
            add(top, name, value)
    if not command.only:
        for key in keys:  # top-level typed keys the YAML does not set
            if "." not in key and key not in shown:
                add(top, key, NO_VALUE)
    if top.rows:
        out.insert(0, top)
    return out, {model for _, model in sections}


def _conf() -> Path:
    from visiontrain.config import config_dir

    return config_dir()


# ----------------------------------------------------------------------------------------------- markdown


def escape(text: str) -> str:
    """Markdown-safe prose outside code spans: ``<x>`` shown, not taken for HTML; ``*`` not emphasis."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(part if part.startswith("`") else part.replace("<", "&lt;").replace("*", "\\*")
                   for part in parts)


def cell(text: str) -> str:
    return escape(" ".join(str(text).split())).replace("|", "\\|")


def render(models: dict[str, type[BaseModel]]) -> str:
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by scripts/gen_config_reference.py from src/visiontrain/config/ and conf/: do not "
        "edit by hand. After changing either, run `python scripts/gen_config_reference.py` "
        "(tests/test_docs.py checks this file is current). -->",
        "",
        "Every key each command reads, in the order `visiontrain <command> --cfg job` prints them. "
        "**type** and **allowed** come from the typed config sections in `src/visiontrain/config/` (checked "
        "before any work starts; a key no section types shows the type of its YAML value and is checked by "
        "the code that reads it), **default** from the YAML in `conf/`, **help** from the comment beside the "
        "key in `conf/` or the field in Python. Checks that need a library (Lightning's precisions, the "
        "opsets torch exports, timm's backbone names, packaged weights, albumentations transforms, optimizer "
        "and estimator classes) run next; see [Configuration](../configuration.md) for how groups and "
        "experiments compose.",
        "",
    ]
    used: set[type[BaseModel]] = set()
    for command in COMMANDS:
        sections, roots = rows_for(command, models)
        used |= roots
        lines += [f"## {command.title}", ""]
        if command.note:
            lines += [command.note, ""]
        for section in sections:
            title = f"`{section.key}`" if section.key else "Top-level keys"
            lines += [f"### {title}", ""]
            for paragraph in section.intro:
                lines += [paragraph, ""]
            lines += ["| key | type | default | allowed | help |", "| --- | --- | --- | --- | --- |"]
            for row in section.rows:
                cells = (f"`{row.key}`", cell(row.type), cell(row.default), cell(row.allowed), cell(row.help))
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    unreached = [m for name, m in sorted(models.items())
                 if m not in reached(models, used) and m.__module__.startswith(PACKAGE)]
    if unreached:
        lines += ["## Sections no command above reads", "",
                  "Typed sections in `visiontrain.config` that the table above does not reach: add them to "
                  "`COMMANDS` in `scripts/gen_config_reference.py` when a command reads them.", "",
                  "| model | module | fields |", "| --- | --- | --- |"]
        for model in unreached:
            names = ", ".join(f"`{info.alias or n}`" for n, info in model.model_fields.items()) or "—"
            lines.append(f"| `{model.__name__}` | `{model.__module__}` | {names} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="where to write (default: %(default)s)")
    args = parser.parse_args(argv)
    text = render(discover_models())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
