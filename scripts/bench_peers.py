"""visiontrain against what its users would use instead: fastai's ``fine_tune`` and timm's own ``train.py``.

On each photo set, every side trains EfficientNet-Lite0 from the same packaged ImageNet weights, at the same image
size, batch size, epochs, loader workers and torch threads, each in a fresh process, back to back, ``--repeats``
times. Sides (``--sides``):

- ``visiontrain_hymenoptera``: ``visiontrain train experiment=hymenoptera data.root=<set>``
- ``visiontrain_image_folder``: ``visiontrain train data=image_folder data.root=<set>``
- ``fastai``: ``vision_learner`` + ``Learner.fine_tune`` (``scripts/peerbench/fastai_run.py``, peers' venv)
- ``timm``: ``train.py --initial-checkpoint`` (``../shared/peers/timm/train.py``, peers' venv)

Every side gets visiontrain's own split of the set (the peers as an ImageFolder of symlinks), and a logistic
regression on the frozen features (the linear probe) is scored on it. Per side: wall time from the process start
to the end of the best epoch, seconds per epoch, training images/s, best and final val accuracy, peak memory of the
process tree; ratios visiontrain / peer per repeat, then the median. The peers run with their own defaults
(``peerbench.sides.DEFAULTS`` says what they are); only the shared knobs are set.

Sets (``--sets``): ``hymenoptera`` (``../shared/data/hymenoptera``), and two derived from it by
``scripts/make_photo_sets.py`` into ``--sets-dir`` (made there on first use): ``lowres`` (a class tree of small,
blurred, compressed photos that visiontrain splits itself) and ``rotated`` (four classes: ants and bees, upright
and upside down).

The peers' venv (fastai 2.8, torch/timm at constraints.txt's versions): ``bash scripts/peers_venv.sh``.

    .venv/bin/python scripts/bench_peers.py --sets hymenoptera --repeats 1 \
        --json benchmarks/peers.json --markdown benchmarks/peers.md
    .venv/bin/python scripts/bench_peers.py --sets hymenoptera lowres rotated --repeats 3 --sets-dir /work/photo_sets
    .venv/bin/python scripts/bench_peers.py --sides fastai timm --epochs 2 --image-size 64 --no-probe   # a smoke run
    .venv/bin/python scripts/bench_peers.py --report-only benchmarks/peers.json --markdown benchmarks/peers.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import SHARED_DATA, write_results  # noqa: E402
from make_photo_sets import make_set  # noqa: E402
from peerbench.markdown import render  # noqa: E402
from peerbench.probe import linear_probe  # noqa: E402
from peerbench.report import compare_set, figures  # noqa: E402
from peerbench.sides import DEFAULTS, ROOT, SIDES, Inputs, Knobs  # noqa: E402
from peerbench.split import Split, image_folder, same_as_run, visiontrain_split  # noqa: E402
from peerbench.watch import run_watched  # noqa: E402
from peerbench.weights import imagenet_file, initial_checkpoint  # noqa: E402

DERIVED = ("lowres", "rotated")


def set_root(name: str, sets_dir: Path) -> Path:
    if name == "hymenoptera":
        return SHARED_DATA / "hymenoptera"
    return make_set(name, SHARED_DATA / "hymenoptera", sets_dir, seed=0)


def side_env(side: str, threads: int) -> dict[str, str]:
    """The same threads for every side; visiontrain runs from this checkout's src, the peers see none of it."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)
    if side.startswith("visiontrain"):
        env["PYTHONPATH"] = str(ROOT / "src")
    return env


def peer_versions(python: Path) -> str:
    code = ("import fastai, timm, torch; "
            "print(f'fastai {fastai.__version__}, timm {timm.__version__}, torch {torch.__version__}')")
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return result.stdout.strip() or result.stderr.strip()[-300:]


def run_side(name: str, knobs: Knobs, inputs: Inputs, run_dir: Path, args: argparse.Namespace,
             split: Split | None = None) -> dict[str, Any]:
    """One side, one repeat: its figures, or the error with the end of its log."""
    side = SIDES[name]
    run_dir.mkdir(parents=True, exist_ok=True)
    watched = run_watched(side.command(knobs, inputs, run_dir), side_env(name, args.threads), run_dir / "side.log",
                          lambda: side.count_rows(side.rows_file(run_dir)), args.timeout)
    if watched.returncode != 0:
        return {"side": name, "error": f"exit {watched.returncode} {' '.join(watched.notes)}",
                "log_tail": watched.log_tail}
    result: dict[str, Any] = figures(name, side.read(run_dir), watched, knobs.batch_size).to_dict()
    if split is not None and name.startswith("visiontrain"):
        result["same_split_as_peers"] = same_as_run(split, run_dir / "split.csv")
    return result


def bench_set(name: str, knobs: Knobs, args: argparse.Namespace, scratch: Path, imagenet: Path) -> dict[str, Any]:
    root = set_root(name, args.sets_dir)
    split, cfg, inventory = visiontrain_split(root, knobs.image_size, scratch / name / "compose")
    inputs = Inputs(root=root, image_folder=image_folder(split, scratch / name / "image_folder"),
                    num_classes=len(split.classes), imagenet=imagenet,
                    initial_checkpoint=initial_checkpoint(imagenet, scratch / name / "initial.pth",
                                                          len(split.classes), knobs.seed),
                    peers_python=args.peers_python, timm_train=args.timm_train)
    result: dict[str, Any] = {"set": name, "root": str(root), "classes": split.classes, "images": split.counts(),
                              "repeats": []}
    if args.probe:
        probe = linear_probe(cfg, inventory)
        result["linear_probe"] = vars(probe)
        print(f"{name}: linear probe val acc {probe.val_acc:.4f}", flush=True)
    for repeat in range(args.repeats):
        runs = {}
        for side in args.sides:
            runs[side] = run_side(side, knobs, inputs, scratch / name / f"repeat{repeat}" / side, args, split)
            shown = {k: v for k, v in runs[side].items() if k not in ("val_acc_per_epoch", "epoch_end_s", "log_tail")}
            print(f"{name} repeat {repeat + 1} {side}: {shown}", flush=True)
            if "error" in runs[side]:
                print(runs[side]["log_tail"], flush=True)
        result["repeats"].append(runs)
    return compare_set(result)


def report_only(path: Path, markdown: Path | None) -> None:
    """Recompute the comparisons and the Markdown from a results file's per-side figures (nothing is run)."""
    saved = json.loads(path.read_text())
    sets = [compare_set({k: v for k, v in result.items() if k != "comparisons"}) for result in saved["sets"]]
    path.write_text(json.dumps({**saved, "sets": sets}, indent=2, default=str))
    text = render(saved["command"], saved["started"], saved["settings"], sets)
    print(text)
    if markdown is not None:
        markdown.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["hymenoptera"], choices=["hymenoptera", *DERIVED])
    parser.add_argument("--sides", nargs="+", default=list(SIDES), choices=list(SIDES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6, help="all passes, frozen ones included, for every side")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="data loader processes, every side")
    parser.add_argument("--threads", type=int, default=2, help="OMP/MKL threads, every side")
    parser.add_argument("--sets-dir", type=Path, default=ROOT.parent / "photo_sets",
                        help="where the derived sets are (made there if missing); outside the repository")
    parser.add_argument("--peers-python", type=Path, default=ROOT / ".venv-peers" / "bin" / "python")
    parser.add_argument("--timm-train", type=Path, default=SHARED_DATA.parent / "peers" / "timm" / "train.py")
    parser.add_argument("--no-probe", dest="probe", action="store_false", help="skip the linear probe")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for one side's run")
    parser.add_argument("--keep", type=Path, default=None, help="keep every run dir and log here")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--report-only", type=Path, default=None, metavar="JSON",
                        help="only recompute the comparisons and the Markdown of this results file")
    args = parser.parse_args()
    if args.report_only is not None:
        return report_only(args.report_only, args.markdown)
    if any(not s.startswith("visiontrain") for s in args.sides) and not args.peers_python.exists():
        raise SystemExit(f"no peers' venv at {args.peers_python}: bash scripts/peers_venv.sh (or --peers-python)")
    knobs = Knobs(args.image_size, args.batch_size, args.epochs, args.workers)
    command = " ".join(["python", *sys.argv])
    settings = {**vars(knobs), "threads": args.threads, "repeats": args.repeats, "sides": args.sides,
                "peers": peer_versions(args.peers_python) if args.peers_python.exists() else None,
                "defaults": {s: DEFAULTS[s] for s in args.sides}}
    started = time.strftime("%Y-%m-%d %H:%M")
    scratch = Path(tempfile.mkdtemp(prefix="bench_peers_"))
    try:
        imagenet = imagenet_file(scratch / "imagenet.pth")
        sets = []
        for name in args.sets:  # both files after each set: a run cut short keeps the sets it finished
            sets.append(bench_set(name, knobs, args, scratch, imagenet))
            write_results(args.json, command, {"started": started, "settings": settings, "sets": sets})
            text = render(command, started, settings, sets)
            if args.markdown is not None:
                args.markdown.parent.mkdir(parents=True, exist_ok=True)
                args.markdown.write_text(text)
    finally:
        if args.keep is not None:
            shutil.copytree(scratch, args.keep, dirs_exist_ok=True, symlinks=True)
        shutil.rmtree(scratch, ignore_errors=True)
    print("\n" + text)


if __name__ == "__main__":
    main()
