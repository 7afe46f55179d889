"""Catalogue: faults and hostile checkpoints. A run that is killed, a disk that turns read-only, a damaged or
malicious checkpoint: each ends resumed with the same final epochs, or in one clear error, and code in a
checkpoint never runs.

Fault cases here: last.ckpt is the latest epoch, corrupt last.ckpt, kill mid-save with $TMPDIR on another
filesystem, a run dir that is or turns read-only (immutable: not even root can write; a real run held between two
epochs by tests/run_pause.py while it turns so), malicious checkpoints and checkpoints outside a run dir (below). Two more live with the features they exercise:
kill mid-epoch (test_tracking_sweeps.py::test_resume_latest_continues_a_killed_run_in_its_own_dir) and a
failing sweep trial (test_tracking_sweeps.py::test_grid_sweep_goes_on_past_a_crashed_trial_...).

Security cases create a marker file if code runs, and assert it never appears. Each first proves that its
payload is live (loading it the unsafe way does create the marker), so the check could fail.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import copy_hymenoptera, run_cli, start_paused_run, tiny_overrides

EPOCHS = 2
MLP = ["experiment=churn", "data.batch_size=32", "trainer.enable_progress_bar=false",
       "callbacks.early_stopping.patience=100",
       "optimizer.lr=1e-12"]  # nothing changes after epoch 0: the best checkpoint stays there, last moves on


def churn_csv(path: Path, rows: int = 600) -> Path:
    from visiontrain.tabular.builtin import generate_churn_table

    generate_churn_table(rows=rows, seed=3).to_csv(path, index=False)
    return path


def epoch_of(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


def history_epochs(run_dir: Path) -> list[int]:
    return [row["epoch"] for row in json.loads((run_dir / "summary.json").read_text())["history"]]


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """A finished 2-epoch churn MLP run; tests copy it before changing anything."""
    base = tmp_path_factory.mktemp("faults")
    args = [*MLP, f"data.source={churn_csv(base / 'churn.csv')}"]
    result = run_cli("train", *args, f"trainer.max_epochs={EPOCHS}", f"hydra.run.dir={base / 'run'}", cwd=base)
    assert result.returncode == 0, result.stderr[-3000:]
    return base / "run", args


def copy_run(run_dir: Path, target: Path) -> Path:
    shutil.copytree(run_dir, target, symlinks=True)
    (target / "summary.json").unlink()
    return target


def resume(run_dir: Path, args: list[str], epochs: int, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return run_cli("train", *args, f"trainer.max_epochs={epochs}", f"resume={run_dir}", cwd=cwd, env=env)


# ----- checkpoints and resume ------------------------------------------------------------------------------
def test_last_ckpt_is_always_the_latest_finished_epoch(mlp_run):
    run_dir, _ = mlp_run
    summary = json.loads((run_dir / "summary.json").read_text())
    best, last = Path(summary["checkpoints"]["best"]), run_dir / "checkpoints" / "last.ckpt"
    assert Path(summary["checkpoints"]["last"]) == last
    assert epoch_of(last) == EPOCHS - 1
    assert epoch_of(best) < EPOCHS - 1  # the best epoch was early, yet last.ckpt kept up with every epoch
    assert not list((run_dir / "checkpoints").glob(".*.partial"))  # no temporary file left behind


def test_a_corrupt_last_ckpt_resumes_from_the_newest_intact_checkpoint(mlp_run, tmp_path):
    run_dir = copy_run(mlp_run[0], tmp_path / "run")
    last = run_dir / "checkpoints" / "last.ckpt"
    payload = last.read_bytes()
    last.write_bytes(payload[: len(payload) // 2])  # what a kill mid-copy left on older versions
    best = next(p for p in (run_dir / "checkpoints").glob("best-*.ckpt"))

    result = resume(run_dir, mlp_run[1], EPOCHS + 2, tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "last.ckpt: damaged or not a checkpoint" in result.stderr
    assert f"resuming from {best.name} (epoch {epoch_of(best)}) instead" in result.stderr
    assert history_epochs(run_dir) == list(range(EPOCHS + 2))  # every epoch once, as if never damaged
    assert epoch_of(last) == EPOCHS + 1


def test_only_damaged_checkpoints_fail_once_naming_each(mlp_run, tmp_path):
    run_dir = copy_run(mlp_run[0], tmp_path / "run")
    for path in (run_dir / "checkpoints").glob("*.ckpt"):
        path.write_bytes(b"PK\x03\x04 truncated")
    result = resume(run_dir, mlp_run[1], EPOCHS + 1, tmp_path)
    assert result.returncode == 2
    assert "visiontrain: checkpoint error: no intact checkpoint to resume from" in result.stderr
    assert "last.ckpt" in result.stderr and "best-epoch" in result.stderr and "Traceback" not in result.stderr


REWRITE_FOREVER = """
import sys, torch
from visiontrain.training.checkpoints import AtomicCheckpointIO
checkpoint = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
checkpoint["padding"] = torch.ones(200_000_000, dtype=torch.uint8)  # a write that takes a moment
io = AtomicCheckpointIO()
while True:
    io.save_checkpoint(checkpoint, sys.argv[1])
"""


def test_a_kill_mid_save_with_tmpdir_on_another_filesystem_loses_no_checkpoint(mlp_run, tmp_path):
    other_fs = Path("/dev/shm")
    if not other_fs.is_dir() or other_fs.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the run dir")
    tmpdir = Path(os.environ.get("TMPDIR_FOR_TEST", other_fs / f"vt-{os.getpid()}"))
    tmpdir.mkdir(exist_ok=True)
    run_dir = copy_run(mlp_run[0], tmp_path / "run")
    last = run_dir / "checkpoints" / "last.ckpt"
    try:
        for attempt in range(5):  # until the kill lands inside a write (the temporary file is left behind)
            process = subprocess.Popen([sys.executable, "-c", REWRITE_FOREVER, str(last)],
                                       env={**os.environ, "TMPDIR": str(tmpdir)})
            deadline = time.time() + 60
            while time.time() < deadline and not any(p.stat().st_size > 1_000_000 for p in
                                                     (run_dir / "checkpoints").glob(".last.ckpt.*.partial")):
                time.sleep(0.002)
            process.send_signal(signal.SIGKILL)
            process.wait()
            if list((run_dir / "checkpoints").glob(".last.ckpt.*.partial")):
                break
        leftovers = list((run_dir / "checkpoints").glob(".last.ckpt.*.partial"))
        assert leftovers, "the kill never landed mid-write"
        assert epoch_of(last) == EPOCHS - 1  # the target is the old checkpoint or the new one, never half of one

        result = resume(run_dir, mlp_run[1], EPOCHS + 1, tmp_path, TMPDIR=str(tmpdir))

        assert result.returncode == 0, result.stderr[-3000:]
        assert f"removing {leftovers[0].name}, left by a checkpoint write that was interrupted" in result.stderr
        assert history_epochs(run_dir) == list(range(EPOCHS + 1))
        assert not list((run_dir / "checkpoints").glob(".*.partial"))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _immutable(*paths: Path, on: bool) -> bool:
    """``chattr +i`` (or ``-i``): not even root can write, create or delete there. Test folders only."""
    return subprocess.run(["chattr", "+i" if on else "-i", *map(str, paths)], capture_output=True).returncode == 0


def _tree(folder: Path) -> list[Path]:
    """``folder``, every folder and file under it (symbolic links have no flags of their own: W&B's latest-run)."""
    return [folder, *sorted(p for p in folder.rglob("*") if not p.is_symlink())]


def _can_make_immutable(tmp_path: Path) -> bool:
    probe = tmp_path / "immutable-probe"
    probe.mkdir()
    if shutil.which("chattr") is None or not _immutable(probe, on=True):
        return False
    _immutable(probe, on=False)
    return True


def write_error(path: Path, run_dir: Path) -> str:
    """The one line a refused write ends a training run with."""
    fix = f"make {path.parent} writable" if path.parent == run_dir else \
        f"make {path.parent} writable, and the rest of the run dir {run_dir} with it"
    return (f"visiontrain: write error: cannot write {path} (Operation not permitted). The run stopped: {fix} (and "
            f"check free space), then continue with `visiontrain train <the same overrides> resume={run_dir}`")


def test_a_read_only_run_dir_fails_once_clearly(tmp_path):
    """Even root cannot write an immutable folder: the first checkpoint save fails, once, saying what to do."""
    run_dir = tmp_path / "run"
    checkpoints = run_dir / "checkpoints"
    checkpoints.mkdir(parents=True)
    if not _can_make_immutable(tmp_path) or not _immutable(checkpoints, on=True):
        pytest.skip("chattr +i is not available on this filesystem")
    try:
        result = run_cli("train", *MLP, f"data.source={churn_csv(tmp_path / 'churn.csv')}", "trainer.max_epochs=2",
                         f"hydra.run.dir={run_dir}", cwd=tmp_path)
    finally:
        _immutable(checkpoints, on=False)
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [write_error(checkpoints / "best-epoch000.ckpt", run_dir)]
    assert not list(checkpoints.iterdir()) and not (run_dir / "summary.json").exists()


def _image_args(tmp_path: Path) -> list[str]:
    data = copy_hymenoptera(tmp_path / "images", per_class=4)
    return [o for o in tiny_overrides(data, tmp_path / "run", "schedule.freeze_epochs=0")
            if not o.startswith("paths.run_dir=")]


READ_ONLY_RUNS = {  # name: (overrides, what turns immutable, the first write refused, W&B offline)
    "churn MLP": (lambda tmp: [*MLP, f"data.source={churn_csv(tmp / 'churn.csv')}"], ".", "csv/metrics.csv", False),
    "image classifier": (_image_args, ".", "csv/metrics.csv", False),
    "churn MLP with W&B offline": (lambda tmp: [*MLP, f"data.source={churn_csv(tmp / 'churn.csv')}", "logger=wandb"],
                                   ".", "csv/metrics.csv", True),
    "only visiontrain.log": (lambda tmp: [*MLP, f"data.source={churn_csv(tmp / 'churn.csv')}"], "visiontrain.log",
                             "visiontrain.log", False),
}


# slow: "churn MLP", since "churn MLP with W&B offline" runs the same overrides plus logger=wandb (the CSV logger
# is still the first writer refused), so it proves the plain case and W&B's files on top; "image classifier", whose
# first refused write is the same CSV logger's in the same task-independent runner
READ_ONLY_SLOW = {"churn MLP", "image classifier"}


@pytest.mark.parametrize("case", [pytest.param(case, marks=pytest.mark.slow if case in READ_ONLY_SLOW else ())
                                  for case in READ_ONLY_RUNS])
def test_a_run_dir_that_turns_read_only_after_epoch_0_ends_in_one_line_and_resumes(tmp_path, case):
    """A real run is held before epoch 1 (tests/run_pause.py), its run dir made immutable, file by file, then let
    go: whichever writer meets it first (the CSV logger here; W&B's files and visiontrain.log are in it too), the
    run ends in the one `write error` line, exit 1, no traceback, nothing at teardown; and once the folder is
    writable again, the `resume=` command it printed finishes the run with every epoch once."""
    if not _can_make_immutable(tmp_path):
        pytest.skip("chattr +i is not available on this filesystem")
    make_args, frozen, first_refused, wandb = READ_ONLY_RUNS[case]
    args, run_dir, pause = [*make_args(tmp_path), "trainer.max_epochs=2"], tmp_path / "run", tmp_path / "pause"
    env = {"HOME": str(tmp_path), "WANDB_MODE": "offline", "VISIONTRAIN_CACHE_DIR": str(tmp_path / "cache"),
           "WANDB_API_KEY": None} if wandb else {}  # no credentials: offline, whatever this machine has
    process = start_paused_run([*args, f"hydra.run.dir={run_dir}"], pause, cwd=tmp_path, env=env)
    try:
        before = {p: p.stat().st_mtime_ns for p in _tree(run_dir) if p.is_file()}
        assert _immutable(*_tree(run_dir / frozen), on=True)
        (pause / "go").touch()
        _, stderr = process.communicate(timeout=300)
        after = {p: p.stat().st_mtime_ns for p in _tree(run_dir) if p.is_file()}
    finally:
        if process.poll() is None:
            process.kill()
        _immutable(*_tree(run_dir), on=False)
    assert process.returncode == 1, stderr[-3000:]
    own = [line for line in stderr.strip().splitlines() if not line.startswith("wandb: WARNING")]  # W&B's notices
    assert own == [write_error(run_dir / first_refused, run_dir)]
    if frozen == ".":
        assert after == before  # not a byte written after it turned read-only
    assert (wandb and list((run_dir / "wandb").glob("offline-run-*"))) or not wandb

    result = run_cli("train", *args, f"resume={run_dir}", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resume from {run_dir / 'checkpoints' / 'last.ckpt'}: the run goes on in its own run dir {run_dir} " \
           "(checkpoints, history, reports, ONNX)" in result.stdout
    assert history_epochs(run_dir) == [0, 1]


@pytest.mark.parametrize(("command", "first_file"), [("evaluate", "rejects.csv"), ("export", "model.onnx")])
def test_evaluate_and_export_into_a_read_only_run_dir_end_in_one_line(image_ckpt, tmp_path, command, first_file):
    """The run dir exists with what Hydra writes first (.hydra/, the log) and is immutable itself: the command's
    first file is refused, and it ends the way training does, minus the resume."""
    out = tmp_path / "out"
    (out / ".hydra").mkdir(parents=True)
    (out / "visiontrain.log").touch()
    if not _can_make_immutable(tmp_path) or not _immutable(out, on=True):
        pytest.skip("chattr +i is not available on this filesystem")
    try:
        result = run_cli(command, f"ckpt={image_ckpt}", f"hydra.run.dir={out}", cwd=tmp_path)
    finally:
        _immutable(out, on=False)
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        f"visiontrain: write error: cannot write {out / first_file} (Operation not permitted). `visiontrain "
        f"{command}` stopped: make {out} writable (and check free space), then run it again"]
    assert sorted(p.name for p in out.iterdir()) == [".hydra", "visiontrain.log"]


def test_an_export_that_disagrees_with_pytorch_exits_3_in_one_line(image_ckpt, tmp_path):
    """No float32 graph meets atol=1e-30: the parity line says so, the error names the file and the check, exit 3."""
    out = tmp_path / "out"
    result = run_cli("export", f"ckpt={image_ckpt}", "atol=1e-30", f"hydra.run.dir={out}", cwd=tmp_path)
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    assert "passed: False" in result.stdout and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"visiontrain: export error: onnxruntime and PyTorch disagree on {out / 'model.onnx'} beyond atol=1e-30 "
        f"(the parity check is in {out / 'export.json'}): try another opset=, or a larger atol= if the difference "
        "is harmless"]
    assert not json.loads((out / "export.json").read_text())["parity"]["passed"]


# ----- hostile checkpoints ---------------------------------------------------------------------------------
class MarkerPayload:
    """Unpickling this creates ``path``: the proof that code from a file ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def live_payload(folder: Path, marker: Path) -> Path:
    """A pickle that creates ``marker`` when loaded the unsafe way; shown to work, then the marker removed."""
    payload = folder / "other.pt"
    torch.save({"x": MarkerPayload(marker)}, payload)
    torch.load(payload, weights_only=False)
    assert marker.exists(), "the payload must be live for the test to mean anything"
    marker.unlink()
    return payload


def rewrite(checkpoint: Path, target: Path, change) -> Path:
    contents = torch.load(checkpoint, map_location="cpu", weights_only=True)
    change(contents)
    torch.save(contents, target)
    return target


@pytest.fixture(scope="module")
def estimator_ckpt(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("estimator")
    result = run_cli("train", "experiment=churn", "model=logistic_regression", "trainer.enable_progress_bar=false",
                     f"data.source={churn_csv(base / 'churn.csv', rows=400)}", f"hydra.run.dir={base / 'run'}",
                     "export.onnx=false", cwd=base)
    assert result.returncode == 0, result.stderr[-3000:]
    return base / "run" / "checkpoints" / "last.ckpt"


def _write_images(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 3)):
        for label, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(count):
                noise = rng.integers(0, 40, (40, 40, 3))
                Image.fromarray((np.array(colour) + noise).clip(0, 255).astype(np.uint8)).save(folder / f"{index}.png")
    return root


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """A finished one-epoch run of a tiny image model, and its overrides; tests copy it before changing anything."""
    base = tmp_path_factory.mktemp("image")
    root = _write_images(base / "images")
    overrides = [o for o in tiny_overrides(root, base / "run", "trainer.max_epochs=1", "schedule.freeze_epochs=0",
                                           "export.onnx=false") if not o.startswith("paths.run_dir=")]
    result = run_cli("train", *overrides, f"hydra.run.dir={base / 'run'}", cwd=base)
    assert result.returncode == 0, result.stderr[-3000:]
    return base / "run", overrides


@pytest.fixture(scope="module")
def image_ckpt(image_run) -> Path:
    return next((image_run[0] / "checkpoints").glob("best-*.ckpt"))


def _estimator_target(target: str, *args: str, **kwargs) -> callable:
    def change(contents: dict) -> None:
        contents["hyper_parameters"]["estimator"] = {"_target_": target, "_args_": list(args), **kwargs}
    return change


TABULAR_ATTACKS = {
    "torch.load of a pickle": lambda payload, marker: _estimator_target("torch.load", str(payload), weights_only=False),
    "builtins.open writes a file": lambda payload, marker: _estimator_target("builtins.open", str(marker), "w"),
    "shutil.copyfile writes a file": lambda payload, marker: _estimator_target("shutil.copyfile", str(payload),
                                                                                str(marker)),
    "a nested target inside an allowed estimator": lambda payload, marker: _estimator_target(
        "sklearn.preprocessing.FunctionTransformer", func={"_target_": "builtins.open", "_args_": [str(marker), "w"]}),
    "an interpolation that reads the environment": lambda payload, marker: _estimator_target(
        "sklearn.linear_model.LogisticRegression", C="${oc.env:HOME}"),
}


# export is slow: it reads the estimator through the same load_tabular_model, which the in-process test below
# runs against every attack
@pytest.mark.parametrize("command", ["evaluate", pytest.param("export", marks=pytest.mark.slow)])
def test_a_checkpoint_whose_estimator_would_unpickle_a_file_is_refused(estimator_ckpt, tmp_path, command):
    marker = tmp_path / "code-ran"
    payload = live_payload(tmp_path, marker)
    evil = rewrite(estimator_ckpt, tmp_path / "evil.ckpt", TABULAR_ATTACKS["torch.load of a pickle"](payload, marker))
    result = run_cli(command, f"ckpt={evil}", f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"visiontrain: checkpoint error: ckpt={evil}: refused, hyper_parameters.estimator._target_ = " \
           "'torch.load' is not an estimator class" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()
    assert not (tmp_path / "out" / "model.onnx").exists()


@pytest.mark.parametrize("attack", list(TABULAR_ATTACKS))
def test_loading_a_tabular_checkpoint_never_builds_what_it_names(estimator_ckpt, tmp_path, attack):
    from visiontrain.errors import CheckpointError
    from visiontrain.tabular.models import load_tabular_model

    marker = tmp_path / "code-ran"
    payload = live_payload(tmp_path, marker)
    evil = rewrite(estimator_ckpt, tmp_path / "evil.ckpt", TABULAR_ATTACKS[attack](payload, marker))
    with pytest.raises(CheckpointError, match=f"ckpt={evil}: refused, hyper_parameters.estimator"):
        load_tabular_model(evil)
    assert not marker.exists()


def test_a_stored_data_config_with_an_interpolation_is_refused(estimator_ckpt, tmp_path):
    evil = rewrite(estimator_ckpt, tmp_path / "evil.ckpt",
                   lambda c: c["hyper_parameters"]["run_config"]["data"].update(source="${oc.env:HOME}/x.csv"))
    result = run_cli("evaluate", f"ckpt={evil}", f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert result.returncode == 2
    assert "refused, hyper_parameters.run_config.data.source: stored settings must be plain values" in result.stderr


def test_a_checkpoint_naming_an_instantiator_is_refused(image_ckpt, tmp_path):
    marker = tmp_path / "code-ran"
    evil = rewrite(image_ckpt, tmp_path / "evil.ckpt",
                   lambda c: c["hyper_parameters"].update(_instantiator="builtins.open"))
    result = run_cli("export", f"ckpt={evil}", f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert result.returncode == 2 and "refused, it names an instantiator ('builtins.open')" in result.stderr
    assert not marker.exists()


def test_a_backbone_name_that_would_fetch_from_a_hub_is_refused(image_ckpt, tmp_path):
    evil = rewrite(image_ckpt, tmp_path / "evil.ckpt",
                   lambda c: c["hyper_parameters"].update(backbone="hf-hub:attacker/model"))
    result = run_cli("evaluate", f"ckpt={evil}", f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert result.returncode == 2
    assert "not an image checkpoint of a timm architecture (backbone 'hf-hub:attacker/model')" in result.stderr


ALLOWED_OPTIMIZERS = "(allowed: subclasses of torch.optim.Optimizer from torch.optim); refusing to build it"
PAYLOAD_VARIABLE = "VISIONTRAIN_TEST_PAYLOAD"  # what the ${oc.env:...} payload reads: a node that opens the marker


def _optimizer(**node) -> callable:
    return lambda contents: contents["hyper_parameters"].update(optimizer=node)


def _augmentations(*steps: dict) -> callable:
    return lambda contents: contents["hyper_parameters"]["run_config"]["augment"].update(train=list(steps))


def _build(node: dict, **kwargs) -> None:
    """What building a stored node without the allow-list does (Hydra's instantiate, as the optimizer is built)."""
    from hydra.utils import instantiate

    with contextlib.suppress(Exception):  # the payload has run by the time torch rejects what it returned
        instantiate(node, **kwargs)


def _call(node: dict) -> None:
    """What any loader that imports and calls a `_target_` does (Hydra before 1.3.8's blocklist of names such as
    os.system, which visiontrain does not rely on: it lists a few names, the allow-list allows a few classes)."""
    module, _, name = node["_target_"].rpartition(".")
    getattr(importlib.import_module(module), name)(*node.get("_args_", []))


def _build_optimizer(node: dict) -> None:
    _build(node, params=[torch.nn.Parameter(torch.zeros(1))], _convert_="all")


def _build_augmentations(steps: list) -> None:
    """How stored augmentations would be built without the allow-list (the training transform's own builder)."""
    from visiontrain.image.transforms import build_train_transform, resolve_input_spec

    with contextlib.suppress(Exception):
        build_train_transform(resolve_input_spec("test_resnet", 32, None, None, None, None), steps)


# name: (the change to a real checkpoint, the unsafe build that shows it live, the refusal after `refused, `)
IMAGE_ATTACKS = {
    "os.system as the optimizer": lambda marker: (
        node := {"_target_": "os.system", "_args_": [f"touch {marker}"], "lr": 0.1},
        _optimizer(**node), lambda: _call(node),
        f"hyper_parameters.optimizer._target_ = 'os.system' is not an optimizer class {ALLOWED_OPTIMIZERS}"),
    "builtins.open nested in the optimizer's arguments": lambda marker: (
        node := {"_target_": "torch.optim.SGD", "lr": 0.1,
                 "momentum": {"_target_": "builtins.open", "_args_": [str(marker), "w"]}},
        _optimizer(**node), lambda: _build_optimizer(node),
        f"hyper_parameters.optimizer.momentum._target_ = 'builtins.open' is not an optimizer class "
        f"{ALLOWED_OPTIMIZERS}"),
    "an ${oc.env:...} interpolation": lambda marker: (
        node := {"_target_": "torch.optim.SGD", "lr": 0.1,
                 "momentum": "${oc.create:${oc.env:" + PAYLOAD_VARIABLE + "}}"},
        _optimizer(**node), lambda: _build_optimizer(node),
        "hyper_parameters.optimizer.momentum: interpolations are not allowed in stored optimizer settings "
        f"('${{oc.create:${{oc.env:{PAYLOAD_VARIABLE}}}}}')"),
    "a _target_ in the stored augmentations": lambda marker: (
        step := {"_target_": "builtins.open", "_args_": [str(marker), "w"]},
        _augmentations(step), lambda: _build_augmentations([step]),
        "hyper_parameters.run_config.augment.train[0]._target_ = 'builtins.open' is not an augmentation class "
        "(allowed: subclasses of albumentations.core.transforms_interface.BasicTransform or "
        "albumentations.core.composition.BaseCompose from albumentations); refusing to build it"),
}


def _files(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


PATHS = ["evaluate", "export", "resume", "ckpt_path"]


def _attacks_on_paths() -> list:
    """Every attack on every path; the default set runs the diagonal (each attack once, each path once: 4 real
    commands, not 16), since every path reads through the one reader, read_checkpoint, which checks the whole
    checkpoint whatever the path uses. The other 12 are slow (`make test-all`)."""
    return [pytest.param(attack, how, id=f"{attack}-{how}",
                         marks=() if index == PATHS.index(how) else pytest.mark.slow)
            for index, attack in enumerate(IMAGE_ATTACKS) for how in PATHS]


@pytest.mark.parametrize(("attack", "how"), _attacks_on_paths())
def test_every_setting_an_image_checkpoint_stores_passes_the_allow_list_on_every_path(image_run, tmp_path,
                                                                                       monkeypatch, attack, how):
    """Evaluate, export, resume= and ckpt_path= read a checkpoint through the one reader, which checks every
    `_target_` and interpolation it stores, used on that path or not: each payload, shown live first (building
    it the unsafe way creates the marker), is refused in one line, exit 2, the marker absent, nothing trained."""
    marker = tmp_path / "code-ran"
    monkeypatch.setenv(PAYLOAD_VARIABLE, f"{{_target_: builtins.open, _args_: [{marker}, w]}}")
    _, change, build_unsafely, refusal = IMAGE_ATTACKS[attack](marker)
    build_unsafely()
    assert marker.exists(), "the payload must be live for the test to mean anything"
    marker.unlink()

    run_dir, overrides = image_run
    victim = tmp_path / "run"
    shutil.copytree(run_dir, victim)
    evil = rewrite(victim / "checkpoints" / "last.ckpt", victim / "checkpoints" / "last.ckpt", change)
    before = _files(victim)
    out = tmp_path / "out"
    key, command = {"evaluate": ("ckpt", ["evaluate", f"ckpt={evil}", f"hydra.run.dir={out}"]),
                    "export": ("ckpt", ["export", f"ckpt={evil}", f"hydra.run.dir={out}"]),
                    "resume": ("resume", ["train", *overrides, "trainer.max_epochs=2", f"resume={victim}"]),
                    "ckpt_path": ("ckpt_path", ["train", *overrides, "trainer.max_epochs=2", f"ckpt_path={evil}",
                                                f"hydra.run.dir={out}"])}[how]
    result = run_cli(*command, cwd=tmp_path, env={PAYLOAD_VARIABLE: os.environ[PAYLOAD_VARIABLE]})

    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [f"visiontrain: checkpoint error: {key}={evil}: refused, {refusal}"]
    assert not marker.exists()
    assert _files(victim) == before  # resume trained no epoch into the run
    assert not [p for p in out.rglob("*") if p.is_file() and ".hydra" not in p.parts and p.suffix != ".log"]


def test_resuming_a_checkpoint_outside_a_run_dir_is_refused_and_ckpt_path_starts_a_new_run(image_run, tmp_path):
    """resume= writes into the checkpoint's own run dir: one downloaded into a plain folder would get a whole run
    written beside it, so it is refused naming ckpt_path=, which continues its training in a new run dir."""
    run_dir, overrides = image_run
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    downloaded = downloads / "model.ckpt"
    shutil.copy(run_dir / "checkpoints" / "last.ckpt", downloaded)

    result = run_cli("train", *overrides, "trainer.max_epochs=2", f"resume={downloaded}", cwd=tmp_path)

    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        f"visiontrain: config error: config key `resume`: {downloaded} is not in a run dir ({downloads} has no "
        ".hydra/config.yaml), and resuming writes a whole run (checkpoints, history, reports, ONNX) into its run dir",
        f"  fix: ckpt_path={downloaded} to continue its training in a new run dir (outputs/<experiment>/runs/<time>; "
        "add hydra.run.dir=<folder> to choose it), or resume=<the run dir it was saved in>"]
    assert [p.name for p in downloads.iterdir()] == ["model.ckpt"]

    out = tmp_path / "new-run"
    result = run_cli("train", *overrides, "trainer.max_epochs=2", f"ckpt_path={downloaded}", f"hydra.run.dir={out}",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"ckpt_path={downloaded}: its training goes on in a new run dir {out} (checkpoints, history, reports, " \
           "ONNX)" in result.stdout
    assert history_epochs(out) == [0, 1]  # epoch 0 came with the checkpoint, epoch 1 trained here
    assert [p.name for p in downloads.iterdir()] == ["model.ckpt"]


# resume in the default set (it reads the run dir's checkpoints through newest_intact, where a refused file must
# stop the run, not be skipped as damaged); the others are slow: every path reads through read_checkpoint, which
# refuses the pickle whatever the path (the allow-list's diagonal above runs each path)
@pytest.mark.parametrize("how", [pytest.param("ckpt_path", marks=pytest.mark.slow), "resume",
                                 pytest.param("evaluate", marks=pytest.mark.slow),
                                 pytest.param("export", marks=pytest.mark.slow)])
def test_a_checkpoint_that_is_a_code_pickle_is_refused_everywhere(tmp_path, how):
    marker = tmp_path / "code-ran"
    run_dir = tmp_path / "victim"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text("{}\n")  # a run dir, so resume= reads the checkpoint
    evil = run_dir / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": {}, "epoch": 9, "hyper_parameters": {"x": MarkerPayload(marker)}}, evil)
    source = churn_csv(tmp_path / "churn.csv", rows=200)
    command = {"ckpt_path": ("train", *MLP, f"data.source={source}", f"ckpt_path={evil}",
                             f"hydra.run.dir={tmp_path / 'out'}"),
               "resume": ("train", *MLP, f"data.source={source}", f"resume={run_dir}"),
               "evaluate": ("evaluate", f"ckpt={evil}", f"hydra.run.dir={tmp_path / 'out'}"),
               "export": ("export", f"ckpt={evil}", f"hydra.run.dir={tmp_path / 'out'}")}[how]
    result = run_cli(*command, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "visiontrain: checkpoint error:" in result.stderr and "Traceback" not in result.stderr
    assert "holds Python objects that loading would run" in result.stderr
    assert not marker.exists()
    assert not (tmp_path / "out" / "checkpoints").exists()  # refused before any training


def test_a_checkpoint_url_is_never_fetched(tmp_path):
    result = run_cli("evaluate", "ckpt=http://127.0.0.1:9/model.ckpt", f"hydra.run.dir={tmp_path / 'out'}",
                     cwd=tmp_path)
    assert result.returncode == 2
    assert "only local checkpoint files are read; download it first" in result.stderr


def test_skops_bytes_with_an_untrusted_type_are_refused(estimator_ckpt, tmp_path):
    """The fitted estimator travels as skops bytes; a type outside the trusted list is refused, not loaded."""
    import skops.io as sio

    from visiontrain.tabular.models import CHECKPOINT_KEY

    hostile = sio.dumps({"callable": shutil.copyfile})  # a function skops would only load if trusted
    evil = rewrite(estimator_ckpt, tmp_path / "evil.ckpt",
                   lambda c: c[CHECKPOINT_KEY].update(estimator=hostile))
    result = run_cli("evaluate", f"ckpt={evil}", f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "holds types that are not trusted: shutil.copyfile" in result.stderr
