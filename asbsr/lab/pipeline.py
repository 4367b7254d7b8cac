"""Run the notebooks in order with papermill into one run folder.

    python -m asbsr.lab.pipeline [--preset cpu] [--run-dir runs/cpu-20261126-0930] [--train]
                             [--train-data /path/to/DIV2K_train_HR] [--notebooks DIR]

The run folder receives the executed notebooks (``notebooks/``), ``figures/*.png``,
``tables/*.csv|md``, ``checkpoints/``, ``metrics.json`` (the run's settings, each notebook's
wall time and status, and every notebook's recorded results) and ``report.html``, an index of
the executed notebooks as HTML pages (``report/``) beside those numbers. A failing notebook stops the run
with its name and the failing cell's index, and a non-zero exit; the executed copies of the
notebooks that ran (the failing one included) are kept.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import torch

from asbsr.config import PRESETS
from asbsr.files import atomic_write_text
from asbsr.lab.notebook import PROJECT_ROOT
from asbsr.lab.report import write_report

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
# The kernel's own log at ERROR: ipykernel warns on every start that its TCP sockets are not
# encrypted, which does not apply to a kernel that listens on 127.0.0.1 for one notebook and
# exits. Errors and everything the cells print are unaffected.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]
SCHEMA_NAME = "asbsr-metrics-v1"

# What metrics.json must look like (a JSON Schema, checked by the tests).
METRICS_SCHEMA = {
    "type": "object",
    "required": ["schema", "preset", "device", "torch", "python", "started", "finished", "status",
                 "notebooks", "results"],
    "properties": {
        "schema": {"const": SCHEMA_NAME},
        "preset": {"enum": list(PRESETS)},
        "device": {"type": "string"},
        "torch": {"type": "string"},
        "python": {"type": "string"},
        "started": {"type": "string"},
        "finished": {"type": "string"},
        "status": {"enum": ["ok", "failed", "interrupted"]},
        "train": {"type": "boolean"},
        "notebooks": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["notebook", "seconds", "status"],
                "properties": {
                    "notebook": {"type": "string"},
                    "seconds": {"type": "number", "minimum": 0},
                    "status": {"enum": ["ok", "failed", "interrupted"]},
                    "error": {"type": "string"},
                },
            },
        },
        "results": {"type": "object", "additionalProperties": {"type": "object"}},
    },
}


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def _write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True))


def _failure_message(notebook: str, error: Exception) -> str:
    """Name the notebook and the failing cell (papermill's cell index counts every cell from 0,
    the injected-parameters cell included)."""
    cell = getattr(error, "cell_index", None)
    ename, evalue = getattr(error, "ename", type(error).__name__), getattr(error, "evalue", str(error))
    where = f"cell {cell}" if cell is not None else "before any cell ran"
    return f"{notebook} failed at {where}: {ename}: {str(evalue).strip().splitlines()[-1] if str(evalue).strip() else ''}"


def run_pipeline(preset: str, run_dir: Path, train: bool = False, train_data: str | None = None,
                 notebooks: Path = NOTEBOOK_DIR, kernel: str = "python3") -> int:
    import papermill  # imported here: the package itself does not need Jupyter

    paths = sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        print(f"no notebooks (NN_name.ipynb) found in {notebooks}", file=sys.stderr)
        return 2
    run_dir = run_dir.resolve()
    (run_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    summary = {
        "schema": SCHEMA_NAME, "preset": preset, "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__, "python": platform.python_version(), "train": train,
        "started": _now(), "finished": "", "status": "ok", "notebooks": [], "results": {},
    }
    parameters = {"PRESET": preset, "RUN_DIR": str(run_dir), "TRAIN": train}
    if train_data:
        parameters["TRAIN_DATA"] = train_data
    print(f"pipeline: preset={preset} device={device} run_dir={run_dir}", flush=True)
    code = 0
    for path in paths:
        output = run_dir / "notebooks" / path.name
        started = time.perf_counter()
        entry = {"notebook": path.name, "seconds": 0.0, "status": "ok"}
        try:
            papermill.execute_notebook(str(path), str(output), parameters=parameters,
                                       kernel_name=kernel, cwd=str(path.parent), progress_bar=False,
                                       extra_arguments=KERNEL_ARGUMENTS)
        except KeyboardInterrupt:
            entry["status"] = "interrupted"
            entry["error"] = f"{path.name} was interrupted (Ctrl-C)"
            code = 130
        except Exception as error:  # papermill raises PapermillExecutionError on a cell error
            entry["status"] = "failed"
            entry["error"] = _failure_message(path.name, error)
            code = 1
        entry["seconds"] = round(time.perf_counter() - started, 1)
        summary["notebooks"].append(entry)
        print(f"  {path.name:<40} {entry['seconds']:7.1f} s  {entry['status']}", flush=True)
        if code:
            print(f"pipeline stopped: {entry['error']}", file=sys.stderr, flush=True)
            break
    for metrics in sorted((run_dir / "metrics").glob("*.json")):
        summary["results"][metrics.stem] = json.loads(metrics.read_text())
    summary["finished"] = _now()
    summary["status"] = {0: "ok", 130: "interrupted"}.get(code, "failed")
    _write_json(run_dir / "metrics.json", summary)
    total = sum(entry["seconds"] for entry in summary["notebooks"])
    word = {0: "done", 130: "interrupted"}.get(code, "FAILED")
    print(f"pipeline {word} in {total:.0f} s -> {run_dir / 'metrics.json'}", flush=True)
    try:
        report = write_report(run_dir)
    except Exception as error:  # the run's results are written; a report problem must not hide them
        print(f"no report.html: {type(error).__name__}: {error}", file=sys.stderr)
    else:
        print(f"report: {report}  (open it in a browser)")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asbsr pipeline", description=__doc__.split("\n\n")[0])
    default = "gpu" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--preset", choices=PRESETS, default=default,
                        help=f"sizes and step counts (default here: {default})")
    parser.add_argument("--run-dir", type=Path, help="output folder (default runs/<preset>-<time>)")
    parser.add_argument("--train", action="store_true",
                        help="train every model instead of loading the shipped zoo")
    parser.add_argument("--train-data", help="folder of HR training images (default: shipped photos)")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOK_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = args.run_dir or PROJECT_ROOT / "runs" / f"{args.preset}-{stamp}"
    return run_pipeline(args.preset, run_dir, args.train, args.train_data, args.notebooks)


if __name__ == "__main__":
    sys.exit(main())
