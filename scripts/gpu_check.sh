#!/usr/bin/env bash
# The GPU check of asbsr, for a GPU machine without network access and without a Jupyter stack
# (e.g. an H100 / H200 image with Python 3.12 and torch). Four phases, each announced by a
# `== phase N: ...` line and closed by `== phase N: ... ok (Xs)`, `FAILED (...)` or `skipped (...)`:
#
#   1  wheels: install .whl/*.whl into $SITE (no index, no deps), put the repository root and
#      $SITE on PYTHONPATH, import the Jupyter stack, check the wheels' requirements against
#      what is installed, make sure a `python3` kernelspec exists, and run one cell in a kernel
#   2  smoke (~60 s): CUDA visible, one training step of each stage at the gpu preset's size,
#      one whole-image inference, bf16 autocast with the sinusoid kept in fp32
#   3  pipeline: `python3 -m asbsr.lab.pipeline --preset gpu --run-dir $RUN_DIR` under
#      `timeout $GPU_CHECK_PIPELINE_TIMEOUT` (300 s); the run folder is packed into $OUT
#   4  perf: benchmarks/perf.py on the GPU -> $OUT/perf.json
#
# Beforehand, on a machine with network access:
#   bash scripts/make_wheelhouse.sh        # .whl/, ~21 MiB, ignored through .git/info/exclude
#   (or --lean, ~9 MiB: a copy of the working tree plus the wheels of 64 MiB at most is the
#   budget this kit keeps to; check the tree with `git ls-files -z | xargs -0 du -cb | tail -1`
#   and use --lean when the full wheelhouse would not fit beside it)
#
# Then on the GPU machine, from the repository root (with .whl/ copied along; allow 10 minutes):
#   bash scripts/gpu_check.sh
# Phase 3 loads what the zoo holds at the gpu preset and trains the rest (so far the zoo has only
# ours-gpu-s0; the rest would take ~55 minutes on an H100, README), so with today's zoo it stops
# at its limit and packs what it finished; GPU_CHECK_PIPELINE_ARGS="--preset smoke" checks the
# papermill machinery alone. Training speed and the gpu model itself: scripts/gpu_train.sh.
# Expected about 8 minutes: phase 1 ~20 s, phase 2 ~30-60 s, phase 3 up to 300 s, phase 4 up to
# 180 s (their limits add up to about 10 minutes, and the run folder is packed right after
# phase 3, so a call cut off at 600 s still brings back phases 1-3 and the log). With the
# machine's start, plan about 10 minutes of GPU time.
# To rerun only some phases (phase 1 is needed before 3, as every machine starts bare), e.g.
# after fixing the pipeline:
#   GPU_CHECK_PHASES="1 3" GPU_CHECK_PIPELINE_TIMEOUT=240 bash scripts/gpu_check.sh
# What it leaves in $OUT (at most 8 files, each below 16 MiB, no sub-folders: easy to copy back):
#   gpu_check.log       everything printed
#   smoke.json          phase 2's readings
#   run.tar.gz          phase 3: metrics.json, metrics/, figures/, tables/
#   notebooks.tar.gz    phase 3: the executed notebooks
#   checkpoints.tar.gz  phase 3: the run's checkpoints, only when they pack below 15 MiB
#   perf.json           phase 4
#
# Environment:
#   GPU_CHECK_DRY_RUN=1          CPU rehearsal (tests/test_gpu_kit.py runs it): phase 1 skips the
#                                install when the stack imports already; phase 2 at the smoke
#                                size on the CPU; phase 3 runs one generated notebook through the
#                                same pipeline and packing; phase 4 at smoke size
#   GPU_CHECK_PHASES="1 2 3 4"   which phases to run
#   GPU_CHECK_PIPELINE_ARGS      arguments for asbsr.lab.pipeline (default "--preset gpu"; e.g.
#                                "--preset gpu --train" to train instead of loading the zoo)
#   GPU_CHECK_PIPELINE_TIMEOUT   seconds for phase 3 (default 300)
#   GPU_CHECK_PERF_TIMEOUT       seconds for phase 4 (default 180)
#   GPU_CHECK_PERF_ARGS          arguments for perf.py (default: none on a GPU; a smoke set
#                                in a dry run)
#   OUT                          where results go (default: a new temp folder)
#   PYTHON                       the interpreter (default python3: the device's torch venv)
#   SITE                         where the wheels go (default /tmp/site; a temp folder in a dry run)
#   RUN_DIR                      the pipeline's run folder (default: a temp folder, removed at
#                                the end once packed into $OUT)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DRY="${GPU_CHECK_DRY_RUN:-0}"
PHASES=" ${GPU_CHECK_PHASES:-1 2 3 4} "
PIPELINE_TIMEOUT="${GPU_CHECK_PIPELINE_TIMEOUT:-300}"
PERF_TIMEOUT="${GPU_CHECK_PERF_TIMEOUT:-180}"
PYTHON="${PYTHON:-python3}"
OUT="${OUT:-$(mktemp -d /tmp/gpu_check_out.XXXXXX)}"
WORK="$(mktemp -d /tmp/gpu_check_work.XXXXXX)"
if [[ "$DRY" == 1 ]]; then SITE="${SITE:-$WORK/site}"; else SITE="${SITE:-/tmp/site}"; fi
RUN_DIR="${RUN_DIR:-$WORK/run}"
mkdir -p "$OUT"

# Everything printed also lands in $OUT/gpu_check.log; $WORK goes at the end.
source scripts/tee_log.sh
tee_log "$OUT/gpu_check.log" "$WORK"

export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
# The dry run's smoke sizes are faster on one thread, above all on a shared 2-core machine.
[[ "$DRY" == 1 ]] && export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export PYTHONPATH="$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}"
# Keep Jupyter's and IPython's runtime files out of $HOME.
export JUPYTER_RUNTIME_DIR="$WORK/jupyter-runtime" IPYTHONDIR="$WORK/ipython"
export JUPYTER_PLATFORM_DIRS=1

STARTED=$SECONDS
FAILED=()
PHASE_NAME="" PHASE_START=0
begin() { PHASE_NAME="phase $1: $2"; PHASE_START=$SECONDS; echo "== $PHASE_NAME"; }
end_ok() { echo "== $PHASE_NAME ok ($((SECONDS - PHASE_START))s)"; }
end_failed() {
  echo "== $PHASE_NAME FAILED ($1, $((SECONDS - PHASE_START))s)"
  FAILED+=("${PHASE_NAME%%:*}")
}
skipped() { echo "== phase $1: $2 skipped ($3)"; }
wanted() { [[ "$PHASES" == *" $1 "* ]]; }

echo "gpu_check: dry_run=$DRY phases=[${PHASES# }] python=$(command -v "$PYTHON") out=$OUT"

# ---------------------------------------------------------------------------------- phase 1
phase1() {
  local modules="papermill nbclient nbformat jupyter_client ipykernel zmq tornado pywt ipywidgets"
  if [[ "$DRY" == 1 ]] && "$PYTHON" -c "import ${modules// /, }" 2>/dev/null; then
    echo "dry run: the Jupyter stack imports already; wheel install skipped"
  else
    compgen -G ".whl/*.whl" >/dev/null \
      || { echo "no .whl/*.whl: run scripts/make_wheelhouse.sh and carry .whl"; return 1; }
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --disable-pip-version-check --target "$SITE" .whl/*.whl || return 1
    echo "installed $(ls .whl/*.whl | wc -l) wheels into $SITE"
  fi
  CARRIED="$(bash scripts/make_wheelhouse.sh --list)" \
    OPTIONAL="$(bash scripts/make_wheelhouse.sh --list-optional)" \
    "$PYTHON" - "$SITE" <<'PY' || return 1
import importlib, json, os, sys
from importlib import metadata
from pathlib import Path

site = Path(sys.argv[1])
modules = ["papermill", "nbclient", "nbformat", "jupyter_client", "ipykernel", "zmq", "tornado",
           "pywt", "ipywidgets", "matplotlib", "torch", "asbsr"]
for name in modules:
    module = importlib.import_module(name)
    print(f"  import {name:<15} {getattr(module, '__version__', '')}  {Path(module.__file__).parent}")

# Every requirement of the carried distributions must be installed; versions are a warning
# (pins are often conservative), and so is a runtime-optional one (make_wheelhouse.sh --lean).
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
installed = {}
for dist in metadata.distributions():  # the first on sys.path wins, as for imports
    installed.setdefault(canonicalize_name(dist.metadata["Name"]), dist.version)
optional = {canonicalize_name(n) for n in os.environ["OPTIONAL"].split()}
carried, missing = [], []
for name in os.environ["CARRIED"].split():
    if canonicalize_name(name) in installed:
        carried.append(metadata.distribution(name))
    elif canonicalize_name(name) in optional:
        print(f"  note: {name} not installed (runtime-optional, a --lean wheelhouse)")
    else:
        missing.append(f"{name} (listed in make_wheelhouse.sh)")
for dist in carried:
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        have = installed.get(canonicalize_name(req.name))
        if have is None and canonicalize_name(req.name) in optional:
            continue
        if have is None:
            missing.append(f"{dist.metadata['Name']} needs {req}")
        elif not req.specifier.contains(have, prereleases=True):
            print(f"  warning: {dist.metadata['Name']} asks {req}, found {have}")
print(f"  requirements of {len(carried)} distributions of make_wheelhouse.sh checked")
if missing:
    sys.exit("missing requirements:\n  " + "\n  ".join(missing))

# The kernel papermill asks for. ipykernel provides `python3` itself (running this very
# interpreter); a kernel.json is written only if none is found.
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
try:
    spec = KernelSpecManager().get_kernel_spec("python3")
except NoSuchKernel:
    folder = site / "share" / "jupyter" / "kernels" / "python3"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python",
        "env": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}}))
    os.environ["JUPYTER_PATH"] = str(site / "share" / "jupyter")
    print(f"  wrote {folder / 'kernel.json'} (export JUPYTER_PATH={os.environ['JUPYTER_PATH']})")
    spec = KernelSpecManager().get_kernel_spec("python3")
print(f"  kernelspec python3: {' '.join(spec.argv)}")

# One cell in a real kernel: ZeroMQ, the kernel's imports and PYTHONPATH all work.
from jupyter_client.manager import start_new_kernel
manager, client = start_new_kernel(kernel_name="python3")
try:
    lines = []
    reply = client.execute_interactive(
        "import sys, torch, asbsr; print(sys.version.split()[0], torch.__version__, "
        "torch.cuda.is_available())",
        timeout=120, output_hook=lambda m: lines.append(m["content"].get("text", "")))
    if reply["content"]["status"] != "ok":
        sys.exit(f"kernel cell failed: {reply['content']}")
    print(f"  kernel says: python, torch, cuda = {''.join(lines).strip()}")
finally:
    client.stop_channels()
    manager.shutdown_kernel(now=True)
PY
  # The fallback kernel.json (if written) needs JUPYTER_PATH in later phases too.
  if [[ -f "$SITE/share/jupyter/kernels/python3/kernel.json" ]]; then
    export JUPYTER_PATH="$SITE/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
  fi
}

# ---------------------------------------------------------------------------------- phase 2
phase2() {
  timeout -k 10 180 "$PYTHON" - "$OUT/smoke.json" <<'PY'
import json, math, os, sys, tempfile, time
import torch
from torch.overrides import TorchFunctionMode

from asbsr.config import make_config
from asbsr.data import load_set
from asbsr.inference import grid_queries, upscale
from asbsr.train import train_stage1, train_stage2

dry = os.environ.get("GPU_CHECK_DRY_RUN") == "1"
if not dry and not torch.cuda.is_available():
    sys.exit(f"FAIL: torch {torch.__version__} (CUDA build {torch.version.cuda}) sees no GPU")
device = torch.device("cpu" if dry else "cuda")
preset = "smoke" if dry else "gpu"
config = make_config(preset, {"stage1.steps": 1, "stage2.steps": 1,
                              "stage1.checkpoint_every": 1, "stage2.checkpoint_every": 1})
report = {"preset": preset, "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
          "torch": torch.__version__, "cuda": torch.version.cuda}
print(f"  {preset} size on {report['device']} (torch {torch.__version__}, CUDA {torch.version.cuda})")
images = [image.to(device) for _, image in load_set("val", max_side=400)]  # 3 photos


def finite(history, key):
    value = history[key][-1]
    if not math.isfinite(value):
        sys.exit(f"FAIL: {key} is {value}")
    return value


with tempfile.TemporaryDirectory(prefix="asbsr-smoke-") as folder:
    started = time.perf_counter()
    stage1 = train_stage1(config, folder, device, progress=False, images=images)
    report["stage1_step_s"] = round(time.perf_counter() - started, 2)
    report["stage1_loss"] = finite(stage1.history, "loss")
    started = time.perf_counter()
    stage2 = train_stage2(config, stage1, folder, device, progress=False, images=images)
    report["stage2_step_s"] = round(time.perf_counter() - started, 2)
    report["stage2_loss"] = finite(stage2.history, "loss")
    report["stage2_cycle"] = finite(stage2.history, "cycle")
print(f"  stage 1: loss {report['stage1_loss']:.4f} ({report['stage1_step_s']} s with start-up)")
print(f"  stage 2: loss {report['stage2_loss']:.4f}, cycle {report['stage2_cycle']:.4f} "
      f"({report['stage2_step_s']} s with start-up)")

model = stage2.model.eval()
lr = images[0][None, :, :96, :96].contiguous()
started = time.perf_counter()
sr = upscale(model, lr, scale=3.6, chunk=config.eval.chunk)
if device.type == "cuda":
    torch.cuda.synchronize()
report["upscale_96_x3.6_s"] = round(time.perf_counter() - started, 3)
if sr.shape != (1, 3, 346, 346) or not torch.isfinite(sr).all() or sr.min() < 0 or sr.max() > 1:
    sys.exit(f"FAIL: upscale gave {tuple(sr.shape)}, range {sr.min().item()}..{sr.max().item()}")
print(f"  upscale 96^2 x3.6 -> {tuple(sr.shape[-2:])} in {report['upscale_96_x3.6_s']} s")


class SinusoidDtypes(TorchFunctionMode):
    """Records the dtype of every torch.cos / torch.sin argument (the LTE basis)."""

    def __init__(self):
        super().__init__()
        self.dtypes = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.cos, torch.sin):
            self.dtypes.add(args[0].dtype)
        return func(*args, **(kwargs or {}))


coord, cell = grid_queries((346, 346), (96, 96), model.max_scale, device=device)
coord, cell = coord[None, :8192], cell[None, :8192]
mlp_dtypes = []
hook = model.sr.mlp[0].register_forward_hook(lambda module, inputs, output: mlp_dtypes.append(output.dtype))
with torch.no_grad():
    reference = model.query(model.encode(lr), coord, cell)
    mlp_dtypes.clear()
    with torch.autocast(device.type, dtype=torch.bfloat16), SinusoidDtypes() as sinusoid:
        low = model.query(model.encode(lr), coord, cell)
hook.remove()
error = float((low.float() - reference).abs().max())
report.update(bf16_mlp_dtype=str(mlp_dtypes[0]), bf16_sinusoid_dtypes=sorted(map(str, sinusoid.dtypes)),
              bf16_max_abs_error=error)
print(f"  bf16 autocast: MLP in {mlp_dtypes[0]}, sinusoid argument in {sorted(map(str, sinusoid.dtypes))}, "
      f"max |bf16 - fp32| = {error:.4f}")
if mlp_dtypes[0] != torch.bfloat16 or sinusoid.dtypes != {torch.float32} or not error < 0.05:
    sys.exit("FAIL: the mixed-precision policy does not hold (see tests/test_autocast.py)")
if device.type == "cuda":
    report["peak_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
with open(sys.argv[1], "w") as stream:
    json.dump(report, stream, indent=2)
PY
}

# ---------------------------------------------------------------------------------- phase 3
write_check_notebook() {  # the dry run's stand-in for notebooks/: one tiny notebook
  "$PYTHON" - "$1" <<'PY'
import sys
import nbformat
cells = [
    nbformat.v4.new_code_cell("PRESET = None  # preset\nRUN_DIR = None  # run folder\n"
                              "TRAIN = None  # train or load", metadata={"tags": ["parameters"]}),
    nbformat.v4.new_code_cell(
        "import matplotlib.pyplot as plt\nimport torch\nfrom asbsr.lab.notebook import start\n"
        "session = start('00_gpu_check', PRESET, RUN_DIR, TRAIN)\n"
        "figure, axes = plt.subplots(figsize=(2, 2))\naxes.plot([0, 1], [0, 1])\n"
        "session.save_figure(figure, 'line')\n"
        "session.table_path('check.md').write_text('| check |\\n|---|\\n| ok |\\n')\n"
        "session.record(cuda=torch.cuda.is_available(), preset=session.config.preset)"),
]
book = nbformat.v4.new_notebook(cells=cells)
book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbformat.write(book, sys.argv[1])
PY
}

pack_run() {  # the run folder into at most three archives under $OUT, each below 16 MiB
  [[ -d "$RUN_DIR" ]] || { echo "  no run folder to pack"; return 0; }
  local items=()
  for item in metrics.json metrics figures tables; do [[ -e "$RUN_DIR/$item" ]] && items+=("$item"); done
  ((${#items[@]})) && tar -czf "$OUT/run.tar.gz" -C "$RUN_DIR" "${items[@]}"
  [[ -d "$RUN_DIR/notebooks" ]] && tar -czf "$OUT/notebooks.tar.gz" -C "$RUN_DIR" notebooks
  if [[ -d "$RUN_DIR/checkpoints" ]]; then
    tar -czf "$OUT/checkpoints.tar.gz" -C "$RUN_DIR" checkpoints
    if (( $(stat -c %s "$OUT/checkpoints.tar.gz") > 15 * 1048576 )); then
      echo "  checkpoints pack to more than 15 MiB: not returned"; rm -f "$OUT/checkpoints.tar.gz"
    fi
  fi
  for archive in "$OUT"/*.tar.gz; do
    [[ -e "$archive" ]] || continue
    local size; size=$(stat -c %s "$archive")
    if (( size > 16 * 1048576 )); then
      echo "  $(basename "$archive") is $((size / 1048576)) MiB, over the 16 MiB limit: removed"
      rm -f "$archive"; return 1
    fi
    echo "  packed $(basename "$archive") ($((size / 1024)) KiB)"
  done
}

phase3() {
  local code=0
  if [[ "$DRY" == 1 ]]; then
    mkdir -p "$WORK/notebooks"
    write_check_notebook "$WORK/notebooks/00_gpu_check.ipynb" || return 1
    "$PYTHON" -m asbsr.lab.pipeline --preset smoke --run-dir "$RUN_DIR" --notebooks "$WORK/notebooks" \
      || code=$?
  else
    local args
    read -r -a args <<<"${GPU_CHECK_PIPELINE_ARGS:---preset gpu}"
    timeout -k 15 "$PIPELINE_TIMEOUT" "$PYTHON" -m asbsr.lab.pipeline "${args[@]}" --run-dir "$RUN_DIR" \
      || code=$?
    (( code == 124 )) && echo "  pipeline stopped by the ${PIPELINE_TIMEOUT}s limit"
  fi
  pack_run || code=1
  return "$code"
}

# ---------------------------------------------------------------------------------- phase 4
phase4() {
  local args
  if [[ -n "${GPU_CHECK_PERF_ARGS:-}" ]]; then
    read -r -a args <<<"$GPU_CHECK_PERF_ARGS"
  elif [[ "$DRY" == 1 ]]; then
    args=(--device cpu --sizes smoke --inputs 48 --scales 2 --warmup 1 --steps 1
          --sweep-input 32 --in-process)
  else
    args=()
  fi
  timeout -k 10 "$PERF_TIMEOUT" "$PYTHON" benchmarks/perf.py "${args[@]}" --out "$OUT/perf.json"
}

# ---------------------------------------------------------------------------------- run
if wanted 1; then
  begin 1 "wheels and Jupyter kernel"
  if phase1; then end_ok; else end_failed "imports or kernel"; fi
fi
if wanted 2; then
  begin 2 "smoke: one step per stage, inference, bf16"
  if phase2; then
    end_ok
  else
    end_failed "smoke"
    if [[ "$DRY" != 1 ]]; then
      echo "== gpu_check: stopping, phases 3 and 4 need a working GPU"
      exit 1
    fi
  fi
fi
if wanted 3; then
  if [[ " ${FAILED[*]} " == *" phase 1 "* ]]; then
    skipped 3 "pipeline" "phase 1 failed"
  else
    begin 3 "pipeline (papermill)"
    if phase3; then end_ok; else end_failed "pipeline"; fi
  fi
fi
if wanted 4; then
  begin 4 "perf (benchmarks/perf.py)"
  if phase4; then end_ok; else end_failed "perf"; fi
fi

echo "== results in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
if ((${#FAILED[@]})); then
  echo "== gpu_check FAILED: ${FAILED[*]} ($((SECONDS - STARTED))s)"
  exit 1
fi
echo "== gpu_check ok ($((SECONDS - STARTED))s)"
