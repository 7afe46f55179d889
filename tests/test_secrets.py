"""A data engineer's story: the churn table lives in a database behind a password, and W&B keys go wrong.

The password never reaches a file of the run, a checkpoint, a log line, W&B or an error; it comes from an
environment variable (``data.source_env=DB_URL`` or ``data.source='${oc.env:DB_URL}'``). A bad W&B key or no
network turns the run offline with one warning, before training, instead of a traceback or a long hang.
"""

from __future__ import annotations

import http.server
import json
import socket
import sqlite3
import threading
from pathlib import Path

import pytest
import torch
import yaml

from conftest import compose_train, run_cli
from visiontrain.commands.validation import validate_train_config
from visiontrain.core.redaction import config_without_secrets, redact_text, redact_url, secrets_in_url
from visiontrain.errors import ConfigError
from wandb_records import read_records

PASSWORD = "hunter2-Zq9"  # distinctive: no path or library text contains it by chance
CHURN = ["experiment=churn", "model=logistic_regression", "trainer.enable_progress_bar=false",
         "trainer.max_epochs=1"]


def churn_database(path: Path, rows: int = 600) -> Path:
    """A real SQLite file holding a generated churn table as ``customers``."""
    from visiontrain.tabular.builtin import generate_churn_table

    with sqlite3.connect(path) as connection:
        generate_churn_table(rows=rows, seed=3).to_sql("customers", connection, index=False)
    return path


def quiet_env(home: Path, **extra: str | None) -> dict[str, str | None]:
    """No W&B credentials or mode from the developer's machine leak into the run."""
    return {"HOME": str(home), "WANDB_API_KEY": None, "WANDB_MODE": None, "WANDB_RUN_ID": None,
            "WANDB_BASE_URL": None, "HTTPS_PROXY": None, "https_proxy": None,
            "VISIONTRAIN_CACHE_DIR": str(home / "cache"), **extra}


def files_holding(root: Path, secret: str) -> list[str]:
    """Every file under ``root`` (checkpoints and W&B files read as bytes) that contains ``secret``."""
    return [str(p) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


# --- redaction itself --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "shown"), [
    (f"sqlite:///x.db?password={PASSWORD}", "sqlite:///x.db?password=***"),
    (f"postgresql://u:{PASSWORD}@host/db", "postgresql://u:***@host/db"),
    (f"postgresql+psycopg://u:{PASSWORD}@h:5432/db?sslmode=require",
     "postgresql+psycopg://u:***@h:5432/db?sslmode=require"),
    (f"mysql://u@h/db?access_token={PASSWORD}&charset=utf8", "mysql://u@h/db?access_token=***&charset=utf8"),
    (f"https://h/data.csv?api-key={PASSWORD}", "https://h/data.csv?api-key=***"),
    ("sqlite:///churn.db", "sqlite:///churn.db"),  # nothing to hide: unchanged
    ("/data/churn.csv", "/data/churn.csv"),
])
def test_a_url_is_shown_without_its_password_or_token(url, shown):
    assert redact_url(url) == shown
    assert bool(secrets_in_url(url)) == (shown != url)


def test_a_message_loses_every_url_secret_and_a_driver_echo_of_the_password():
    message = f"connect to postgresql://u:{PASSWORD}@db:5432/x: failed (password {PASSWORD!r} rejected)."
    assert redact_text(message, PASSWORD) == \
        "connect to postgresql://u:***@db:5432/x: failed (password '***' rejected)."


def test_a_read_error_shows_the_database_without_its_query_password(tmp_path):
    from visiontrain.errors import DataError
    from visiontrain.tabular.ingest import read_table

    missing = tmp_path / "missing.db"
    with pytest.raises(DataError) as raised:
        read_table(f"sqlite:///{missing}?password={PASSWORD}", table="customers")

    assert str(raised.value) == (f"sqlite:///{missing}?password=***: the SQLite database file {missing} does not "
                                 "exist; check data.source.")


def test_a_resolved_config_keeps_the_interpolation_where_the_secret_came_from(monkeypatch, tmp_path):
    monkeypatch.setenv("DB_URL", f"sqlite:///x.db?password={PASSWORD}")
    cfg = compose_train("experiment=churn", "data.source=${oc.env:DB_URL}", f"paths.run_dir={tmp_path}")

    stored = config_without_secrets(cfg)

    assert stored["data"]["source"] == "${oc.env:DB_URL}"  # evaluate/export of the checkpoint read DB_URL again
    assert PASSWORD not in json.dumps(stored)
    assert stored["paths"]["run_dir"] == str(tmp_path)  # everything else resolved as before


# --- the command line and the config refuse a secret -------------------------------------------------------

@pytest.mark.parametrize("source", [f"'sqlite:///x.db?password={PASSWORD}'", f"postgresql://u:{PASSWORD}@host/db"])
def test_a_password_on_the_command_line_is_refused_before_hydra_stores_it(source, tmp_path):
    result = run_cli("train", *CHURN, f"data.source={source}", "data.table=customers", cwd=tmp_path, timeout=120)

    assert result.returncode == 2, result.stderr
    assert "config error: config key `data.source`: holds a URL with a password or token" in result.stderr
    assert "data.source_env=DB_URL" in result.stderr and "${oc.env:DB_URL}" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists()  # no .hydra/overrides.yaml with the password in it


def test_a_password_written_into_a_config_is_refused_before_it_is_used(tmp_path):
    cfg = compose_train("experiment=churn", f"data.source=postgresql://u:{PASSWORD}@host/db",
                        "data.table=customers", f"paths.run_dir={tmp_path}")

    with pytest.raises(ConfigError) as raised:
        validate_train_config(cfg)

    assert raised.value.key == "data.source" and "${oc.env:DB_URL}" in raised.value.fix
    assert PASSWORD not in str(raised.value)


# --- real runs with the URL in an environment variable -----------------------------------------------------

def test_a_run_from_a_password_protected_database_writes_the_password_nowhere(tmp_path):
    """Real SQLite behind a URL with a password, given as ${oc.env:DB_URL}; W&B offline; CSV logger."""
    database = churn_database(tmp_path / "churn.db")
    run_dir = tmp_path / "run"
    env = quiet_env(tmp_path, DB_URL=f"sqlite:///{database}?password={PASSWORD}")
    result = run_cli("train", *CHURN, "data.source=${oc.env:DB_URL}", "data.table=customers", "logger=wandb",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env, timeout=300)

    assert result.returncode == 0, result.stderr[-3000:]
    assert PASSWORD not in result.stdout + result.stderr
    assert files_holding(run_dir, PASSWORD) == []  # .hydra/*, csv/hparams.yaml, checkpoints, wandb/, reports
    assert {".hydra", "checkpoints", "csv", "wandb", "summary.json"} <= {p.name for p in run_dir.iterdir()}

    hydra_config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert hydra_config["data"]["source"] == "${oc.env:DB_URL}"  # Hydra stores the interpolation, unresolved
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["data"]["source"] == f"sqlite:///{database}?password=***"
    assert summary["data"]["rows_in"] == 600
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["run_config"]["data"]["source"] == "${oc.env:DB_URL}"
    config_records = [r.config for r in read_records(run_dir) if r.WhichOneof("record_type") == "config"]
    assert config_records and all(PASSWORD not in str(record) for record in config_records)


def test_an_unreachable_server_fails_with_the_password_masked_in_the_error_and_in_every_file(tmp_path):
    """data.source_env names the variable; no postgres (driver or server) exists here, so the read fails."""
    run_dir = tmp_path / "run"
    env = quiet_env(tmp_path, DB_URL=f"postgresql://u:{PASSWORD}@127.0.0.1:9/db")
    result = run_cli("train", *CHURN, "data.source_env=DB_URL", "data.table=customers",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env, timeout=300)

    assert result.returncode == 2, result.stderr[-3000:]
    assert "visiontrain: data error: postgresql://u:***@127.0.0.1:9/db:" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert files_holding(run_dir, PASSWORD) == []
    assert yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["data"]["source_env"] == "DB_URL"


def test_source_env_reads_the_table_named_by_the_variable(monkeypatch, tmp_path):
    from visiontrain.tabular.loading import load_clean_table

    database = churn_database(tmp_path / "churn.db", rows=200)
    monkeypatch.setenv("CHURN_DB", f"sqlite:///{database}?password={PASSWORD}")
    cfg = compose_train("experiment=churn", "data.source_env=CHURN_DB", "data.table=customers",
                        f"paths.run_dir={tmp_path}")
    validate_train_config(cfg)

    cleaned = load_clean_table(cfg.data).cleaned

    assert cleaned.report["rows_in"] == 200 == cleaned.report["rows_kept"] + cleaned.report["rows_rejected"]


# --- W&B: a bad key or no network falls back to offline, once, before training -----------------------------

class Unauthorized(http.server.BaseHTTPRequestHandler):
    """A W&B server that rejects every key."""

    def _reply(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"errors": [{"message": "user is not logged in"}]}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _reply

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def silent_server():
    """Accepts every connection and never answers: a proxy or firewall that swallows traffic."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    for connection in held:
        connection.close()
    listener.close()


@pytest.fixture()
def rejecting_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unauthorized)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


WELL_FORMED_KEY = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(("wandb_env", "reason"), [
    ({"WANDB_API_KEY": "not-a-key"}, "WANDB_API_KEY is not a W&B API key (API key must have 40+ characters"),
    ({"WANDB_API_KEY": WELL_FORMED_KEY, "WANDB_BASE_URL": "http://127.0.0.1:9"},
     "the W&B server 127.0.0.1:9 cannot be reached"),
    pytest.param({"WANDB_API_KEY": WELL_FORMED_KEY, "WANDB_BASE_URL": "rejecting"}, "W&B refused the online run",
                 marks=pytest.mark.slow),
    pytest.param({"WANDB_API_KEY": WELL_FORMED_KEY, "WANDB_BASE_URL": "silent"}, "W&B refused the online run",
                 marks=pytest.mark.slow),
], ids=["malformed key", "no network", "key rejected by the server", "server that never answers"])
def test_wandb_falls_back_to_offline_with_one_warning(wandb_env, reason, tmp_path, request):
    if wandb_env.get("WANDB_BASE_URL") in ("rejecting", "silent"):
        server = request.getfixturevalue(f"{wandb_env['WANDB_BASE_URL']}_server")
        wandb_env = {**wandb_env, "WANDB_BASE_URL": server}
    run_dir = tmp_path / "run"
    # the timeout is a hang guard: wandb's own retry loop would take 90 s before failing (ours: 3 s probe, 20 s init)
    result = run_cli("train", *CHURN, "logger=wandb", f"hydra.run.dir={run_dir}", cwd=tmp_path,
                     env=quiet_env(tmp_path, **wandb_env), timeout=100)

    output = result.stdout + result.stderr
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in output
    warnings = [line for line in output.splitlines() if "logging offline instead" in line]
    assert len(warnings) == 1 and reason in warnings[0], warnings
    assert wandb_env["WANDB_API_KEY"] not in output
    records = read_records(run_dir)  # the offline run exists ...
    run_id = (run_dir / "wandb_run_id").read_text().strip()
    assert [r.run.run_id for r in records if r.WhichOneof("record_type") == "run"][0] == run_id
    assert [r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit"] == [0]  # ... and finished
    assert (run_dir / "summary.json").is_file()
