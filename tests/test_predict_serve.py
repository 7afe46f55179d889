"""A deployer's story: predict on folders and tables, then serve over HTTP, with onnxruntime and never torch.

Models are trained once per module through the real CLI; the server runs as a real subprocess on loopback
and is called with a real HTTP client.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from PIL import Image

from conftest import PHOTOS, REPO, TINY_BACKBONE, Server, compose_train, copy_hymenoptera, run_cli

TINY = [f"model.backbone={TINY_BACKBONE}", "model.weights=null", "model.input.image_size=32",
        "data.batch_size=4", "data.num_workers=0", "trainer.enable_progress_bar=false",
        "trainer.max_epochs=2", "schedule.freeze_epochs=1"]
HEAVY = ("torch", "torchvision", "torchmetrics", "lightning", "pytorch_lightning", "timm", "albumentations",
         "sklearn", "skl2onnx")
# Runs the CLI with the training stack made unimportable, then reports which heavy modules got loaded anyway.
BLOCKED_CLI = f"""
import sys
HEAVY = {HEAVY!r}

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(f"{{name}} is blocked: the inference side must not import it")
        return None

sys.meta_path.insert(0, Blocker())
from visiontrain.cli import main
try:
    main(sys.argv[1:])
finally:
    print("HEAVY MODULES:", sorted(m for m in sys.modules if m.split(".")[0] in HEAVY), flush=True)
"""


# --- fixtures: one real model of each kind ------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_model(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("image_model")
    data = copy_hymenoptera(base / "hymenoptera", per_class=8)
    result = run_cli("train", "experiment=hymenoptera", f"data.root={data}", *TINY,
                     f"hydra.run.dir={base / 'run'}", cwd=base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    folder = base / "incoming"  # real photos in subfolders, plus what a real folder ends up with
    for class_dir in sorted((data / "val").iterdir()):
        shutil.copytree(class_dir, folder / class_dir.name)
    photo = next(p for p in sorted(folder.rglob("*.jpg")))
    (folder / "truncated.jpg").write_bytes(photo.read_bytes()[:2000])
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "empty.jpg").write_bytes(b"")
    bad = {"truncated.jpg": "truncated image", "notes.txt": "not an image", "empty.jpg": "empty file"}
    return {"base": base, "onnx": base / "run" / "model.onnx", "folder": folder, "photo": photo, "bad": bad}


@pytest.fixture(scope="module")
def churn_model(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("churn_model")
    cache = base / "cache"
    result = run_cli("train", "experiment=churn", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
                     f"hydra.run.dir={base / 'run'}", cwd=base, env={"VISIONTRAIN_CACHE_DIR": str(cache)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    raw = pd.read_csv(cache / "datasets" / "churn-generated.csv", dtype=str, keep_default_na=False)
    return {"base": base, "onnx": base / "run" / "model.onnx", "raw": raw}


def _meta(onnx_path: Path) -> dict:
    from visiontrain.core.model_metadata import ModelMetadata

    return ModelMetadata.read(onnx_path).as_dict()


def _training_pixels(paths: list[Path], meta: dict) -> np.ndarray:
    """The training eval transform (albumentations + torch) on ``paths``: what the model saw in validation."""
    import torch

    from visiontrain.image.image_io import read_rgb_array
    from visiontrain.image.transforms import InputSpec, build_eval_transform, normalise

    size = meta["input_size"][-1]
    spec = InputSpec(size, tuple(meta["mean"]), tuple(meta["std"]), crop_pct=size / meta["resize_to"],
                     interpolation=meta["interpolation"])
    assert spec.resize_to == meta["resize_to"]
    transform = build_eval_transform(spec)
    pixels = torch.stack([transform(image=read_rgb_array(p, spec.resize_to))["image"] for p in paths])
    return normalise(pixels, spec.mean, spec.std).numpy()


# --- preprocessing parity -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size,interpolation", [(32, "bilinear"), (224, "bicubic")])
def test_preprocessing_matches_the_training_eval_transform(size, interpolation, odd_modes_folder):
    from visiontrain.core.image_decode import PixelLimit, decode
    from visiontrain.core.image_preprocess import ImageSpec, preprocess, resize_to_for

    photos = [p for class_dir in sorted((PHOTOS / "val").iterdir()) for p in sorted(class_dir.iterdir())]
    paths = photos + sorted(odd_modes_folder.rglob("*.*"))  # + palette, gray, RGBA, 16-bit, EXIF-rotated
    meta = {"input_size": [3, size, size], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
            "resize_to": resize_to_for(size, 0.875), "interpolation": interpolation}
    expected = _training_pixels(paths, meta)
    spec = ImageSpec.from_metadata(meta)
    got = np.stack([preprocess(decode(p, spec.resize_to, limit=PixelLimit()).image, spec) for p in paths])

    assert got.shape == expected.shape == (len(paths), 3, size, size) and got.dtype == np.float32
    assert float(np.abs(got - expected).max()) <= 1e-5  # measured: 0.0 (the same cv2 calls as albumentations)


# --- predict ------------------------------------------------------------------------------------------------


def test_predict_on_a_folder_accounts_for_every_file_and_matches_training(image_model, tmp_path):
    output = tmp_path / "out" / "predictions.csv"
    result = run_cli("predict", f"model={image_model['onnx']}", f"input={image_model['folder']}",
                     f"output={output}", "batch_size=4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    rows = list(csv.DictReader(output.open()))
    rejects = {Path(r["path"]).name: r["reason"] for r in csv.DictReader((tmp_path / "out" /
                                                                          "predictions_rejects.csv").open())}
    files = [p for p in image_model["folder"].rglob("*") if p.is_file()]
    assert len(files) == len(rows) + len(rejects)
    assert f"{len(files)} files in = {len(rows)} predicted + {len(rejects)} rejected" in result.stdout
    assert set(rejects) == set(image_model["bad"])
    for name, reason in image_model["bad"].items():
        assert rejects[name].startswith(reason), rejects[name]

    meta = _meta(image_model["onnx"])
    session = ort.InferenceSession(str(image_model["onnx"]), providers=["CPUExecutionProvider"])
    _, probabilities = session.run(None, {"image": _training_pixels([Path(r["path"]) for r in rows], meta)})
    classes = meta["class_names"]
    assert [r["top1"] for r in rows] == [classes[i] for i in probabilities.argmax(axis=1)]
    assert np.allclose([float(r["top1_probability"]) for r in rows], probabilities.max(axis=1), atol=1e-6)
    assert set(rows[0]) == {"path", "top1", "top1_probability", "top2", "top2_probability"}  # 2 classes


def test_predict_and_drift_list_every_entry_they_cannot_read(image_model, tmp_path):
    """A FIFO, broken and looping symlinks, a hidden file: each is in the rejects with its reason, none is lost."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    for index in range(3):
        Image.new("RGB", (48, 40), (40 * index, 90, 160)).save(folder / f"photo{index}.png")
    os.mkfifo(folder / "pipe.png")
    (folder / "gone.png").symlink_to(folder / "nowhere.png")
    (folder / "self.png").symlink_to(folder / "self.png")
    (folder / ".hidden.png").write_bytes((folder / "photo0.png").read_bytes())
    expected = {"pipe.png": "not a regular file: fifo", "gone.png": "broken symlink",
                "self.png": "symlink loop", ".hidden.png": "hidden file"}

    output = tmp_path / "out" / "predictions.csv"
    result = run_cli("predict", f"model={image_model['onnx']}", f"input={folder}", f"output={output}",
                     cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rejects = {Path(r["path"]).name: r["reason"] for r in csv.DictReader(
        (tmp_path / "out" / "predictions_rejects.csv").open())}
    assert set(rejects) == set(expected)
    assert all(rejects[name].startswith(reason) for name, reason in expected.items()), rejects
    assert len(list(csv.DictReader(output.open()))) == 3
    assert "7 files in = 3 predicted + 4 rejected" in result.stdout

    drift = run_cli("drift", f"reference={image_model['onnx']}", f"current={folder}",
                    f"output={tmp_path / 'drift'}", cwd=tmp_path, timeout=300)
    assert drift.returncode in (0, 1), drift.stderr[-3000:]  # drifted or not: 1 means drift, not a failure
    report = json.loads((tmp_path / "drift" / "drift.json").read_text())
    assert {Path(path).name for path, _ in report["unreadable"]} == set(expected)


def test_decoding_threads_change_nothing_but_the_speed(image_model, tmp_path):
    """The same rows and rejects, in the same order, decoded inline or one batch ahead in a thread pool."""
    outputs = {}
    for threads in ("0", "3"):
        output = tmp_path / threads / "predictions.csv"
        result = run_cli("predict", f"model={image_model['onnx']}", f"input={image_model['folder']}",
                         f"output={output}", "batch_size=3", f"decode_threads={threads}", "progress=false",
                         cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[threads] = (output.read_text(), (output.parent / "predictions_rejects.csv").read_text())
    assert outputs["0"] == outputs["3"]
    assert len(outputs["0"][1].splitlines()) == len(image_model["bad"]) + 1


def test_predict_one_image_to_json(image_model, tmp_path):
    output = tmp_path / "one.json"
    result = run_cli("predict", f"model={image_model['onnx']}", f"input={image_model['photo']}",
                     f"output={output}", "top_k=1", "progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    records = json.loads(output.read_text())
    assert len(records) == 1 and set(records[0]) == {"path", "top1", "top1_probability"}
    assert json.loads((tmp_path / "one_rejects.json").read_text()) == []


def test_predict_on_a_messy_churn_table_rejects_only_the_unparseable_row(churn_model, tmp_path):
    raw = churn_model["raw"].head(300).copy()
    raw.loc[len(raw)] = {**raw.iloc[0].to_dict(), "customerID": "BAD-ROW", "TotalCharges": "twelve"}
    raw.loc[len(raw)] = {**raw.iloc[1].to_dict(), "customerID": "BLANKS", "TotalCharges": "  ", "gender": " "}
    source = tmp_path / "week.csv"
    raw.to_csv(source, index=False)
    output = tmp_path / "scored.csv"
    result = run_cli("predict", f"model={churn_model['onnx']}", f"input={source}", f"output={output}",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    assert f"{len(raw)} rows in = {len(raw) - 1} predicted + 1 rejected" in result.stdout
    rejects = list(csv.DictReader((tmp_path / "scored_rejects.csv").open()))
    assert [(r["row"], r["customerID"]) for r in rejects] == [(str(len(raw) - 1), "BAD-ROW")]
    assert "TotalCharges" in rejects[0]["reason"] and "twelve" in rejects[0]["reason"]
    scored = pd.read_csv(output, dtype={"customerID": str})
    assert list(scored.columns) == ["row", "customerID", "probability", "label"]
    assert set(scored["label"]) <= {"Yes", "No"} and scored["probability"].between(0, 1).all()
    assert "BLANKS" in set(scored["customerID"])  # blanks are missing values (imputed), not rejects

    # the light cleansing feeds the model what training's cleansing would have (outliers left unclipped)
    from visiontrain.config.checks import check_train_config
    from visiontrain.config.table_schema import TableSchema
    from visiontrain.tabular.cleansing import cleanse
    from visiontrain.tabular.features import model_inputs
    from visiontrain.tabular.onnx_graph import onnx_feeds

    data = compose_train("experiment=churn").data
    schema = TableSchema.from_config(data)
    cleaning = check_train_config(compose_train("experiment=churn")).data.cleaning
    rules = cleaning.model_copy(update={"outliers": "flag", "drop_duplicates": False})
    clean = cleanse(pd.read_csv(source, dtype=str, keep_default_na=False), schema, rules).frame
    session = ort.InferenceSession(str(churn_model["onnx"]), providers=["CPUExecutionProvider"])
    probability, _ = session.run(None, onnx_feeds(model_inputs(clean, schema), schema.numeric_features,
                                                  schema.categorical_features))
    ours = scored.set_index("row")["probability"]
    common = [row for row in clean.index if row in ours.index]
    assert len(common) > 250
    expected = pd.Series(probability, index=clean.index)
    assert np.allclose(ours.loc[common].to_numpy(), expected.loc[common].to_numpy(), atol=1e-6)


def test_predict_reads_parquet_and_jsonl_like_csv(churn_model, tmp_path):
    from visiontrain.deploy.predict import predict_table
    from visiontrain.inference.onnx_model import OnnxModel

    raw = churn_model["raw"].head(50)
    raw.to_csv(tmp_path / "rows.csv", index=False)
    raw.to_parquet(tmp_path / "rows.parquet")
    raw.to_json(tmp_path / "rows.jsonl", orient="records", lines=True)
    model = OnnxModel(churn_model["onnx"])
    results = [predict_table(model, tmp_path / f"rows.{suffix}", 16, None, progress=False)
               for suffix in ("csv", "parquet", "jsonl")]
    assert all(rejects == [] for _, rejects in results)
    assert results[0][0] == results[1][0] == results[2][0]


def test_predict_and_serve_mistakes_are_config_errors(image_model, tmp_path):
    typo = run_cli("predict", f"model={image_model['onnx']}", f"input={image_model['folder']}", "batchsize=8",
                   cwd=tmp_path)
    assert typo.returncode == 2 and "did you mean batch_size?" in typo.stderr
    table = tmp_path / "t.csv"
    table.write_text("a,b\n1,2\n")
    mismatch = run_cli("predict", f"model={image_model['onnx']}", f"input={table}", cwd=tmp_path)
    assert mismatch.returncode == 2 and "is an image classifier" in mismatch.stderr
    missing = run_cli("serve", "model=nowhere.onnx", cwd=tmp_path)
    assert missing.returncode == 2 and "config key `model`" in missing.stderr
    assert "does not exist" in missing.stderr
    top = run_cli("--help", cwd=tmp_path)
    assert top.returncode == 0 and "predict" in top.stdout and "serve" in top.stdout


# --- serve --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_server(image_model):
    log = image_model["base"] / "served.jsonl"
    server = Server(image_model["onnx"], image_model["base"], "max_request_mb=1", f"log_predictions={log}")
    server.log = log
    yield server
    server.stop()


@pytest.fixture(scope="module")
def churn_server(churn_model):
    log = churn_model["base"] / "served.jsonl"
    server = Server(churn_model["onnx"], churn_model["base"], f"log_predictions={log}")
    server.log = log
    yield server
    server.stop()


def _upload(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]


def test_serve_classifies_uploaded_images_like_predict(image_server, image_model):
    photos = sorted(image_model["folder"].rglob("*.jpg"))[:3]
    response = httpx.post(f"{image_server.url}/predict", files=_upload(photos), timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [p["file"] for p in body["predictions"]] == [p.name for p in photos]

    meta = _meta(image_model["onnx"])
    session = ort.InferenceSession(str(image_model["onnx"]), providers=["CPUExecutionProvider"])
    _, probabilities = session.run(None, {"image": _training_pixels(photos, meta)})
    served = body["predictions"]
    assert np.allclose([p["top1_probability"] for p in served], probabilities.max(axis=1), atol=1e-6)
    assert [p["top1"] for p in served] == [meta["class_names"][i] for i in probabilities.argmax(axis=1)]
    version = hashlib.sha256(image_model["onnx"].read_bytes()).hexdigest()
    assert body["model_version"] == f"sha256:{version}"

    logged = [json.loads(line) for line in image_server.log.read_text().splitlines()]
    assert {"width", "height", "brightness", "mean_r", "mean_g", "mean_b"} <= set(logged[-1]["input"])
    assert {"predicted_class", "confidence"} == set(logged[-1]["output"])


def test_serve_metadata_and_health(image_server, image_model):
    meta = httpx.get(f"{image_server.url}/metadata").json()
    assert meta["class_names"] == ["ants", "bees"] and meta["input_size"] == [3, 32, 32]
    assert meta["model_version"] == "sha256:" + hashlib.sha256(image_model["onnx"].read_bytes()).hexdigest()
    assert meta["metric"]["name"] == "val/acc" and meta["task"] == "image_classification"
    assert httpx.get(f"{image_server.url}/health").json()["status"] == "ok"


def test_serve_image_client_mistakes_get_4xx_naming_the_problem(image_server, image_model, tmp_path):
    url = f"{image_server.url}/predict"
    text = image_model["folder"] / "notes.txt"
    response = httpx.post(url, files=_upload([image_model["photo"], text]))
    assert response.status_code == 400 and "notes.txt" in response.json()["detail"]
    reason = "not an image (format not recognised)"
    assert response.json()["rejected"] == [{"file": "notes.txt", "reason": reason}]

    truncated = httpx.post(url, files=_upload([image_model["folder"] / "truncated.jpg"]))
    assert truncated.status_code == 400 and "truncated.jpg" in truncated.json()["detail"]

    big = tmp_path / "huge.jpg"
    big.write_bytes(b"\xff" * (1024 * 1024 + 10))  # over this server's max_request_mb=1
    too_large = httpx.post(url, files=_upload([big]))
    assert too_large.status_code == 413 and "max_request_mb" in too_large.json()["detail"]

    as_json = httpx.post(url, json={"rows": []})
    assert as_json.status_code == 415 and "multipart/form-data" in as_json.json()["detail"]

    no_files = httpx.post(url, data={"note": "hello"}, files=[("other", ("", b"", "text/plain"))])
    assert no_files.status_code in (400, 422)


def test_serve_scores_json_rows_like_predict(churn_server, churn_model, tmp_path):
    raw = churn_model["raw"].head(20)
    rows = raw.to_dict("records")
    response = httpx.post(f"{churn_server.url}/predict", json={"rows": rows}, timeout=30)
    assert response.status_code == 200, response.text
    served = response.json()["predictions"]

    raw.to_csv(tmp_path / "rows.csv", index=False)
    from visiontrain.deploy.predict import predict_table
    from visiontrain.inference.onnx_model import OnnxModel

    model = OnnxModel(churn_model["onnx"])
    predicted, _ = predict_table(model, tmp_path / "rows.csv", 8, None, progress=False)
    assert served == [{"probability": p["probability"], "label": p["label"]} for p in predicted]

    typed = {**rows[0], "tenure": 12, "MonthlyCharges": 70.5, "TotalCharges": None, "SeniorCitizen": True}
    assert httpx.post(f"{churn_server.url}/predict", json={"rows": [typed]}).status_code == 200

    logged = [json.loads(line) for line in churn_server.log.read_text().splitlines()]
    assert logged[0]["input"]["customerID"] == rows[0]["customerID"] and "probability" in logged[0]["output"]

    meta = httpx.get(f"{churn_server.url}/metadata").json()
    assert meta["positive_label"] == "Yes" and meta["input_columns"]["tenure"] == "float"


def test_serve_table_client_mistakes_get_4xx_naming_the_problem(churn_server, churn_model):
    url = f"{churn_server.url}/predict"
    row = churn_model["raw"].iloc[0].to_dict()

    renamed = {("tenur" if k == "tenure" else k): v for k, v in row.items()}
    wrong = httpx.post(url, json={"rows": [row, renamed]})
    assert wrong.status_code == 422 and wrong.json()["missing"] == ["tenure"]
    assert "rows[1]" in wrong.json()["detail"] and "tenur" in wrong.json()["unexpected"]

    bad_number = httpx.post(url, json={"rows": [{**row, "MonthlyCharges": "lots"}]})
    assert bad_number.status_code == 422 and "MonthlyCharges" in bad_number.json()["detail"]

    assert httpx.post(url, content=b"tenure=3", headers={"content-type": "text/csv"}).status_code == 415
    broken = httpx.post(url, content=b'{"rows": [', headers={"content-type": "application/json"})
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["detail"]
    assert httpx.post(url, json={"data": []}).status_code == 422
    assert httpx.post(url, files=_upload([Path(__file__)])).status_code == 415


def test_serve_batches_concurrent_requests_without_errors(image_server, image_model):
    """A bounded load test: 200 single-image requests, 16 at a time, every one answered 200."""
    photo = image_model["photo"].read_bytes()
    before = httpx.get(f"{image_server.url}/health").json()

    async def load() -> list[int]:
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(base_url=image_server.url, limits=limits, timeout=60) as client:
            gate = asyncio.Semaphore(16)

            async def one() -> int:
                async with gate:
                    response = await client.post("/predict", files={"files": ("p.jpg", photo, "image/jpeg")})
                    return response.status_code

            return await asyncio.gather(*(one() for _ in range(200)))

    statuses = asyncio.run(load())
    assert statuses.count(200) == 200
    after = httpx.get(f"{image_server.url}/health").json()
    assert after["inputs"] - before["inputs"] == 200
    assert after["batches"] - before["batches"] < 200  # concurrent requests shared model calls


# --- the inference side imports no torch --------------------------------------------------------------------


def test_predict_runs_with_the_training_stack_unimportable(image_model, churn_model, tmp_path):
    for model, source in ((image_model["onnx"], image_model["folder"]), (churn_model["onnx"], None)):
        if source is None:
            source = tmp_path / "rows.csv"
            churn_model["raw"].head(30).to_csv(source, index=False)
        output = tmp_path / f"{model.parent.parent.name}.csv"
        command = [sys.executable, "-c", BLOCKED_CLI, "predict", f"model={model}", f"input={source}",
                   f"output={output}", "progress=false"]
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        assert "predicted" in result.stdout and "HEAVY MODULES: []" in result.stdout


def test_serve_runs_with_the_training_stack_unimportable(image_model, churn_model, tmp_path):
    server = Server(image_model["onnx"], tmp_path, code=BLOCKED_CLI)
    try:
        assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
        response = httpx.post(f"{server.url}/predict", files=_upload([image_model["photo"]]), timeout=30)
        assert response.status_code == 200 and response.json()["predictions"][0]["top1"] in ("ants", "bees")
    finally:
        output = server.stop()
    assert "HEAVY MODULES: []" in output, output[-3000:]

    server = Server(churn_model["onnx"], tmp_path, code=BLOCKED_CLI)
    try:
        rows = churn_model["raw"].head(2).to_dict("records")
        response = httpx.post(f"{server.url}/predict", json={"rows": rows}, timeout=30)
        assert response.status_code == 200 and len(response.json()["predictions"]) == 2
    finally:
        output = server.stop()
    assert "HEAVY MODULES: []" in output, output[-3000:]


def test_the_deploy_package_imports_nothing_from_training():
    """A static guard beside the runtime one: no deploy module, and no inference command, names the training
    stack."""
    commands = REPO / "src" / "visiontrain" / "commands"
    inference_commands = [commands / f"{name}.py" for name in ("predict", "serve", "stream", "drift")]
    for path in [*(REPO / "src" / "visiontrain" / "deploy").rglob("*.py"), *inference_commands]:
        text = path.read_text()
        for name in HEAVY:
            assert f"import {name}" not in text and f"from {name}" not in text, f"{path.name} imports {name}"


def test_the_serving_log_feeds_drift_monitoring(churn_server, churn_model, tmp_path):
    """What `serve log_predictions=...` records is what `visiontrain drift` reads: inputs and outputs."""
    from conftest import run_cli

    rows = churn_model["raw"].head(300).to_dict("records")
    for start in range(0, len(rows), 50):
        assert httpx.post(f"{churn_server.url}/predict", json={"rows": rows[start:start + 50]},
                          timeout=30).status_code == 200
    result = run_cli("drift", f"reference={churn_model['onnx']}", f"current={churn_server.log}",
                     f"output={tmp_path / 'drift'}", cwd=tmp_path)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    report = json.loads((tmp_path / "drift" / "drift.json").read_text())
    assert len(report["features"]) == 19 and {row["feature"] for row in report["outputs"]} == {
        "output: predicted_class", "output: confidence"}
    assert "logged predictions" in report["current"]
