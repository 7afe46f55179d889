"""Start-up of the `visiontrain` command: seconds until `--help`, a config mistake or `predict --help` answers.

Each case runs the real command in a fresh process (``python -m visiontrain ...``, the current interpreter) from
an empty folder, ``--runs`` times; the table gives the median and the range. A config mistake is answered after
Hydra composes the config and the library-free checks run, before the command's module (and torch) is imported.

    .venv/bin/python scripts/bench_cli.py --runs 5 --json benchmarks/cli.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import markdown_table, median, timed, write_results

CASES = {
    "train --help": ["train", "--help"],
    "train trainer.max_epochs=-5 (config error)": ["train", "trainer.max_epochs=-5"],
    "train optimizer.lr=abc (config error)": ["train", "optimizer.lr=abc"],
    "train optimizer.lrr=0.1 (unknown key)": ["train", "optimizer.lrr=0.1"],
    "predict --help": ["predict", "--help"],
}


def run_once(args: list[str], cwd: Path) -> float:
    """Seconds for one `visiontrain ARGS`; a case that does not answer as expected stops the benchmark."""
    expected = 0 if "--help" in args else 2

    def command() -> None:
        result = subprocess.run([sys.executable, "-m", "visiontrain", *args], cwd=cwd, capture_output=True,
                                text=True, timeout=300)
        if result.returncode != expected:
            raise SystemExit(f"visiontrain {' '.join(args)} exited {result.returncode}, not {expected}:\n"
                             f"{result.stderr[-2000:]}")

    return timed(command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per case; the median is reported")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    options = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, args in CASES.items():
            seconds = [run_once(args, Path(folder)) for _ in range(options.runs)]
            results[name] = {"median_s": round(median(seconds), 2), "min_s": round(min(seconds), 2),
                             "max_s": round(max(seconds), 2), "runs": options.runs}
            print(f"{name}: median {results[name]['median_s']} s", file=sys.stderr, flush=True)
    rows = [(name, r["median_s"], f"{r['min_s']}-{r['max_s']}", r["runs"]) for name, r in results.items()]
    print(markdown_table(["command", "median s", "range s", "runs"], rows))
    write_results(options.json, " ".join(sys.argv), {"cases": results})


if __name__ == "__main__":
    main()
