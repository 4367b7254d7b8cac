#!/usr/bin/env python3
"""One-command set-up and entry points, on any machine with Python 3.10+ and pip.

    python3 run.py pipeline [--preset smoke|cpu|gpu|paper] [extra pipeline args]
    python3 run.py test
    python3 run.py lab [extra JupyterLab args]     (the notebooks, interactively)

Each creates ``.venv`` beside this file if no virtual or conda environment is active, install the
project into it (once; again only when ``pyproject.toml`` changes), then run the job.

PyTorch: a plain ``torch`` requirement pulls a multi-GB CUDA build when nothing is installed. If
the machine keeps a local wheel of ``torch==2.13.0`` where pip looks (``find-links``), it is
installed first; otherwise pip resolves ``torch>=2.2`` from ``pyproject.toml`` as usual.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
LOCAL_TORCH = "torch==2.13.0"


def say(message: str) -> None:
    print(f"[run.py] {message}", flush=True)


def environment_python() -> Path:
    """The interpreter to use: an active venv/conda env, else ``.venv`` (created if missing)."""
    if os.environ.get("VIRTUAL_ENV") or os.environ.get("CONDA_PREFIX"):
        return Path(sys.executable)
    python = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not python.exists():
        say(f"creating virtual environment {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    return python


def pip(python: Path, *args: str, check: bool = True, quiet: bool = True) -> bool:
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *(["-q"] if quiet else []), *args]
    return subprocess.run(command, check=check).returncode == 0


def install(python: Path) -> None:
    """Install the project (editable) unless the stamp says this pyproject is installed."""
    stamp = python.parent.parent / ".asbsr-installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    has_torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True).returncode == 0
    if not has_torch:
        # --no-index: succeeds only when the wheel is on this machine; --no-deps: its
        # dependencies come with the project install below.
        if pip(python, "--no-index", "--no-deps", LOCAL_TORCH, check=False):
            say(f"installed the local {LOCAL_TORCH} wheel")
            pip(python, LOCAL_TORCH)
        else:
            say("no local torch wheel; pip will resolve torch>=2.2 from PyPI")
    say("installing asbsr with its notebook and test extras (about a minute)")
    pip(python, "-e", f"{ROOT}[notebooks,test]", quiet=False)  # its lines show the progress
    stamp.write_text(digest)


def run(python: Path, *args: str, env: dict | None = None) -> int:
    say(" ".join(args))
    return subprocess.run([str(python), *args], cwd=ROOT, env=env).returncode


def pytest_ok(code: int, what: str) -> bool:
    """pytest's exit code 5 means nothing was collected: a failure, not a pass."""
    if code == 5:
        say(f"{what}: no tests were collected")
    return code == 0


def worktree_state() -> str | None:
    """``git status`` of the checkout (None outside git): the tests must leave it unchanged."""
    try:
        result = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"],
                                cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return None
    return result.stdout if result.returncode == 0 else None


BROWSER_PACKAGES = ("chromium", "chromium-driver")  # Debian's browser and its WebDriver


def browser_present() -> bool:
    return bool(shutil.which("chromium") and shutil.which("chromedriver"))


def ensure_browser() -> None:
    """The browser test needs Debian's Chromium and chromedriver: installed with apt when this
    runs as root where apt exists (one retry); otherwise one line says the test will not run."""
    if browser_present():
        return
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for attempt in (1, 2):
            say(f"installing {' '.join(BROWSER_PACKAGES)} for the browser test (apt, attempt {attempt})")
            if subprocess.run(["apt-get", "update", "-qq"], env=env).returncode == 0 and subprocess.run(
                    ["apt-get", "install", "-y", "-qq", *BROWSER_PACKAGES], env=env).returncode == 0:
                return
    if not browser_present():
        say("NOT RUN: browser test (no chromium and chromedriver; on Debian: apt-get install "
            "chromium chromium-driver)" + ("; CI=true: the test run will fail" if os.environ.get("CI") == "true" else ""))


def test(python: Path) -> int:
    ensure_browser()
    before = worktree_state()
    env = dict(os.environ, ASBSR_PRESET="smoke", MPLBACKEND="Agg")
    with tempfile.TemporaryDirectory(prefix="asbsr-test-") as scratch:
        env["ASBSR_RUN_DIR"] = str(Path(scratch) / "notebook-runs")
        steps = [
            ("unit tests", ["-m", "pytest", "tests", "-q"]),
            ("notebooks", ["-m", "pytest", "-q", "--nbval-lax", "--nbval-current-env",
                           "-p", "no:cacheprovider", "notebooks"]),
        ]
        for what, args in steps:
            if not pytest_ok(run(python, *args, env=env), what):
                say(f"FAILED: {what}")
                return 1
        # The pipeline shares the notebooks' run folder, so it reuses the smoke checkpoints that
        # nbval trained (the config-keyed cache) and tests that reuse too.
        code = run(python, "-m", "asbsr.lab.pipeline", "--preset", "smoke",
                   "--run-dir", env["ASBSR_RUN_DIR"], env=env)
        if code != 0:
            say("FAILED: smoke pipeline")
            return 1
    after = worktree_state()
    if before != after:
        say("FAILED: the tests changed the work tree (git status differs):\n" + (after or ""))
        return 1
    say("all tests passed")
    return 0


def lab_command(python: Path, extra: list[str]) -> list[str]:
    """JupyterLab on ``notebooks/``, served on 127.0.0.1, its kernel this environment's Python
    (so ``asbsr`` and the widgets' extension, ``jupyterlab_widgets``, are the installed ones)."""
    root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []  # containers, CI
    return [str(python), "-m", "jupyterlab", f"--notebook-dir={ROOT / 'notebooks'}",
            "--ServerApp.ip=127.0.0.1", *root, *extra]


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("pipeline", "test", "install", "lab"):
        print(__doc__)
        return 2
    python = environment_python()
    install(python)
    if argv[0] == "install":
        return 0
    if argv[0] == "test":
        return test(python)
    if argv[0] == "lab":
        say("starting JupyterLab: open the http://127.0.0.1:8888/lab?token=... address printed below "
            "(the browser may open by itself), then 00_overview.ipynb and Run > Run All Cells; "
            "the notebooks run in this environment, at the cpu preset unless you set PRESET. "
            "Ctrl-C twice stops the server.")
        return subprocess.run(lab_command(python, argv[1:]), cwd=ROOT).returncode
    return run(python, "-m", "asbsr.lab.pipeline", *argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
