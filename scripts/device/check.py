"""Every CUDA path of visiontrain, checked in one command on a lent GPU, with the figures it gives.

Run from the repository root on the device machine (`bash scripts/device_check.sh`, with `.device` carried).
Steps, in order, each with a share of one time budget; each writes what it measured before the next begins, so
a run cut short still returns its figures:

1. environment: install the carried wheels (`--no-index --no-deps --target`), then GPU, driver, torch/CUDA and
   library versions, and any requirement the environment leaves unmet;
2. gpu_tests: `pytest -m gpu` on the carried photos;
3. gpu_train: `visiontrain train trainer=gpu` (bf16, channels_last, pinned memory) on replicated real photos,
   then ONNX export + onnxruntime parity of its best checkpoint;
4. bench: `scripts/bench_gpu.py`, visiontrain against timm's own train.py (before compile: it is the headline
   figure, and compile is the step most likely to run long);
5. compile: the gpu_train run with `trainer.compile=true`: compile time and the speed after it;
6. onnx_providers: the default image model (conf/model/timm.yaml's architecture and input, one epoch on the photos)
   exported with its int8 copy, then `scripts/bench_providers.py`: onnxruntime's CUDA (and TensorRT) execution
   providers against the CPU's, float and int8, batch 1 and 32, images/s and p50 latency; a provider the image's
   onnxruntime lacks, or that cannot run the int8 file, is recorded as unsupported with the reason.

Without CUDA (a dry run, as the tests do) it gets as far as it can, skips each GPU step with a line saying why,
and exits 0. ``--rehearse`` runs the GPU steps with CPU stand-ins (tiny model, tiny images) so that their
command lines and the parsing of every log and file are exercised too; the figures then mean nothing.
Exit status 1 when a step failed.

Writes to --out (default $OUT): device_check.json (all figures), device_check.md (the summary it prints),
device_check.log (every command and its output), bench_gpu.json, bench_logs/ (both trainers' own logs),
bench_providers.json and image_packages.txt (every package of the Python that ran it, before the carried wheels: the facts to refresh
scripts/device/image_packages.txt with).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.metadata
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "scripts"), str(Path(__file__).parent)]

import install  # noqa: E402
from bench_gpu import (  # noqa: E402
    DEFAULT_WORKERS,
    FULL_FINETUNE,
    UtilisationSampler,
    replicated_folder,
    visiontrain_overrides,
)
from prepare import FALLBACK, PEER, PHOTOS, TARGET_FLAGS, TRAVEL_LIMIT_MIB, WHEELS, first_existing  # noqa: E402


@dataclass(frozen=True)
class Profile:
    """The settings of the GPU steps: the real ones, or CPU stand-ins for a rehearsal."""

    name: str
    trainer: tuple[str, ...]  # the trainer overrides
    backbone: str
    image_size: int
    batch_size: int
    workers: str
    epochs: int
    replicate: int
    step_seconds: dict[str, int]
    # onnx_providers: None is the default image model's own architecture and input size
    inference_backbone: str | None = None
    inference_image_size: int | None = None


GPU = Profile("gpu", ("trainer=gpu",), "resnet50", 224, 128, "auto", 4, 40,
              {"environment": 90, "configs": 90, "gpu_tests": 200, "gpu_train": 120, "compile": 210, "bench": 300,
               "onnx_providers": 150})
# A rehearsal proves command lines and parsing, not speed: its limits only stop a hang (a loaded CI machine
# ran it ten times slower than an idle one).
REHEARSAL = Profile("cpu-rehearsal", ("trainer=cpu", "trainer.precision=bf16-mixed", "trainer.channels_last=true"),
                    "test_resnet", 32, 8, "0", 2, 2,
                    {"environment": 300, "configs": 300, "gpu_tests": 600, "gpu_train": 600, "compile": 0,
                     "bench": 900, "onnx_providers": 600},
                    # EfficientNet-Lite0's int8 file fails in onnxruntime's QLinearConv at 32 px (at 224 it runs)
                    inference_backbone="test_resnet", inference_image_size=32)
# onnxruntime-gpu would replace the image's CPU onnxruntime, but its wheel (244 MiB for 1.31.1) is four times what a
# device call carries (prepare.TRAVEL_LIMIT_MIB): where the image has no GPU build, onnx_providers says so.
ONNXRUNTIME_GPU_NOTE = ("the device image's onnxruntime is the CPU build, and onnxruntime-gpu (244 MiB) does not fit "
                        f"the {TRAVEL_LIMIT_MIB} MiB a device call carries")
MIN_STEP_SECONDS = 20  # a step with less time left is skipped rather than started


@dataclass
class Check:
    """State shared by the steps: where results go, the time left, the environment they run in."""

    out: Path
    deadline: float
    profile: Profile
    cuda: bool = False
    env: dict[str, str] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)
    scratch: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="device-check-")))

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def time_for(self, step: str) -> float:
        """A step's own limit, or what is left of the whole budget if that is less."""
        return min(self.profile.step_seconds[step], self.remaining())

    def say(self, line: str) -> None:
        print(line, flush=True)
        self.summary.append(line)
        self.log(line)

    def log(self, text: str) -> None:
        with (self.out / "device_check.log").open("a") as handle:
            handle.write(text.rstrip("\n") + "\n")

    def run(self, command: list[str], timeout: float, extra_env: dict[str, str] | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess:
        """A command in the check's environment; its output goes to the log whatever happens.

        It runs in a process group of its own, killed whole at the timeout: loader workers would otherwise keep
        its output open and the check waiting.
        """
        self.log(f"\n$ {' '.join(command)}")
        process = subprocess.Popen(command, cwd=REPO, env={**self.env, **(extra_env or {})}, text=True,
                                   stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            stdout, stderr = process.communicate(stdin, timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            self.log(stdout + stderr)
            raise StepFailed(f"timed out after {timeout:.0f} s: {' '.join(command[:6])} ...") from None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # anything it left behind
        self.log(stdout + stderr + f"[exit {process.returncode}]")
        return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)

    def save(self) -> None:
        (self.out / "device_check.json").write_text(json.dumps(self.results, indent=2, default=str) + "\n")
        (self.out / "device_check.md").write_text("\n".join(self.summary) + "\n")


class StepSkipped(RuntimeError):
    """A step that cannot run on this machine, found out once it started; the message says why."""


class StepFailed(RuntimeError):
    """A step ran and its command or its check failed; the message says which, ``figures`` what it measured."""

    def __init__(self, message: str, figures: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.figures = figures or {}


# 1. environment ---------------------------------------------------------------------------------------------

def install_wheels(check: Check) -> dict[str, Any]:
    """Install the carried wheels this Python lacks (or has at another version) into a clean target, then the
    fallback wheels that a requirement left unmet by the image calls for.

    Where this Python cannot take them (a dry run on another Python than the device's 3.12), both folders are
    installed for the device's tags into a scratch target, to prove them, and the steps use this environment.
    """
    wheels = sorted(WHEELS.glob("*.whl"))
    if not wheels:
        return {"installed": [], "note": f"no wheels in {WHEELS} (scripts/device/prepare.py packs them); using "
                                          "this environment as it is"}
    carried = install.plan(wheels)
    target = check.scratch / "site"

    def pip(paths: list[Path], *flags: str) -> None:
        result = check.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                            "--no-compile", "--no-cache-dir", "--disable-pip-version-check", "--target",
                            str(target), *flags, *map(str, paths)], timeout=min(120, check.remaining()))
        if result.returncode != 0:
            raise StepFailed(f"pip could not install the carried wheels: {result.stderr[-800:]}")

    if carried.foreign:
        pip([*wheels, *sorted(FALLBACK.glob("*.whl"))], *TARGET_FLAGS)
        return {"installed": [], "verified_for_device": len(wheels),
                "note": f"this Python ({sys.version.split()[0]}) cannot take {len(carried.foreign)} of the carried "
                        f"wheels; all {len(wheels)} and the fallbacks installed for the device's tags into a "
                        "scratch target; the steps use this environment"}
    if carried.wanted:
        pip(carried.wanted)
    fallbacks = install.fallbacks_for(install.unmet_requirements(target), FALLBACK)
    if fallbacks:
        pip(fallbacks, "--upgrade")
    if carried.wanted or fallbacks:
        check.env["PYTHONPATH"] = os.pathsep.join([str(target), check.env["PYTHONPATH"]])
    return {"installed": [p.name for p in carried.wanted], "fallbacks_installed": [p.name for p in fallbacks],
            "already_there": carried.present, "unmet_after_install": install.unmet_requirements(target)}


def environment(check: Check) -> dict[str, Any]:
    installed = install_wheels(check)
    result = check.run([sys.executable, str(Path(__file__).with_name("probe.py"))], timeout=120)
    if result.returncode != 0:
        raise StepFailed(f"probe.py failed: {result.stderr[-800:]}")
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    image = sorted(f"{dist.metadata['Name']}=={dist.version}" for dist in importlib.metadata.distributions())
    (check.out / "image_packages.txt").write_text(  # this Python's own packages, to refresh image_packages.txt
        f"# {sys.executable} {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}\n" + "\n".join(image) + "\n")
    check.cuda = bool(facts.get("cuda_available"))
    smi = facts.get("nvidia_smi") or {}
    versions = facts["versions"]
    check.say(f"- GPU: {facts.get('gpu', 'none')} ({smi.get('memory', '-')}, driver {smi.get('driver', '-')}, "
              f"capability {facts.get('capability', '-')}, bf16 {facts.get('bf16', '-')}); {facts['cores']} cores")
    check.say(f"- Python {facts['python']}, torch {versions['torch']} (CUDA {facts['cuda_build']}, cuDNN "
              f"{facts['cudnn']}), lightning {versions['lightning']}, timm {versions['timm']}, onnxruntime "
              f"{versions['onnxruntime']} {facts['onnxruntime_providers']}")
    check.say(f"- carried wheels installed: {len(installed['installed'])}, fallbacks: "
              f"{', '.join(installed.get('fallbacks_installed', [])) or 'none'}"
              + (f" ({installed['note']})" if "note" in installed else ""))
    for problem in installed.get("unmet_after_install", {}).values():
        check.say(f"- unmet after the install: {problem}")
    if facts["unmet_requirements"]:
        check.say(f"- unmet requirements: {'; '.join(facts['unmet_requirements'])}")
    return {**facts, "wheels": installed}


# the commands the GPU steps will run, validated first ---------------------------------------------------------

def configs(check: Check) -> dict[str, Any]:
    """Compose and validate, here and now, the GPU profile's training configs (gpu_train, compile, bench)."""
    data, run_dir = photo_source(check), check.scratch / "unused"
    runs = {"gpu_train": train_overrides(GPU, data, run_dir),
            "compile": train_overrides(GPU, data, run_dir, "trainer.compile=true"),
            "bench": visiontrain_overrides(data, argparse.Namespace(**bench_arguments(GPU)), run_dir),
            "onnx_providers": default_model_overrides(GPU, data, run_dir)}
    result = check.run([sys.executable, str(Path(__file__).with_name("compose.py"))],
                       timeout=check.time_for("configs"),
                       stdin=json.dumps(list(runs.values())))
    if result.returncode != 0:
        raise StepFailed(f"compose.py failed: {result.stderr[-1500:]}")
    verdicts = dict(zip(runs, json.loads(result.stdout.strip().splitlines()[-1])))
    errors = {name: verdict["error"] for name, verdict in verdicts.items() if verdict["error"]}
    check.say(f"- {len(runs) - len(errors)} of {len(runs)} GPU training configs compose and validate"
              + ("" if check.cuda else " (accelerator swapped for the CPU while validating: no CUDA here)"))
    if errors:
        raise StepFailed(f"config errors in the commands the GPU steps would run: {errors}")
    return {"validated": list(runs)}


# 2. pytest -m gpu --------------------------------------------------------------------------------------------

def gpu_tests(check: Check) -> dict[str, Any]:
    """The suite's GPU tests, only from the files that hold some (the others need packages the check skips)."""
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py")
                   if "pytest.mark.gpu" in p.read_text())
    report = check.scratch / "gpu-tests.xml"
    photos = first_existing(PHOTOS)  # the tests' own default is ../shared, which does not travel
    extra = {"VISIONTRAIN_TEST_HYMENOPTERA": str(photos)} if photos else {}
    result = check.run([sys.executable, "-m", "pytest", "-m", "gpu", "-p", "no:cacheprovider", "-q", "-rA",
                        f"--junitxml={report}", *files], timeout=check.time_for("gpu_tests"), extra_env=extra)
    counts = _junit_counts(report)
    check.say(f"- pytest -m gpu ({', '.join(files)}): {counts['passed']} passed, {counts['skipped']} skipped, "
              f"{counts['failed']} failed" + "".join(f"\n  - skipped {r}" for r in counts["skip_reasons"]))
    if result.returncode not in (0, 5) or counts["failed"]:  # 5: no test selected
        raise StepFailed(f"GPU tests failed:\n{result.stdout[-3000:]}")
    unexpected = [reason for reason in counts["skip_reasons"] if not re.search(r"needs \d+ CUDA GPUs", reason)]
    if check.cuda and unexpected:  # only a test for more GPUs than this machine has may skip
        raise StepFailed(f"GPU tests skipped on a machine with a GPU: {unexpected}")
    return {"files": files, **counts}


def _junit_counts(report: Path) -> dict[str, Any]:
    """Passed, skipped and failed counts from pytest's JUnit XML, with the reason of each skip."""
    import xml.etree.ElementTree as ElementTree

    counts: dict[str, Any] = {"passed": 0, "skipped": 0, "failed": 0, "skip_reasons": []}
    if not report.is_file():
        return counts
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        skipped = case.find("skipped")
        if skipped is not None:
            counts["skipped"] += 1
            counts["skip_reasons"].append(f"{case.get('name')}: {skipped.get('message', '')}")
        elif case.find("failure") is not None or case.find("error") is not None:
            counts["failed"] += 1
        else:
            counts["passed"] += 1
    return counts


# 3 and 5. a real training run, eager and compiled -------------------------------------------------------------

def photo_source(check: Check) -> Path:
    """The carried photos, else ../shared's (a dry run here); a clone with neither skips what needs them."""
    source = first_existing(PHOTOS)
    if source is not None:
        return source
    if check.cuda:
        raise StepFailed("no photos: run scripts/device/prepare.py here and carry .device")
    raise StepSkipped("no photos here: neither .device/data (scripts/device/prepare.py) nor ../shared/data")


def photos(check: Check) -> Path:
    """The photos replicated by hard links, so that an epoch is long enough to reach a steady state."""
    folder = check.scratch / "photos"
    if not folder.is_dir():
        replicated_folder(photo_source(check), folder, check.profile.replicate)
    return folder


def train_overrides(profile: Profile, data: Path, run_dir: Path, *extra: str) -> list[str]:
    """The `visiontrain train` overrides of the gpu_train and compile steps."""
    return ["experiment=hymenoptera", f"data.root={data}", f"model.backbone={profile.backbone}",
            "model.weights=null", *FULL_FINETUNE, *profile.trainer, f"model.input.image_size={profile.image_size}",
            f"data.batch_size={profile.batch_size}", f"data.num_workers={profile.workers}",
            f"trainer.max_epochs={profile.epochs}", "logger=csv", "trainer.enable_progress_bar=false",
            f"hydra.run.dir={run_dir}", *extra]


def train(check: Check, name: str, *extra: str) -> dict[str, Any]:
    """One `visiontrain train` run on the photos; what its history.csv and summary.json say."""
    profile, run_dir = check.profile, check.scratch / name
    command = [sys.executable, "-m", "visiontrain", "train", *train_overrides(profile, photos(check), run_dir, *extra)]
    started = time.monotonic()
    with UtilisationSampler() as sampler:
        result = check.run(command, timeout=check.time_for(name))
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise StepFailed(f"visiontrain train failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    with (run_dir / "history.csv").open() as handle:
        epochs = list(csv.DictReader(handle))
    summary = json.loads((run_dir / "summary.json").read_text())
    steady = [float(row["time/train_samples_per_second"]) for row in epochs[1:]] or [math.nan]
    log = result.stdout + result.stderr
    return {"command": " ".join(command[1:]), "wall_seconds": round(wall, 1), "epochs": epochs,
            "train_seconds": [float(row["time/train_seconds"]) for row in epochs],
            "images_per_second_after_first_epoch": statistics.median(steady),
            "data_wait_fraction": [row.get("time/data_wait_fraction") for row in epochs],
            "cuda_peak_mib": [row.get("memory/cuda_peak_mib") for row in epochs],
            "gpu_busy_percent": sampler.busy(), "best": summary["monitor"], "export": summary.get("export"),
            "bf16": bool(re.search(r"using (bf16|bfloat16) automatic mixed precision", log, re.IGNORECASE)),
            "timings_seconds": summary.get("timings_seconds")}


def _parity(run: dict[str, Any]) -> str:
    parity = (run.get("export") or {}).get("parity") or {}
    if not parity:
        raise StepFailed("the run exported no ONNX file (summary.json has no export.parity)")
    if not parity.get("passed"):
        raise StepFailed(f"onnxruntime disagrees with PyTorch: {parity}")
    detail = ", ".join(f"{k} {v:.2g}" if isinstance(v, float) else f"{k} {v}" for k, v in parity.items()
                       if k != "passed" and not isinstance(v, (dict, list)))
    return f"parity passed ({detail})"


def gpu_train(check: Check) -> dict[str, Any]:
    run = train(check, "gpu_train")
    parity = _parity(run)
    check.say(f"- {' '.join(check.profile.trainer)} {check.profile.backbone} {check.profile.image_size} px, batch "
              f"{check.profile.batch_size}: {run['images_per_second_after_first_epoch']:,.0f} images/s after epoch "
              f"1, GPU busy {run['gpu_busy_percent']:.0f}%, peak {run['cuda_peak_mib'][-1]} MiB, bf16 "
              f"{run['bf16']}; best {run['best']['metric']} {run['best']['best']:.3f}; {parity}")
    return run


def compile_run(check: Check) -> dict[str, Any]:
    """The gpu_train run compiled: its speed after the first epoch against eager, and what compiling cost."""
    run = train(check, "compile", "trainer.compile=true")
    speed = f"{run['images_per_second_after_first_epoch']:,.0f} images/s after epoch 1"
    eager = check.results.get("gpu_train", {})
    if eager.get("status") == "passed":
        speedup = run["images_per_second_after_first_epoch"] / eager["images_per_second_after_first_epoch"]
        compile_seconds = run["train_seconds"][0] - eager["train_seconds"][0]
        run.update(speedup_after_warmup=speedup, compile_seconds_first_epoch=compile_seconds,
                   extra_wall_seconds=run["wall_seconds"] - eager["wall_seconds"])
        speed += (f" = {speedup:.2f}x eager (goal >= 1.2); first epoch {compile_seconds:+.0f} s, whole run "
                  f"{run['extra_wall_seconds']:+.0f} s against eager")
    else:
        speed += f", first epoch {run['train_seconds'][0]:.0f} s (no passed eager run to compare with)"
    check.say(f"- compile: {speed}; {_parity(run)}")
    return run


# 4. against timm's train.py ------------------------------------------------------------------------------------

def bench_arguments(profile: Profile) -> dict[str, Any]:
    """bench_gpu.py's settings for a profile: the same model, images, batch and workers on both sides."""
    workers = str(DEFAULT_WORKERS) if profile.workers == "auto" else profile.workers
    return {"model": profile.backbone, "img_size": profile.image_size, "batch_size": profile.batch_size,
            "workers": workers, "epochs": 3 if profile is GPU else 2, "repeats": 2 if profile is GPU else 1,
            "replicate": profile.replicate, "device": "cuda" if profile is GPU else "cpu", "compile": False}


def bench(check: Check) -> dict[str, Any]:
    profile, settings = check.profile, bench_arguments(check.profile)
    peer = first_existing(PEER)
    if peer is None:
        raise StepFailed("timm's train.py is missing: run scripts/device/prepare.py here and carry .device")
    results = check.out / "bench_gpu.json"
    timeout = check.time_for("bench")
    flags = [item for key, value in settings.items() if key != "compile"
             for item in (f"--{key.replace('_', '-')}", str(value))]
    command = [sys.executable, str(REPO / "scripts" / "bench_gpu.py"), "--timm-train", str(peer), "--data",
               str(photo_source(check)), *flags, "--timeout", str(int(timeout)), "--logs", str(check.out / "bench_logs"),
               "--json", str(results)]
    try:
        result = check.run(command, timeout=timeout)
        failure = None if result.returncode == 0 else (
            f"bench_gpu.py failed (exit {result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")
    except StepFailed as timed_out:
        failure = str(timed_out)
    figures = json.loads(results.read_text()) if results.is_file() else {}
    runs = figures.get("runs", [])
    if runs:
        ratios = ", ".join(f"{run['ratio']:.3f}" for run in runs)
        check.say(f"- bench_gpu ({profile.backbone} {profile.image_size} px, bf16 + channels_last, batch "
                  f"{profile.batch_size}, {settings['workers']} workers): visiontrain "
                  f"{statistics.median(r['visiontrain'] for r in runs):,.0f} images/s, timm train.py "
                  f"{statistics.median(r['timm'] for r in runs):,.0f}; ratio per repeat {ratios} (goal >= 1.0); "
                  f"GPU busy {statistics.median(r['visiontrain_gpu_busy'] for r in runs):.0f}% vs "
                  f"{statistics.median(r['timm_gpu_busy'] for r in runs):.0f}% (goal >= 90)"
                  + ("" if figures.get("complete") else f"; {len(runs)} of {settings['repeats']} repeats"))
    if failure:
        raise StepFailed(failure, figures)
    return figures


# 6. onnxruntime's execution providers on the default image model ------------------------------------------------

def default_model_overrides(profile: Profile, data: Path, run_dir: Path) -> list[str]:
    """`visiontrain train` overrides for the default image model: the architecture and input spec of conf/model/
    timm.yaml's weights (random weights: the packaged ImageNet ones do not travel, and speed does not depend on
    them), one epoch on the photos, exported with its int8 copy (export.quantize=int8, the project's quantize path).
    """
    import yaml

    if str(REPO / "src") not in sys.path:
        sys.path.insert(0, str(REPO / "src"))
    from visiontrain.image.packaged_weights import packaged_weights

    weights = packaged_weights(yaml.safe_load((REPO / "conf" / "model" / "timm.yaml").read_text())["weights"])
    spec = {**weights.input, "image_size": profile.inference_image_size or weights.input["image_size"]}
    inputs = [f"model.input.{key}={json.dumps(value).replace(' ', '')}" if isinstance(value, list)
              else f"model.input.{key}={value}" for key, value in spec.items()]
    backbone = profile.inference_backbone or weights.backbone
    return ["experiment=hymenoptera", f"data.root={data}", f"model.backbone={backbone}", "model.weights=null",
            *inputs, *FULL_FINETUNE, *profile.trainer, "trainer.max_epochs=1", "data.batch_size=16",
            f"data.num_workers={profile.workers}", "logger=csv", "trainer.enable_progress_bar=false",
            "export.quantize=int8", "export.calibration_images=32", f"hydra.run.dir={run_dir}"]


def onnx_providers(check: Check) -> dict[str, Any]:
    """Train and export the default image model, then time it on each onnxruntime provider (bench_providers.py)."""
    deadline = time.monotonic() + check.time_for("onnx_providers")
    run_dir = check.scratch / "onnx_providers"
    overrides = default_model_overrides(check.profile, photo_source(check), run_dir)
    result = check.run([sys.executable, "-m", "visiontrain", "train", *overrides], timeout=deadline - time.monotonic())
    if result.returncode != 0:
        raise StepFailed(f"visiontrain train failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    export = json.loads((run_dir / "summary.json").read_text()).get("export") or {}
    int8 = (export.get("int8") or {}).get("onnx")
    if not export.get("onnx") or not int8:
        raise StepFailed(f"the run exported no float and int8 ONNX files (summary.json export: {export})")
    figures_file = check.out / "bench_providers.json"
    seconds = deadline - time.monotonic()
    command = [sys.executable, str(REPO / "scripts" / "bench_providers.py"), "--model", export["onnx"], "--int8", int8,
               "--providers", "cpu,cuda,tensorrt", "--seconds", str(max(10, int(seconds - 15))),
               "--json", str(figures_file)]
    result = check.run(command, timeout=seconds)
    if result.returncode != 0 or not figures_file.is_file():
        raise StepFailed(f"bench_providers.py failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    figures = json.loads(figures_file.read_text())
    settings = dict(item.split("=", 1) for item in overrides)
    model = "a CPU stand-in for the default image model" if check.profile.inference_backbone else "the default image model"
    check.say(f"- {model} ({settings['model.backbone']}, {settings['model.input.image_size']} px, one epoch, with its "
              f"int8 copy) on onnxruntime {figures['onnxruntime']}'s providers "
              f"({', '.join(figures['available_providers'])}):\n")
    for line in figures["markdown"]:
        check.say(line)
    if "CUDAExecutionProvider" not in figures["available_providers"]:
        check.say(f"- this onnxruntime has no CUDA execution provider (on the device machine: {ONNXRUNTIME_GPU_NOTE})")
    return figures


# the run ---------------------------------------------------------------------------------------------------------

STEPS: list[tuple[str, Callable[[Check], dict[str, Any]], bool]] = [
    ("environment", environment, False), ("configs", configs, False), ("gpu_tests", gpu_tests, False),
    ("gpu_train", gpu_train, True), ("bench", bench, True), ("compile", compile_run, True),
    ("onnx_providers", onnx_providers, True)]


def goals(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Issue 12's goals against what this run measured: (goal, measured, met / not met / not measured)."""
    bench_runs = results.get("bench", {}).get("runs", [])
    measured = {
        "visiontrain >= 1.0x timm train.py images/s": (
            statistics.median(r["ratio"] for r in bench_runs) if bench_runs else None, 1.0, "{:.3f}x"),
        "GPU >= 90% busy while visiontrain trains": (
            statistics.median(r["visiontrain_gpu_busy"] for r in bench_runs) if bench_runs else None, 90, "{:.0f}%"),
        "compile >= 1.2x eager after warm-up": (results.get("compile", {}).get("speedup_after_warmup"), 1.2, "{:.2f}x"),
    }
    rows = []
    for goal, (value, target, form) in measured.items():
        if value is None or math.isnan(value):
            rows.append((goal, "-", "not measured"))
        else:
            rows.append((goal, form.format(value), "met" if value >= target else "not met"))
    parity = [results[step]["export"]["parity"]["passed"] for step in ("gpu_train", "compile")
              if results.get(step, {}).get("status") == "passed"]
    rows.append(("ONNX parity of the GPU-trained checkpoints", f"{sum(parity)} of {len(parity)} passed",
                 ("met" if all(parity) else "not met") if parity else "not measured"))
    return rows


def run_step(check: Check, name: str, step: Callable[[Check], dict[str, Any]], needs_cuda: bool,
             rehearse: bool) -> None:
    check.say(f"\n## {name}")
    started = time.monotonic()
    if needs_cuda and not check.cuda and not rehearse:
        reason = "no CUDA device here (torch.cuda.is_available() is False)"
    elif needs_cuda and not check.cuda and check.profile.step_seconds[name] == 0:
        reason = "not rehearsed on CPU (inductor's CPU build would take minutes and prove nothing about CUDA)"
    elif check.remaining() < MIN_STEP_SECONDS:
        reason = f"only {check.remaining():.0f} s of the budget left"
    else:
        reason = None
    if reason:
        check.say(f"SKIP {name}: {reason}")
        check.results[name] = {"status": "skipped", "reason": reason}
        check.save()
        return
    try:
        check.results[name] = {"status": "passed", **step(check)}
    except StepSkipped as skipped:
        check.say(f"SKIP {name}: {skipped}")
        check.results[name] = {"status": "skipped", "reason": str(skipped)}
    except Exception as error:  # a step's failure is reported and the next step still runs
        message = str(error) if isinstance(error, StepFailed) else traceback.format_exc()
        lines = [line for line in message.strip().splitlines() if line.strip()]
        check.say(f"FAIL {name}: {lines[0]}" + "".join(f"\n  | {line}" for line in lines[1:][-6:]))
        check.log(message)
        figures = error.figures if isinstance(error, StepFailed) else {}
        check.results[name] = {"status": "failed", "error": message[-4000:], **figures}
    check.results[name]["seconds"] = round(time.monotonic() - started, 1)
    check.save()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or REPO / "outputs" / "device_check"))
    parser.add_argument("--budget", type=float, default=480, help="seconds for the whole check (default 480)")
    parser.add_argument("--steps", default=",".join(name for name, _, _ in STEPS),
                        help="a comma-separated subset, to rerun what failed (environment and configs always run; "
                             "compile compares with gpu_train, so it needs that step too)")
    parser.add_argument("--rehearse", action="store_true", help="without CUDA, run the GPU steps on CPU stand-ins")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "device_check.log").unlink(missing_ok=True)
    check = Check(out=args.out, deadline=time.monotonic() + args.budget, profile=GPU)
    check.env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",  # no hub on the device machine
                 "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    wanted = {"environment", "configs", *args.steps.split(",")}
    shutil.rmtree(args.out / "bench_logs", ignore_errors=True)
    check.say(f"# visiontrain device check ({time.strftime('%Y-%m-%d %H:%M')}, budget {args.budget:.0f} s)")
    started = time.monotonic()
    for name, step, needs_cuda in STEPS:
        if name in wanted:
            run_step(check, name, step, needs_cuda, args.rehearse)
        if name == "environment" and not check.cuda and args.rehearse:
            check.profile = REHEARSAL
    statuses = {name: result["status"] for name, result in check.results.items()}
    check.say(f"\n{sum(s == 'passed' for s in statuses.values())} passed, "
              f"{sum(s == 'skipped' for s in statuses.values())} skipped, "
              f"{sum(s == 'failed' for s in statuses.values())} failed in {time.monotonic() - started:.0f} s; "
              f"figures in {args.out / 'device_check.json'}")
    check.results["profile"] = check.profile.name
    if any(check.results.get(step, {}).get("status") == "passed" for step in ("gpu_train", "compile", "bench")):
        check.results["goals"] = goals(check.results)
        check.say("\n" + ("Goals (issue 12):" if check.cuda else "Goals (a CPU rehearsal: these figures mean nothing):")
                  + "\n\n| goal | measured | |\n|---|---|---|")
        for row in check.results["goals"]:
            check.say("| " + " | ".join(row) + " |")
    check.save()
    shutil.rmtree(check.scratch, ignore_errors=True)
    return 1 if "failed" in statuses.values() else 0


if __name__ == "__main__":
    sys.exit(main())
