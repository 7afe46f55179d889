"""What a registered model and an alias may be called: checked by the training config (``register=``) before a
run starts, and by the registry itself."""

from __future__ import annotations

import re

from visiontrain.errors import RegistryError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ALIAS = re.compile(r"[a-z][a-z0-9_-]{0,31}")
LATEST = "latest"  # not an alias: the highest version number


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise RegistryError(f"{name!r} is not a model name: letters, digits, '.', '_' and '-', at most 64, "
                            "e.g. churn or hymenoptera-effnet")
    return name


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not ALIAS.fullmatch(alias) or alias == LATEST:
        raise RegistryError(f"{alias!r} is not an alias name: lower-case letters, digits, '_' and '-', starting "
                            f"with a letter, not {LATEST!r}; e.g. production or candidate")
    return alias
