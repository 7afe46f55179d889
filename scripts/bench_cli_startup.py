"""How fast `visiontrain <command> --help` answers: the CLI's promise of a config answer before torch loads.

Each command's ``--help`` runs in a fresh process, ``--repeats`` times, interleaved across commands; the median
wall and CPU seconds (user + system, from the child's rusage) are reported. ``--compare <src dir>`` runs another
checkout's package (e.g. the code before a change) the same way, back to back, so the two are measured under the
same load. CPU seconds are the figure to compare on a busy machine: wall time includes waiting for a core.

    python scripts/bench_cli_startup.py --repeats 5 [--compare /tmp/before/src] [--out benchmarks/cli_startup.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = ("", "train", "lr_find", "evaluate", "export", "predict", "serve", "stream", "drift")
REPO = Path(__file__).resolve().parents[1]


def run_once(command: str, src: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one `python -m visiontrain <command> --help` with ``src`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    argv = [sys.executable, "-m", "visiontrain", *([command] if command else []), "--help"]
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compare", type=Path, help="another checkout's src/ to measure the same way")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sides = {"this": REPO / "src", **({"compare": args.compare.resolve()} if args.compare else {})}
    samples: dict[str, dict[str, list[tuple[float, float]]]] = {side: {c: [] for c in COMMANDS} for side in sides}
    for _ in range(args.repeats):
        for command in COMMANDS:
            for side, src in sides.items():
                samples[side][command].append(run_once(command, src))
    results = {side: {command or "(none)": {"wall_s": statistics.median(w for w, _ in runs),
                                            "cpu_s": statistics.median(c for _, c in runs)}
                      for command, runs in by_command.items()}
               for side, by_command in samples.items()}
    print(f"{'command':10} " + "  ".join(f"{side + ' wall/cpu s':>22}" for side in sides))
    for command in results["this"]:
        cells = [f"{results[side][command]['wall_s']:>10.2f} {results[side][command]['cpu_s']:>10.2f}" for side in sides]
        print(f"{command:10} " + "  ".join(f"{cell:>22}" for cell in cells))
    if args.out:
        args.out.write_text(json.dumps({"command": " ".join(sys.argv), "repeats": args.repeats,
                                        "load_average": os.getloadavg(), "sides": {k: str(v) for k, v in sides.items()},
                                        "results": results}, indent=2))


if __name__ == "__main__":
    main()
