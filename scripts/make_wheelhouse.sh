#!/usr/bin/env bash
# Build .whl/: the Python wheels that the papermill pipeline needs on an offline GPU machine
# beyond what that machine's image already holds.
#
#   bash scripts/make_wheelhouse.sh           download (PyPI), check, replace .whl/, print its size
#   bash scripts/make_wheelhouse.sh --lean    the same without RUNTIME_OPTIONAL (~9 instead of ~21 MiB;
#                                             the one that fits beside today's 51 MiB working tree)
#   bash scripts/make_wheelhouse.sh --check   check an existing .whl/ only (no network)
#   bash scripts/make_wheelhouse.sh --list    print the package names, one a line (no network)
#   bash scripts/make_wheelhouse.sh --list-optional   the names --lean leaves out
#
# The GPU machine runs Python 3.12 (/opt/torch/.venv/bin/python3) with torch, numpy, matplotlib,
# scikit-image, tqdm, pyyaml, requests, ... but no Jupyter stack and no PyWavelets, and it has no
# network. scripts/gpu_check.sh installs these wheels there with
#   python3 -m pip install --no-index --no-deps --target /tmp/site .whl/*.whl
# and puts /tmp/site on PYTHONPATH (after the repository root).
#
# Decisions:
# * Only packages missing from the image are carried (WHEELS below). A carried copy of a package
#   the image already has would shadow it on PYTHONPATH, for torch's users too. The image's
#   packages that the carried ones need are listed in PROVIDED; --check proves that every
#   requirement of every carried wheel (markers evaluated for CPython 3.12 on Linux x86-64) is
#   either carried or provided.
# * Versions are pinned to the ones installed in the environment running this script (the
#   project's .venv), so the device runs the Jupyter stack that the tests pass with here; a
#   package not installed here gets PyPI's newest. Exactly one wheel per package: the download
#   goes to a fresh folder that then replaces .whl/ whole.
# * asbsr itself is NOT packed as a wheel: the working tree travels to the device anyway, and
#   asbsr finds its data/, notebooks/ and zoo through its own file location (PROJECT_ROOT), which
#   an installed copy in /tmp/site would break. gpu_check.sh puts the repository root first on
#   PYTHONPATH instead, which also reaches papermill's kernels.
# * .whl/ is ignored through .git/info/exclude (local to this clone), not .gitignore.
#
# Checked 2026-11-26 without a GPU: a fresh CPython 3.12.1 venv holding only PROVIDED (from
# PyPI), with the full and then the --lean set installed exactly as above, ran phase 1 of
# gpu_check.sh (imports, requirements, the python3 kernelspec, a kernel round trip; torch
# stubbed) and executed a parameterised notebook importing ipywidgets and pywt through papermill.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# BEGIN WHEELS  (parsed by tests/test_gpu_kit.py: one distribution name per line, '#' comments)
WHEELS=(
  papermill                  # executes the notebooks
  nbclient                   # papermill's notebook executor
  nbformat                   # notebook files
  fastjsonschema             # nbformat's validator
  jsonschema                 # nbformat's fallback validator
  jsonschema-specifications  # jsonschema
  referencing                # jsonschema
  rpds-py                    # referencing (compiled)
  jupyter-client             # kernel start and messaging
  jupyter-core               # Jupyter paths
  platformdirs               # jupyter-core
  pyzmq                      # ZeroMQ transport (compiled)
  tornado                    # jupyter-client / ipykernel event loop (compiled, abi3)
  traitlets                  # configuration of every Jupyter component
  ipykernel                  # the python3 kernel the notebooks run in
  comm                       # ipykernel / ipywidgets
  debugpy                    # ipykernel (compiled)
  nest-asyncio2              # ipykernel 7
  ipython                    # ipykernel
  ipython-pygments-lexers    # ipython
  jedi                       # ipython
  parso                      # jedi
  matplotlib-inline          # inline figures in the kernel
  pexpect                    # ipython
  ptyprocess                 # pexpect
  prompt-toolkit             # ipython
  wcwidth                    # prompt-toolkit
  stack-data                 # ipython tracebacks
  executing                  # stack-data
  asttokens                  # stack-data
  pure-eval                  # stack-data
  ipywidgets                 # the notebooks' sliders
  widgetsnbextension         # ipywidgets
  jupyterlab-widgets         # ipywidgets
  tenacity                   # papermill
  entrypoints                # papermill
  tzdata                     # python-dateutil >= 2.9.post (harmless if the image has it)
  pywavelets                 # Haar oracle of the tests and notebook 02 (compiled)
)
# END WHEELS

# Declared requirements that nothing imports when papermill executes a notebook: ipykernel
# imports debugpy only for its debugger, IPython imports jedi (and jedi parso) only for tab
# completion, and widgetsnbextension / jupyterlab-widgets hold only the browser-side JavaScript
# of ipywidgets. --lean leaves them out (about 13 MiB); a lean set was run through papermill on
# CPython 3.12 with ipywidgets imported. gpu_check.sh reports them as warnings when absent.
RUNTIME_OPTIONAL=(
  debugpy jedi parso widgetsnbextension jupyterlab-widgets
)

# On the image already (KINDS.md's package list), needed by the wheels above: not carried.
PROVIDED=(
  aiohttp attrs certifi charset-normalizer click idna numpy packaging psutil pygments
  python-dateutil pyyaml requests six tqdm typing-extensions urllib3
)

PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64
           manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)
LIMIT_MIB=62        # wheels + working tree must stay under the device's 64 MiB (the zoo grows)

if [[ -x "$ROOT/.venv/bin/python" && -z "${VIRTUAL_ENV:-}" ]]; then
  PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
else
  PYTHON="${PYTHON:-python3}"
fi

# Check a folder of wheels: one wheel per name, every WHEELS entry present, and every
# requirement of each wheel (for CPython 3.12 on Linux) carried or provided, at a version the
# carried wheel satisfies.
check_wheels() {
  local folder="$1"
  WHEELS_LIST="${WHEELS[*]}" PROVIDED_LIST="${PROVIDED[*]}" OPTIONAL_LIST="${RUNTIME_OPTIONAL[*]}" \
    "$PYTHON" - "$folder" <<'PY'
import os, re, sys, zipfile
from pathlib import Path
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

folder = Path(sys.argv[1])
wanted = {canonicalize_name(n) for n in os.environ["WHEELS_LIST"].split()}
provided = {canonicalize_name(n) for n in os.environ["PROVIDED_LIST"].split()}
optional = {canonicalize_name(n) for n in os.environ["OPTIONAL_LIST"].split()}
environment = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
               "platform_system": "Linux", "os_name": "posix", "implementation_name": "cpython",
               "platform_python_implementation": "CPython", "platform_machine": "x86_64",
               "extra": ""}
versions, requires, problems = {}, {}, []
for wheel in sorted(folder.glob("*.whl")):
    name, version, _, tags = parse_wheel_filename(wheel.name)
    if not any(t.interpreter in ("py3", "cp312") or t.interpreter.startswith("py3")
               or (t.abi == "abi3" and t.interpreter.startswith("cp3")) for t in tags):
        problems.append(f"{wheel.name}: not installable on CPython 3.12")
    if name in versions:
        problems.append(f"two versions of {name}: {versions[name]} and {version}")
    versions[name] = version
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        lines = archive.read(meta).decode().splitlines()
    requires[name] = [Requirement(l.split(":", 1)[1].strip()) for l in lines
                      if l.startswith("Requires-Dist:")]
lean = not optional & set(versions)
if lean:  # a --lean set: all of the optional ones left out, and only those
    wanted -= optional
    provided |= optional
for name in sorted(wanted - set(versions)):
    problems.append(f"missing wheel: {name}")
for name in sorted(set(versions) - wanted):
    problems.append(f"unlisted wheel: {name}")
for name, reqs in sorted(requires.items()):
    for req in reqs:
        if req.marker is not None and not req.marker.evaluate(environment):
            continue
        need = canonicalize_name(req.name)
        if need in versions:
            if not req.specifier.contains(versions[need], prereleases=True):
                problems.append(f"{name} needs {req}, carried {versions[need]}")
        elif need not in provided:
            problems.append(f"{name} needs {req}: neither carried nor on the image")
for problem in problems:
    print(f"  PROBLEM {problem}", file=sys.stderr)
closed = "requirements closed" if not problems else "NOT closed"
print(f"  {len(versions)} wheels ({'lean' if lean else 'full'} set), {closed}"
      + (f"; left out: {', '.join(sorted(optional))}" if lean else ""))
sys.exit(1 if problems else 0)
PY
}

exclude_wheelhouse() {
  local exclude="$ROOT/.git/info/exclude"
  if [[ -d "$ROOT/.git" ]]; then
    mkdir -p "$(dirname "$exclude")"
    grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
  fi
}

report_size() {
  local wheels tree
  wheels=$(du -sb .whl | cut -f1)
  # What travels: tracked files plus untracked files that git does not ignore, plus .whl/.
  tree=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } \
          | xargs -0 -r stat -c %s -- 2>/dev/null | awk '{s += $1} END {print s + 0}')
  local total=$((wheels + tree))
  awk -v n="$(ls .whl/*.whl | wc -l)" -v w="$wheels" -v t="$tree" 'BEGIN {
    m = 1048576
    printf ".whl/: %d wheels, %.1f MiB; working tree %.1f MiB; together %.1f MiB (device limit 64 MiB)\n",
      n, w / m, t / m, (w + t) / m }'
  if (( total > LIMIT_MIB * 1048576 )); then
    echo "FAIL: over the ${LIMIT_MIB} MiB budget this script keeps below the device's 64 MiB" >&2
    return 1
  fi
}

LEAN=0
case "${1:-}" in
  --list)
    printf '%s\n' "${WHEELS[@]}"
    exit 0 ;;
  --list-optional)
    printf '%s\n' "${RUNTIME_OPTIONAL[@]}"
    exit 0 ;;
  --lean)
    LEAN=1 ;;
  --check)
    [[ -d .whl ]] || { echo "no .whl/ here; run without --check first" >&2; exit 1; }
    check_wheels .whl
    report_size
    exit 0 ;;
  "") ;;
  *)
    echo "usage: $0 [--lean | --check | --list | --list-optional]" >&2
    exit 2 ;;
esac

NAMES=()
for name in "${WHEELS[@]}"; do
  if [[ "$LEAN" == 1 && " ${RUNTIME_OPTIONAL[*]} " == *" $name "* ]]; then continue; fi
  NAMES+=("$name")
done
# Pins: the version installed here, else none (PyPI's newest).
mapfile -t SPECS < <("$PYTHON" - "${NAMES[@]}" <<'PY'
import sys
from importlib import metadata
for name in sys.argv[1:]:
    try:
        print(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        print(name)
PY
)

STAGING="$(mktemp -d "$ROOT/.whl.new.XXXXXX")"
trap 'rm -rf "$STAGING"' EXIT
PLATFORM_ARGS=()
for p in "${PLATFORMS[@]}"; do PLATFORM_ARGS+=(--platform "$p"); done
echo "downloading ${#SPECS[@]} wheels for CPython 3.12 manylinux x86-64 ..."
"$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp "${PLATFORM_ARGS[@]}" -d "$STAGING" "${SPECS[@]}"
check_wheels "$STAGING"
rm -rf .whl
mv "$STAGING" .whl
trap - EXIT
exclude_wheelhouse
ls .whl
report_size
