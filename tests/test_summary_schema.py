"""summary.json has a published JSON Schema (docs/reference/summary.schema.json), generated from the type the
runner writes it from (:class:`visiontrain.training.results.RunSummary`): the committed file is current, and a
real run's summary.json validates against it (the real runs of tests/test_run_output.py check that)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jsonschema

from conftest import REPO

GENERATOR = REPO / "scripts" / "gen_summary_schema.py"
SCHEMA = REPO / "docs" / "reference" / "summary.schema.json"
REGENERATE = "python scripts/gen_summary_schema.py and commit docs/reference/summary.schema.json"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_summary_schema", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_valid_summary(run_dir: Path) -> dict:
    """``run_dir``'s summary.json, checked against the committed schema (every error listed, not the first)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    errors = [f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
              for error in validator.iter_errors(summary)]
    assert not errors, f"{run_dir / 'summary.json'} does not match {SCHEMA.name}:\n" + "\n".join(errors[:20])
    return summary


def test_the_committed_schema_is_current():
    assert SCHEMA.is_file(), f"{SCHEMA} is missing: run {REGENERATE}"
    generator = _generator()
    assert SCHEMA.read_text() == generator.render(generator.summary_schema()), (
        f"docs/reference/summary.schema.json is out of date with visiontrain.training.results: run {REGENERATE}")
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA.read_text()))


def test_the_schema_refuses_a_summary_missing_what_readers_use():
    schema = json.loads(SCHEMA.read_text())
    assert {"monitor", "export", "timings_seconds", "evaluation", "files"} <= set(schema["required"])
    validator = jsonschema.Draft202012Validator(schema)
    assert not validator.is_valid({"task": "tabular"})
