"""What every notebook does first: resolve its parameters and its run folder.

One rule for every parameter: **the value papermill injected, else the environment variable,
else the default.** A notebook's ``parameters`` cell holds ``None`` for "not given", so an
injected value is always distinguishable from the default:

=============  ====================  =====================================================
parameter      environment variable  default
=============  ====================  =====================================================
PRESET         ASBSR_PRESET          ``gpu`` when CUDA is available, else ``cpu``
RUN_DIR        ASBSR_RUN_DIR         ``runs/<preset>`` beside the notebooks' project
TRAIN          ASBSR_TRAIN           ``False``: load the shipped model zoo where it has the
                                     model, train otherwise
TRAIN_DATA     ASBSR_TRAIN_DATA      ``train`` (the shipped photos); or a folder, e.g. DIV2K
=============  ====================  =====================================================

Everything a notebook writes goes under ``RUN_DIR``: ``checkpoints/``, ``figures/``,
``tables/`` and ``metrics/<notebook>.json`` (which the pipeline gathers into ``metrics.json``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from asbsr.checkpoint import atomic_save  # noqa: F401  (re-exported for notebooks' convenience)
from asbsr.config import Config, make_config
from asbsr.files import atomic_path, atomic_write_text

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _truthy(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def resolve(name: str, injected: Any, env: str, default: Any) -> Any:
    """The parameter rule: injected (not None) > environment variable > default."""
    if injected is not None:
        return injected
    if os.environ.get(env) not in (None, ""):
        text = os.environ[env]
        return _truthy(text) if isinstance(default, bool) else text
    return default


@dataclass(frozen=True)
class Session:
    """A notebook's resolved settings."""

    name: str
    config: Config
    run_dir: Path
    train: bool
    device: torch.device

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    def figure_path(self, stem: str) -> Path:
        path = self.run_dir / "figures" / f"{self.name}-{stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def table_path(self, filename: str) -> Path:
        path = self.run_dir / "tables" / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # save_figure and record return nothing, so that a cell ending with one shows no path.
    def save_figure(self, figure, stem: str) -> None:
        """Write ``figure`` as ``figures/<notebook>-<stem>.png`` (``figure_path``), atomically."""
        with atomic_path(self.figure_path(stem), suffix=".tmp.png") as temporary:
            figure.savefig(temporary, dpi=110, bbox_inches="tight")

    def record(self, **metrics: Any) -> None:
        """Merge ``metrics`` into ``metrics/<notebook>.json`` (atomically)."""
        path = self.run_dir / "metrics" / f"{self.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        current = json.loads(path.read_text()) if path.exists() else {}
        current.update(metrics)
        atomic_write_text(path, json.dumps(current, indent=2, sort_keys=True, default=float))


def start(name: str, preset: str | None = None, run_dir: str | None = None,
          train: bool | None = None, train_data: str | None = None,
          overrides: dict | None = None) -> Session:
    """Resolve a notebook's parameters (see the module docstring) and print them in one line."""
    default_preset = "gpu" if torch.cuda.is_available() else "cpu"
    preset = resolve("PRESET", preset, "ASBSR_PRESET", default_preset)
    folder = resolve("RUN_DIR", run_dir, "ASBSR_RUN_DIR", str(PROJECT_ROOT / "runs" / preset))
    train = resolve("TRAIN", train, "ASBSR_TRAIN", False)
    data = resolve("TRAIN_DATA", train_data, "ASBSR_TRAIN_DATA", "train")
    config = make_config(preset, {"data.train": data, **(overrides or {})})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    session = Session(name, config, Path(folder).resolve(), bool(train), device)
    session.run_dir.mkdir(parents=True, exist_ok=True)
    print(f"{name}: preset={preset} device={device.type} train={session.train} "
          f"data={data} run_dir={session.run_dir}")
    return session
