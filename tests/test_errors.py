"""Every exception lives in visiontrain/errors.py with its exit code, and the command line ends with that code."""

from __future__ import annotations

import ast
import builtins
import inspect

import pytest

from conftest import REPO
from visiontrain import errors
from visiontrain.errors import VisiontrainError

PACKAGE = REPO / "src" / "visiontrain"
# raised and caught where they are defined, never shown as an error of ours: an HTTP response (FastAPI's
# HTTPException, which errors.py may not import) and the private signal that stops an HTTP page loop
NOT_ERRORS = {("deploy/request_body.py", "ClientError"), ("tabular/http_page.py", "_Stopped")}

ERRORS = [cls for _, cls in inspect.getmembers(errors, inspect.isclass)
          if issubclass(cls, VisiontrainError) and cls is not VisiontrainError]


def _exception_names() -> set[str]:
    builtin = {name for name, value in vars(builtins).items()
               if inspect.isclass(value) and issubclass(value, BaseException)}
    return builtin | {cls.__name__ for cls in ERRORS} | {"HTTPException"}


def test_no_exception_class_is_defined_outside_errors_py():
    names = _exception_names()
    found = set()
    for path in PACKAGE.rglob("*.py"):
        if path.name == "errors.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    (base.id if isinstance(base, ast.Name) else getattr(base, "attr", None)) in names
                    for base in node.bases):
                found.add((path.relative_to(PACKAGE).as_posix(), node.name))
    assert found - NOT_ERRORS == set(), "move these into src/visiontrain/errors.py, each with its exit code"


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_every_error_has_a_kind_and_an_exit_code(cls):
    assert cls.kind and cls.kind != VisiontrainError.kind, f"{cls.__name__}: say what to call it (kind = ...)"
    assert cls.exit_code in (1, 2, 3)


def test_the_command_line_ends_with_the_error_s_own_code():
    from visiontrain.core.exits import user_error as _user_error

    assert _user_error(errors.ExportMismatch("differs")) == ("export error", 3)
    assert _user_error(errors.ConfigError("lr", "must be > 0", "optimizer.lr=1e-3")) == ("config error", 2)
    assert _user_error(errors.RunWriteError("cannot write x", 30)) == ("write error", 1)
    assert _user_error(RuntimeError("a bug")) is None  # its traceback is shown
