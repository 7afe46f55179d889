"""A command's argv, read once: Hydra's flags (``--help``, ``--cfg job``, ``-m``, ``--config-dir``, ...) and the
``key=value`` overrides.

`visiontrain` reads argv here, once, for everything it decides before Hydra runs (the fast ``--help``, the
override checks, ``resume=latest``, the sweep check); Hydra's ``@hydra.main`` then reads the same argv as its
own public entry point does. The flags are Hydra 1.3's command line, spelt as ``hydra --help`` lists them, so
this module never reaches into Hydra's internals.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

INFO_CHOICES = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False, prog="visiontrain <command>")
    parser.add_argument("overrides", nargs="*")
    for flag, short in (("--help", "-h"), ("--hydra-help", None), ("--version", None), ("--resolve", None),
                        ("--run", "-r"), ("--multirun", "-m"), ("--shell-completion", "-sc")):
        parser.add_argument(flag, *([short] if short else []), action="store_true")
    parser.add_argument("--cfg", "-c", choices=["job", "hydra", "all"])
    for flag, short in (("--package", "-p"), ("--config-path", "-cp"), ("--config-name", "-cn"),
                        ("--config-dir", "-cd"), ("--experimental-rerun", None)):
        parser.add_argument(flag, *([short] if short else []))
    parser.add_argument("--info", "-i", nargs="?", const="all", choices=INFO_CHOICES)
    return parser


@dataclass(frozen=True)
class CommandLine:
    """What a command's argv asks for. ``argv``: the arguments as given (what Hydra reads next)."""

    argv: tuple[str, ...]
    overrides: tuple[str, ...]
    help: bool = False
    hydra_help: bool = False
    version: bool = False
    cfg: str | None = None
    resolve: bool = False
    package: str | None = None
    run: bool = False
    multirun: bool = False
    shell_completion: bool = False
    config_path: str | None = None
    config_name: str | None = None
    config_dir: str | None = None
    experimental_rerun: str | None = None
    info: str | None = None

    @property
    def own_config(self) -> bool:
        """The config comes from elsewhere than conf/ (``--config-dir``, ``--config-path``, ``--config-name``)."""
        return bool(self.config_dir or self.config_path or self.config_name)

    @property
    def runs(self) -> bool:
        """The command runs (it does not only print help, a config, Hydra's info or its version)."""
        return not (self.help or self.hydra_help or self.version or self.cfg or self.info or self.shell_completion)

    def with_overrides(self, overrides: list[str]) -> CommandLine:
        """The same flags with ``overrides`` in place of the given ones (``resume=latest`` resolved)."""
        given = set(self.overrides)
        flags = [arg for arg in self.argv if arg not in given]
        return replace(self, argv=(*flags, *overrides), overrides=tuple(overrides))


def parse_command_line(argv: list[str]) -> CommandLine | None:
    """``argv`` (the arguments after the command's name) read as Hydra reads them; None when Hydra would refuse
    them (an unknown flag, a flag missing its value): Hydra then prints its own usage."""
    try:
        args, unknown = _parser().parse_known_args(list(argv))
    except SystemExit:
        return None
    if unknown:
        return None
    values = {name: value for name, value in vars(args).items() if name != "overrides"}
    return CommandLine(argv=tuple(argv), overrides=tuple(args.overrides), **values)
