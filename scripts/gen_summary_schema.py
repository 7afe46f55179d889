"""Write docs/reference/summary.schema.json: the JSON Schema of a run's summary.json, from its type.

    python scripts/gen_summary_schema.py                   # rewrite docs/reference/summary.schema.json
    python scripts/gen_summary_schema.py --output x.json   # write elsewhere (tests/test_summary_schema.py compares)

The type is :class:`visiontrain.training.results.RunSummary`, the model the runner writes summary.json from; a
key a task sets only sometimes (a table's ``rows``, an image model's ``int8`` copy) is optional in the schema.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "docs" / "reference" / "summary.schema.json"


def summary_schema() -> dict:
    """RunSummary's JSON Schema (draft 2020-12), as the validation of a written summary.json sees it."""
    from visiontrain.training.results import RunSummary

    schema = RunSummary.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def render(schema: dict) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(summary_schema()))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
