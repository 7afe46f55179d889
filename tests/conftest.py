"""Shared fixtures: small real image folders copied from tests/fixtures, plus generated bad files.

The default set needs nothing outside the checkout: tests/fixtures holds 48 real hymenoptera photos and 500 real
Telco rows (tests/fixtures/README.md). The full data sets in ../shared/data serve only the larger optional runs,
marked `slow` and `shared_data(path, ...)`: deselected by `-m "not slow"`, skipped with the missing path where
someone selects them without ../shared."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
PHOTOS = FIXTURES / "hymenoptera"  # 12 real photos per split and class, 160 px, the quirks kept
TELCO_SAMPLE = FIXTURES / "telco-churn-sample.csv"  # 500 real rows, stratified on Churn, quirks kept
SHARED_DATA = REPO.parent / "shared" / "data"
# the full sets, for `shared_data` runs only; the device check points this at the photos it carries
HYMENOPTERA = Path(os.environ.get("VISIONTRAIN_TEST_HYMENOPTERA", SHARED_DATA / "hymenoptera"))
TELCO = SHARED_DATA / "telco-churn.csv"
TINY_BACKBONE = "test_resnet"  # a real timm architecture, 0.37M parameters: fast on CPU
QUIRKS = ("imageNotFound.gif", "formica.jpeg")  # real files with quirks: a palette GIF, a .jpeg suffix


@pytest.fixture(autouse=True)
def loggers_enabled():
    """Every test sees every logger enabled, whatever ran before it in the same worker.

    import-linter's ``lint_imports`` (tests/test_layering.py runs it in-process) configures logging with
    ``logging.config.dictConfig``, whose ``disable_existing_loggers`` defaults to True: every logger that exists
    then is disabled, and a later test asserting on our warnings or urllib3's through ``caplog`` sees none (the
    order-dependent misses seen in full ``-n 2`` runs). A real run never calls it.
    """
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            logger.disabled = False
    yield


def pytest_collection_modifyitems(config, items):
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if item.get_closest_marker("gpu"):
                item.add_marker(skip)
    for item in items:
        marker = item.get_closest_marker("shared_data")
        if marker is None:
            continue
        if item.get_closest_marker("slow") is None:  # else a fresh clone's default set would skip it again
            raise pytest.UsageError(f"{item.nodeid} is marked shared_data but not slow: add @pytest.mark.slow")
        missing = [str(path) for path in marker.args if not Path(path).exists()]
        if missing:
            item.add_marker(pytest.mark.skip(reason=f"an optional run on the full data, missing here: "
                                                    f"{', '.join(missing)}"))


def _smallest(folder: Path, count: int) -> list[Path]:
    """The smallest files keep the tests fast; the quirky ones are always included."""
    files = sorted(folder.iterdir(), key=lambda p: (p.stat().st_size, p.name))
    if count > len(files):
        raise ValueError(f"{folder} holds {len(files)} photos, fewer than the {count} asked for")
    chosen = [p for p in files if p.name in QUIRKS]
    chosen += [p for p in files if p not in chosen][: count - len(chosen)]
    return sorted(chosen)


def copy_hymenoptera(target: Path, per_class: int = 8) -> Path:
    """A writable copy of the fixture photos, ``per_class`` per split and class (at most 12)."""
    for split in ("train", "val"):
        for class_dir in sorted((PHOTOS / split).iterdir()):
            destination = target / split / class_dir.name
            destination.mkdir(parents=True)
            for path in _smallest(class_dir, per_class):
                shutil.copy2(path, destination / path.name)
    return target


@pytest.fixture(scope="session")
def tiny_hymenoptera(tmp_path_factory) -> Path:
    """A real ImageFolder (train/val, ants/bees), 8 images per class and split, quirks included."""
    return copy_hymenoptera(tmp_path_factory.mktemp("hymenoptera") / "hymenoptera")


def add_bad_files(class_dir: Path) -> dict[str, str]:
    """Write files a real folder ends up with; returns name -> the start of the expected reject reason."""
    real_jpeg = next(p for p in sorted(class_dir.iterdir()) if p.suffix.lower() == ".jpg")
    (class_dir / "empty.jpg").write_bytes(b"")
    data = real_jpeg.read_bytes()
    (class_dir / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (class_dir / "notes.jpg").write_text("this is a text file with an image suffix\n")
    (class_dir / "readme.txt").write_text("not an image\n")
    return {"empty.jpg": "empty file", "truncated.jpg": "truncated image", "notes.jpg": "not an image",
            "readme.txt": "not an image"}


@pytest.fixture()
def messy_hymenoptera(tmp_path) -> tuple[Path, dict[str, str]]:
    """tiny hymenoptera plus unreadable, truncated, empty and non-image files in train/ants."""
    root = copy_hymenoptera(tmp_path / "messy", per_class=6)
    return root, add_bad_files(root / "train" / "ants")


@pytest.fixture()
def odd_modes_folder(tmp_path) -> Path:
    """Palette, grayscale, RGBA, 16-bit and EXIF-rotated images in a class tree."""
    rng = np.random.default_rng(0)
    root = tmp_path / "odd"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        rgb = Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
        rgb.convert("P").save(root / name / "palette.png")
        rgb.convert("L").save(root / name / "gray.png")
        rgba = rgb.convert("RGBA")
        rgba.putalpha(128)
        rgba.save(root / name / "rgba.png")
        Image.fromarray((rng.integers(0, 65535, (40, 60))).astype(np.uint16)).save(root / name / "gray16.png")
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
        rgb.save(root / name / "rotated.jpg", exif=exif)
    return root


def run_cli(*args: str, cwd: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real `visiontrain` command in a subprocess, as a user types it (``env`` value None unsets a variable)."""
    merged = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    environment = {key: value for key, value in merged.items() if value is not None}  # None: unset it
    command = [sys.executable, "-m", "visiontrain", *args]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout)


def written_by(onnx_path: Path) -> set[str]:
    """Which torch exporters wrote the graph's torch part: torchscript names each node after its module's scope
    (``/model/fc/Gemm``), dynamo ``node_<op>_<n>`` (a tabular file prefixes the scorer's nodes ``model_``)."""
    import onnx

    names = [node.name.removeprefix("model_") for node in onnx.load(str(onnx_path)).graph.node]
    return {exporter for exporter, found in (("torchscript", any(n.startswith("/") for n in names)),
                                               ("dynamo", any(n.startswith("node_") for n in names))) if found}


def offline_env(home: Path, **extra: str) -> dict[str, str | None]:
    """No credentials anywhere (HOME without netrc, no key): W&B must choose offline by itself."""
    env = {"HOME": str(home), "WANDB_API_KEY": None, "WANDB_MODE": None, "WANDB_RUN_ID": None,
           "WANDB_SERVICE": None,  # a W&B service this test process started must not be shared with the run
           "VISIONTRAIN_CACHE_DIR": str(home / "cache"), **extra}
    return env


PAUSE_CALLBACK = "+callbacks.pause._target_=run_pause.PauseBeforeEpoch"  # tests/run_pause.py


def start_paused_run(args: list[str], pause: Path, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """A real `visiontrain train` that holds still before epoch 1 (tests/run_pause.py) until ``pause/go`` exists;
    returns once it is held there, so a test can change the world at a known point."""
    merged = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", **(env or {}),
              "VISIONTRAIN_TEST_PAUSE": str(pause),
              "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(Path(__file__).parent)]))}
    environment = {key: value for key, value in merged.items() if value is not None}  # None: unset it (as run_cli)
    pause.mkdir(exist_ok=True)
    process = subprocess.Popen([sys.executable, "-m", "visiontrain", "train", *args, PAUSE_CALLBACK], cwd=cwd,
                               env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (pause / "ready").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not (pause / "ready").exists():
        process.kill()
        raise AssertionError(f"the run never reached epoch 1: {process.communicate()[1][-3000:]}")
    return process


def compose_train(*overrides: str):
    """The real training config, composed as the CLI would (run_dir given, since Hydra is not running)."""
    from hydra import compose, initialize_config_dir

    from visiontrain.config import config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        return compose("train", overrides=list(overrides))


def tiny_overrides(data_root: Path, run_dir: Path, *extra: str) -> list[str]:
    """Fast settings for a real run on tiny data: tiny backbone, 32 px, no workers."""
    return ["experiment=hymenoptera", f"data.root={data_root}", f"paths.run_dir={run_dir}",
            f"model.backbone={TINY_BACKBONE}", "model.weights=null", "model.input.image_size=32",
            "data.batch_size=4", "data.num_workers=0", "trainer.enable_progress_bar=false",
            "trainer.log_every_n_steps=1", *extra]


def _train_tiny(data: Path, run_dir: Path, cwd: Path) -> Path:
    """`visiontrain train` of a tiny image classifier (tiny backbone, 32 px, one epoch) on ``data``: its run dir."""
    result = run_cli("train", "experiment=hymenoptera", f"data.root={data}", f"model.backbone={TINY_BACKBONE}",
                     "model.weights=null", "model.input.image_size=32", "data.batch_size=4", "data.num_workers=0",
                     "trainer.max_epochs=1", "schedule.freeze_epochs=0", "trainer.enable_progress_bar=false",
                     f"hydra.run.dir={run_dir}", cwd=cwd)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return run_dir


def train_tiny_image_model(base: Path, per_class: int) -> tuple[Path, Path]:
    """A real image classifier in seconds (tiny backbone, 32 px, one epoch) on ``per_class`` fixture photos per
    split and class; returns the data folder and the exported model.onnx."""
    data = copy_hymenoptera(base / "hymenoptera", per_class=per_class)
    return data, _train_tiny(data, base / "run", cwd=base) / "model.onnx"


@pytest.fixture(scope="session")
def tiny_image_run(tiny_hymenoptera, tmp_path_factory) -> Path:
    """The run dir of one such classifier on ``tiny_hymenoptera`` (model.onnx, reference_stats.json, checkpoints),
    trained once per test process for the tests that only read a trained model: copy it before changing it."""
    base = tmp_path_factory.mktemp("tiny_image_run")
    return _train_tiny(tiny_hymenoptera, base / "run", cwd=base)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`visiontrain serve` in a subprocess on loopback; ``code``: run via ``python -c`` instead of ``-m``."""

    def __init__(self, model: Path, cwd: Path, *overrides: str, code: str | None = None,
                 env: dict | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        launcher = ["-c", code] if code else ["-m", "visiontrain"]
        command = [sys.executable, *launcher, "serve", f"model={model}", f"port={self.port}", *overrides]
        self.process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited: {self.process.stdout.read()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError("the server did not answer /health within 90 s")

    def stop(self) -> str:
        """Stop it as Ctrl-C would and return everything it printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.stdout.read()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """A real Kafka-protocol broker (Tansu) on a free loopback port, for this test process's session."""
    from kafka_broker import start_broker

    broker = start_broker(tmp_path_factory.mktemp("kafka"))
    yield broker
    broker.stop()
