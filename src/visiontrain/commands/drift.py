"""``visiontrain drift reference=<run dir | model.onnx> current=<table | image folder | predictions.jsonl>``.

The statistics, the comparison and the report are :mod:`visiontrain.monitoring`; this is the command: its typed
options in, the report out, and exit code ``exit_code_on_drift`` when a threshold is crossed. No torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visiontrain.config.commands import DriftOptions
from visiontrain.errors import ConfigError
from visiontrain.monitoring.compared import current_data
from visiontrain.monitoring.drift import Thresholds, compare, load_reference, write_report


def drift(options: DriftOptions, run_dir: Path) -> dict[str, Any]:
    """Compare, report, and exit ``exit_code_on_drift`` when a threshold is crossed (return when the data looks
    like the reference). ``run_dir``: where the report goes when ``output`` is unset."""
    try:
        reference, model = load_reference(options.reference)
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError("reference", str(error), "reference=outputs/<experiment>/runs/<time>") from None
    current = Path(options.current).expanduser()
    if not current.exists():
        raise ConfigError("current", f"{current} does not exist", "current=<table file, image folder or .jsonl log>")
    inputs, outputs, rejected, described = current_data(current, reference, model, options.pixel_limit)
    result = compare(reference, inputs, outputs, Thresholds(*options.drift_thresholds))
    result.update(current=described, unreadable=rejected)
    out_dir = Path(options.output).expanduser() if options.output else run_dir
    files = write_report(result, reference, inputs, outputs, out_dir)
    verdict = f"drift in {', '.join(result['drifted'])}" if result["drifted"] else "no drift"
    print(f"visiontrain drift: {verdict} ({described})\n  report: {files['report']}", flush=True)
    if result["drifted"]:
        raise SystemExit(options.exit_code_on_drift)
    return result
