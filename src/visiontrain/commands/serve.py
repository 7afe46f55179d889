"""``visiontrain serve model=<file.onnx>``: an HTTP prediction service on onnxruntime (FastAPI + uvicorn).

``visiontrain serve registry=<dir|URL> model=<name>`` serves a registered model instead: its production version,
a candidate for ``canary_share`` of the traffic or in its ``shadow``, switching as the aliases move
(:mod:`visiontrain.deploy.rollout`).

The app (routes, batching, limits, auth, metrics) is :mod:`visiontrain.deploy.serve`; this is the command: its
typed options in, the model (or the registry's versions) opened, uvicorn run until interrupted. onnxruntime only,
never torch.
"""

from __future__ import annotations

from visiontrain.config.commands import ServeOptions
from visiontrain.deploy.access import load_token
from visiontrain.deploy.connection_deadline import deadline_protocol
from visiontrain.deploy.rollout import Rollout, open_rollout
from visiontrain.deploy.serve import create_app
from visiontrain.inference.onnx_model import IMAGE, OnnxModel, open_model


def serve(options: ServeOptions) -> None:
    """Load the model (or the registry's versions), then run uvicorn until interrupted."""
    import uvicorn

    token, token_source = load_token(options.token_file)
    if options.registry is None:
        model = open_model(options.model, threads=options.threads, spin=options.spin, providers=options.providers)
        source: OnnxModel | Rollout = model
        serving = f"{model.path} ({_kind(model)}, sha256:{model.version[:12]})"
    else:
        source = open_rollout(options)
        model = source.routing.production.model
        serving = f"{options.model} from registry {source.registry.where} ({_kind(model)})"
    print(f"visiontrain serve: {serving} on http://{options.host}:{options.port}\n"
          f"  POST /predict   GET /health   GET /metadata   GET /metrics"
          f"{'   GET /docs' if options.docs else ''}   "
          f"(max_batch_size={options.max_batch_size}, max_wait_ms={options.max_wait_ms:g})\n"
          f"  authentication: {'bearer token from ' if token else ''}{token_source}\n"
          f"  {model.providers_line}", flush=True)
    if isinstance(source, Rollout):
        print(_routing_lines(source, options), flush=True)
    if options.log_predictions:
        dropped = f" (without {', '.join(options.log_drop_columns)})" if options.log_drop_columns else ""
        print(f"  log_predictions: raw inputs and outputs to {options.log_predictions}{dropped}", flush=True)
    if options.drift_window:
        print(f"  drift_window: inputs compared with the model's reference every {options.drift_window:,} "
              "scored (a warning and the visiontrain_drift_* metrics when one drifts)", flush=True)
    uvicorn.run(create_app(source, options, token), host=options.host, port=options.port,
                http=deadline_protocol(options.read_timeout_s), timeout_keep_alive=options.keep_alive_s,
                log_level=options.log_level, access_log=options.access_log)


def _kind(model: OnnxModel) -> str:
    return "image classifier" if model.kind == IMAGE else "table model"


def _routing_lines(rollout: Rollout, options: ServeOptions) -> str:
    """The banner's account of the registry: the versions served and how requests are split."""
    routing = rollout.routing
    production, candidate = routing.production, routing.candidate
    lines = [f"  production: {production.label} (sha256:{production.sha256[:12]}, alias revision "
             f"{routing.revision})"]
    if candidate is None:
        lines.append("  candidate: none (production answers every request)"
                     + (f"; canary_share={options.canary_share:g} and shadow wait for a candidate alias"
                        if options.canary_share or options.shadow else ""))
    else:
        share = f"{options.canary_share:.0%} of " + ("users" if routing.sticky else "requests")
        split = f"answers {share}" + (f" (sticky_key={routing.sticky})" if routing.sticky else "") \
            if options.canary_share else "answers no request (canary_share=0)"
        shadow = "; shadows production's answers (logged, never returned)" if options.shadow else ""
        lines.append(f"  candidate: {candidate.label} (sha256:{candidate.sha256[:12]}) {split}{shadow}")
    lines.append(f"  aliases followed every {options.registry_poll_s:g} s: a move loads the new version, then "
                 "switches; requests in flight finish on their version")
    return "\n".join(lines)
