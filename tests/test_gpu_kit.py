"""The offline GPU kit: scripts/gpu_check.sh rehearsed on the CPU, and the wheel list of
scripts/make_wheelhouse.sh checked against the pipeline's imports (no network: the list is
read from the script and the requirements from the metadata installed here)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
GPU_CHECK = ROOT / "scripts" / "gpu_check.sh"
WHEELHOUSE = ROOT / "scripts" / "make_wheelhouse.sh"
# The device machine: CPython 3.12 on Linux x86-64.
DEVICE_ENVIRONMENT = {"python_version": "3.12", "python_full_version": "3.12.3",
                      "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                      "implementation_name": "cpython", "platform_python_implementation": "CPython",
                      "platform_machine": "x86_64", "extra": ""}
PHASE_NAMES = {1: "wheels and Jupyter kernel", 2: "smoke", 3: "pipeline", 4: "perf"}


def run_check(out: Path, **env) -> subprocess.CompletedProcess:
    environment = dict(os.environ, OUT=str(out), PYTHON=sys.executable, **env)
    environment.pop("PYTHONPATH", None)
    # ~30 s on a quiet 2-core machine, ~60 s at a load average of 5; the limit is generous.
    return subprocess.run(["bash", str(GPU_CHECK)], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=400)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check_out")
    return run_check(out, GPU_CHECK_DRY_RUN="1"), out


def test_dry_run_passes_every_phase(dry_run):
    done, _ = dry_run
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    for number, name in PHASE_NAMES.items():
        assert re.search(rf"^== phase {number}: {re.escape(name)}.*$", done.stdout, re.M)
        assert re.search(rf"^== phase {number}: {re.escape(name)}.* ok \(\d+s\)$", done.stdout, re.M), \
            f"phase {number} did not end ok"
    assert re.search(r"^== gpu_check ok \(\d+s\)$", done.stdout, re.M)


def test_dry_run_returns_what_the_device_tool_can_fetch(dry_run):
    done, out = dry_run
    files = sorted(p.name for p in out.iterdir())
    assert files == ["gpu_check.log", "notebooks.tar.gz", "perf.json", "run.tar.gz", "smoke.json"]
    # What the kit leaves to copy back: at most 8 plain files of at most 16 MiB, simply named.
    assert all(p.is_file() and p.stat().st_size < 16 * 2 ** 20 for p in out.iterdir())
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", name) for name in files)
    assert "== phase 4" in (out / "gpu_check.log").read_text()

    smoke = json.loads((out / "smoke.json").read_text())
    assert smoke["bf16_sinusoid_dtypes"] == ["torch.float32"]
    assert smoke["bf16_mlp_dtype"] == "torch.bfloat16"

    with tarfile.open(out / "run.tar.gz") as archive:
        names = archive.getnames()
        summary = json.load(archive.extractfile("metrics.json"))
    assert "figures/00_gpu_check-line.png" in names and "tables/check.md" in names
    assert summary["status"] == "ok" and summary["notebooks"][0]["notebook"] == "00_gpu_check.ipynb"
    assert summary["results"]["00_gpu_check"]["preset"] == "smoke"
    with tarfile.open(out / "notebooks.tar.gz") as archive:
        assert "notebooks/00_gpu_check.ipynb" in archive.getnames()

    perf = json.loads((out / "perf.json").read_text())
    assert [row["stage"] for row in perf["training"]] == [1, 2]
    assert all(row["it_per_s"] > 0 for row in perf["training"])
    assert perf["inference"][0]["out"] == "96x96"
    variants = [row["variant"] for row in perf["sweep"]]
    assert variants[0] == "default" and "inference_mode" in variants and "bf16 autocast" in variants


def test_without_a_gpu_the_real_check_fails_loudly(tmp_path):
    pytest.importorskip("torch")
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    done = run_check(tmp_path, GPU_CHECK_PHASES="2")
    assert done.returncode != 0
    assert re.search(r"^== phase 2: smoke.* FAILED \(smoke, \d+s\)$", done.stdout, re.M)
    assert "sees no GPU" in done.stdout
    assert "== gpu_check: stopping" in done.stdout


# ------------------------------------------------------------------- gpu_train.sh

GPU_TRAIN = ROOT / "scripts" / "gpu_train.sh"


def test_gpu_train_dry_run_fits_the_budget_and_returns_a_mergeable_zoo(tmp_path):
    out = tmp_path / "out"
    # Given rates, not the measured ones, so that the cut is the same on a fast or a busy machine.
    environment = dict(os.environ, OUT=str(out), PYTHON=sys.executable, GPU_TRAIN_DRY_RUN="1",
                       GPU_TRAIN_BUDGET="4", GPU_TRAIN_RATES="1=20,2=12")
    environment.pop("PYTHONPATH", None)
    # ~45 s on a quiet 2-core machine
    done = subprocess.run(["bash", str(GPU_TRAIN)], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    for number, name in ((1, "training rates"), (2, "train smoke-preset ours"), (3, "inference speed")):
        assert re.search(rf"^== step {number}: {name}.* ok \(\d+s\)$", done.stdout, re.M), number
    # the smoke preset's 30 + 60 steps at 20 / 12 it/s take 1.5 + 5 = 6.5 s; in 4 s both are cut
    # by 4 / 6.5: to 18.5 and 36.9 steps, rounded down to multiples of 10 and at least 10
    assert "gpu_train: step 2 plans with GPU_TRAIN_RATES=1=20,2=12 it/s" in done.stdout
    cut = re.search(r"^overrides: stage1.steps=(\d+) stage2.steps=(\d+)$", done.stdout, re.M)
    assert cut and (int(cut[1]), int(cut[2])) == (10, 30)
    # what comes back: at most 8 plain files, at most 2 folders down, simply named
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files[:3] == ["gpu_train.log", "perf_infer.json", "perf_train.json"]
    assert len(files) <= 8 and "zoo/MANIFEST.json" in files and "zoo/ours-smoke-s0.pt" in files
    assert all(re.fullmatch(r"([A-Za-z0-9._-]+/)?[A-Za-z0-9._-]+", name) for name in files)
    # merged into another zoo, the model is found by its config and loads
    import torch

    from asbsr.config import make_config, method_config
    from asbsr.inference import upscale
    from asbsr.lab.zoo import find_model, load_model, merge_zoo, read_manifest

    entry = read_manifest(out / "zoo")["models"]["ours-smoke-s0"]
    assert entry["steps"] == int(cut[2]) and "--set stage1.steps=" in entry["command"]
    assert merge_zoo(out / "zoo", tmp_path / "zoo")[-1] == "ours-smoke-s0"
    config = make_config("smoke", {"stage1.steps": int(cut[1]), "stage2.steps": int(cut[2])})
    found = find_model(method_config(config, "ours"), tmp_path / "zoo")
    model, _ = load_model(found)
    assert upscale(model, torch.rand(1, 3, 24, 24), scale=2).shape == (1, 3, 48, 48)


# ------------------------------------------------------------------- the wheel list

def script_array(name: str) -> list[str]:
    """The entries of a bash array ``NAME=(`` ... ``)`` of make_wheelhouse.sh (the closing
    parenthesis on a line of its own), comments dropped."""
    text = WHEELHOUSE.read_text()
    body = re.search(rf"^{name}=\((.*?)^\)", text, re.S | re.M).group(1)
    return [word for line in body.splitlines() for word in line.split("#", 1)[0].split()]


def test_list_option_prints_the_array():
    listed = subprocess.run(["bash", str(WHEELHOUSE), "--list"], capture_output=True, text=True,
                            check=True).stdout.split()
    assert listed == script_array("WHEELS")


def test_wheel_list_covers_the_pipeline():
    carried = {canonicalize_name(n) for n in script_array("WHEELS")}
    provided = {canonicalize_name(n) for n in script_array("PROVIDED")}
    assert len(carried) == len(script_array("WHEELS")), "a package is listed twice"
    assert not carried & provided, "a carried copy would shadow the image's own package"
    optional = {canonicalize_name(n) for n in script_array("RUNTIME_OPTIONAL")}
    assert optional < carried and not optional & {"papermill", "ipykernel", "pyzmq", "pywavelets"}
    for needed in ("papermill", "nbclient", "nbformat", "jupyter-client", "ipykernel", "pyzmq",
                   "tornado", "traitlets", "pywavelets", "ipywidgets"):
        assert needed in carried
    # The distributions behind the modules that the pipeline, its kernels and the notebooks import.
    owners = metadata.packages_distributions()
    for module in ("papermill", "nbclient", "nbformat", "jupyter_client", "ipykernel", "zmq",
                   "pywt", "ipywidgets"):
        assert {canonicalize_name(d) for d in owners[module]} <= carried, module


def test_wheel_list_is_closed_under_requirements():
    """Every requirement (for CPython 3.12 on Linux) of every carried package, as installed
    here, is carried or on the device image."""
    carried = {canonicalize_name(n) for n in script_array("WHEELS")}
    provided = {canonicalize_name(n) for n in script_array("PROVIDED")}
    missing = []
    for name in sorted(carried):
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            pytest.skip(f"{name} is not installed here, so its requirements cannot be read offline")
        for text in requirements:
            requirement = Requirement(text)
            marker = requirement.marker or Marker("python_version >= '3'")
            if not marker.evaluate(DEVICE_ENVIRONMENT):
                continue
            if canonicalize_name(requirement.name) not in carried | provided:
                missing.append(f"{name} -> {requirement}")
    assert not missing
