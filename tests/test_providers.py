"""`providers=auto|cpu|cuda|tensorrt`: which onnxruntime execution providers predict, serve and stream run on.

This machine has onnxruntime's CPU build and no GPU, so here auto must say CPU and why, and cuda / tensorrt must
stop before any work with a config error naming ``providers``. Real onnxruntime sessions over a real trained model
throughout; the GPU path itself runs only where a GPU is lent.
"""

from __future__ import annotations

import httpx
import onnxruntime as ort
import pytest

from conftest import Server, run_cli
from visiontrain.core.providers import CPU, CUDA, TENSORRT, check_session, choose_providers
from visiontrain.errors import ConfigError
from visiontrain.inference.onnx_model import OnnxModel, open_model

CPU_BUILD = CUDA not in ort.get_available_providers()
cpu_build_only = pytest.mark.skipif(not CPU_BUILD, reason="this onnxruntime build has CUDAExecutionProvider")
AUTO_HERE = "onnxruntime: CPUExecutionProvider (providers=auto: no GPU provider in this onnxruntime build)"


@pytest.fixture(scope="module")
def churn_model(tmp_path_factory) -> dict:
    """A real table model (logistic regression: the fastest to train) and a few raw rows to score."""
    base = tmp_path_factory.mktemp("providers_churn")
    cache = base / "cache"
    result = run_cli("train", "experiment=churn", "model=logistic_regression", "trainer.enable_progress_bar=false",
                     f"hydra.run.dir={base / 'run'}", cwd=base, env={"VISIONTRAIN_CACHE_DIR": str(cache)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = base / "rows.csv"
    lines = (cache / "datasets" / "churn-generated.csv").read_text().splitlines()[:11]
    rows.write_text("\n".join(lines) + "\n")
    return {"base": base, "onnx": base / "run" / "model.onnx", "rows": rows}


def test_the_order_asked_for_follows_what_the_build_offers():
    gpu_build = [TENSORRT, CUDA, CPU]
    assert choose_providers("auto", gpu_build) == [TENSORRT, CUDA, CPU]
    assert choose_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("auto", [CPU]) == [CPU]
    assert choose_providers("cpu", gpu_build) == [CPU]
    assert choose_providers("cuda", gpu_build) == [CUDA, CPU]  # TensorRT only when asked for (or auto)
    assert choose_providers("tensorrt", gpu_build) == [TENSORRT, CUDA, CPU]
    with pytest.raises(ConfigError) as missing:
        choose_providers("tensorrt", [CUDA, CPU])
    assert missing.value.key == "providers" and "TensorrtExecutionProvider" in missing.value.problem


@cpu_build_only
def test_auto_runs_on_the_cpu_here_and_says_why(churn_model):
    model = OnnxModel(churn_model["onnx"], providers="auto")
    assert model.providers == [CPU]
    assert model.providers_line == AUTO_HERE
    assert model.describe()["providers"] == [CPU]


def test_cpu_runs_on_the_cpu_alone(churn_model):
    model = OnnxModel(churn_model["onnx"], providers="cpu")
    assert model.providers == [CPU]
    assert model.providers_line == "onnxruntime: CPUExecutionProvider (providers=cpu)"


@cpu_build_only
@pytest.mark.parametrize("choice", ["cuda", "tensorrt"])
def test_a_required_gpu_provider_this_build_lacks_is_a_config_error(churn_model, choice):
    with pytest.raises(ConfigError) as error:
        open_model(churn_model["onnx"], providers=choice)
    assert error.value.key == "providers"
    assert "this onnxruntime build lacks" in error.value.problem
    assert "pip install onnxruntime-gpu" in error.value.fix and "providers=cpu" in error.value.fix


@pytest.mark.parametrize("choice", ["cuda", "tensorrt"])
def test_a_session_that_fell_back_to_the_cpu_fails_a_required_gpu(churn_model, choice):
    """What onnxruntime-gpu does without a usable GPU (a session on the CPU alone, only a log line) is refused
    when the GPU was required."""
    session = ort.InferenceSession(str(churn_model["onnx"]), providers=[CPU])
    with pytest.raises(ConfigError) as error:
        check_session(session, choice)
    assert error.value.key == "providers" and "could not start it" in error.value.problem
    check_session(session, "auto")  # auto accepts the CPU
    check_session(session, "cpu")


@cpu_build_only
def test_predict_says_its_providers_once_and_refuses_cuda_in_one_line(churn_model, tmp_path):
    output = tmp_path / "out.csv"
    result = run_cli("predict", f"model={churn_model['onnx']}", f"input={churn_model['rows']}", f"output={output}",
                     "progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("onnxruntime: ") == 1 and AUTO_HERE in result.stdout
    assert output.is_file()

    refused = run_cli("predict", f"model={churn_model['onnx']}", f"input={churn_model['rows']}",
                      f"output={tmp_path / 'never.csv'}", "providers=cuda", cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout[-3000:] + refused.stderr[-3000:]
    lines = refused.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("visiontrain: config error: config key `providers`: cuda needs")
    assert lines[1].startswith("  fix: pip install onnxruntime-gpu")
    assert "Traceback" not in refused.stdout + refused.stderr and not (tmp_path / "never.csv").exists()

    typo = run_cli("predict", f"model={churn_model['onnx']}", f"input={churn_model['rows']}", "providers=gpu",
                   cwd=tmp_path)
    assert typo.returncode == 2
    assert typo.stderr.splitlines()[0] == ("visiontrain: config error: config key `providers`: must be one of "
                                           "auto, cpu, cuda, tensorrt; got 'gpu'")


@cpu_build_only
def test_serve_reports_its_providers_in_metadata_and_health(churn_model, tmp_path):
    server = Server(churn_model["onnx"], tmp_path)
    try:
        assert httpx.get(f"{server.url}/metadata").json()["providers"] == [CPU]
        assert httpx.get(f"{server.url}/health").json()["providers"] == [CPU]
    finally:
        printed = server.stop()
    assert printed.count("onnxruntime: ") == 1 and AUTO_HERE in printed

    refused = run_cli("serve", f"model={churn_model['onnx']}", "providers=tensorrt", cwd=tmp_path, timeout=120)
    assert refused.returncode == 2 and "config key `providers`: tensorrt needs" in refused.stderr
