"""``visiontrain serve model=<file.onnx>``: an HTTP prediction service on onnxruntime (FastAPI + uvicorn).

The app (routes, batching, limits, auth, metrics) is :mod:`visiontrain.deploy.serve`; this is the command: its
typed options in, the model opened, uvicorn run until interrupted. onnxruntime only, never torch.
"""

from __future__ import annotations

from visiontrain.config.commands import ServeOptions
from visiontrain.deploy.access import load_token
from visiontrain.deploy.connection_deadline import deadline_protocol
from visiontrain.deploy.serve import create_app
from visiontrain.inference.onnx_model import IMAGE, open_model


def serve(options: ServeOptions) -> None:
    """Load the model, then run uvicorn until interrupted."""
    import uvicorn

    token, token_source = load_token(options.token_file)
    model = open_model(options.model, threads=options.threads, spin=options.spin, providers=options.providers)
    kind = "image classifier" if model.kind == IMAGE else "table model"
    print(f"visiontrain serve: {model.path} ({kind}, sha256:{model.version[:12]}) "
          f"on http://{options.host}:{options.port}\n"
          f"  POST /predict   GET /health   GET /metadata   GET /metrics"
          f"{'   GET /docs' if options.docs else ''}   "
          f"(max_batch_size={options.max_batch_size}, max_wait_ms={options.max_wait_ms:g})\n"
          f"  authentication: {'bearer token from ' if token else ''}{token_source}\n"
          f"  {model.providers_line}", flush=True)
    if options.log_predictions:
        dropped = f" (without {', '.join(options.log_drop_columns)})" if options.log_drop_columns else ""
        print(f"  log_predictions: raw inputs and outputs to {options.log_predictions}{dropped}", flush=True)
    if options.drift_window:
        print(f"  drift_window: inputs compared with the model's reference every {options.drift_window:,} "
              "scored (a warning and the visiontrain_drift_* metrics when one drifts)", flush=True)
    uvicorn.run(create_app(model, options, token), host=options.host, port=options.port,
                http=deadline_protocol(options.read_timeout_s), timeout_keep_alive=options.keep_alive_s,
                log_level=options.log_level, access_log=options.access_log)
