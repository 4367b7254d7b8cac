"""The pipeline runner, the notebooks' parameter rule, and the notebooks as committed."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import nbformat
import pytest

from asbsr.lab import notebook
from asbsr.lab.pipeline import METRICS_SCHEMA, run_pipeline

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _notebook(path: Path, *sources: str) -> None:
    cells = [nbformat.v4.new_code_cell(
        "PRESET = None  # preset\nRUN_DIR = None  # run folder\nTRAIN = None  # train or load",
        metadata={"tags": ["parameters"]})]
    cells += [nbformat.v4.new_code_cell(source) for source in sources]
    book = nbformat.v4.new_notebook(cells=cells)
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(book, path)


def test_failing_notebook_stops_the_pipeline_naming_notebook_and_cell(tmp_path, capsys):
    books = tmp_path / "books"
    books.mkdir()
    record = ("from asbsr.lab.notebook import start\n"
              "s = start('01_fine', PRESET, RUN_DIR, TRAIN)\ns.record(answer=42)")
    picture = ("import io\nfrom IPython.display import Image, display\nfrom PIL import Image as P\n"
               "b = io.BytesIO()\nP.new('RGB', (4, 4), 'red').save(b, 'png')\ndisplay(Image(b.getvalue()))")
    _notebook(books / "01_fine.ipynb", record, picture)
    _notebook(books / "02_broken.ipynb", "x = 1", "raise RuntimeError('deliberate failure')")
    _notebook(books / "03_never.ipynb", "x = 1")
    run_dir = tmp_path / "run"
    code = run_pipeline("smoke", run_dir, notebooks=books)
    assert code == 1
    err = capsys.readouterr().err
    # papermill's injected-parameters cell comes after the parameters cell: the raise is cell 3.
    assert "02_broken.ipynb failed at cell 3: RuntimeError: deliberate failure" in err
    executed = sorted(p.name for p in (run_dir / "notebooks").iterdir())
    assert executed == ["01_fine.ipynb", "02_broken.ipynb"]
    summary = json.loads((run_dir / "metrics.json").read_text())
    jsonschema.validate(summary, METRICS_SCHEMA)
    assert summary["status"] == "failed"
    assert [n["status"] for n in summary["notebooks"]] == ["ok", "failed"]
    assert summary["results"]["01_fine"] == {"answer": 42}
    # the report: an index of both executed notebooks beside the recorded numbers, figures embedded
    index = (run_dir / "report.html").read_text()
    assert 'href="report/01_fine.html"' in index and 'href="report/02_broken.html"' in index
    assert "answer" in index and ">failed<" in index
    assert "data:image/png;base64" in (run_dir / "report" / "01_fine.html").read_text()


def test_metrics_schema_rejects_a_malformed_summary():
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"schema": "asbsr-metrics-v1", "preset": "huge"}, METRICS_SCHEMA)


def test_parameter_rule_injected_then_environment_then_default(monkeypatch, tmp_path):
    monkeypatch.delenv("ASBSR_PRESET", raising=False)
    assert notebook.resolve("PRESET", None, "ASBSR_PRESET", "cpu") == "cpu"
    monkeypatch.setenv("ASBSR_PRESET", "smoke")
    assert notebook.resolve("PRESET", None, "ASBSR_PRESET", "cpu") == "smoke"
    assert notebook.resolve("PRESET", "gpu", "ASBSR_PRESET", "cpu") == "gpu"
    monkeypatch.setenv("ASBSR_TRAIN", "yes")
    assert notebook.resolve("TRAIN", None, "ASBSR_TRAIN", False) is True
    assert notebook.resolve("TRAIN", False, "ASBSR_TRAIN", False) is False
    monkeypatch.setenv("ASBSR_RUN_DIR", str(tmp_path / "env-run"))
    session = notebook.start("99_probe")
    assert session.config.preset == "smoke" and session.run_dir == (tmp_path / "env-run").resolve()
    session = notebook.start("99_probe", preset="cpu", run_dir=str(tmp_path / "injected"))
    assert session.config.preset == "cpu" and session.run_dir.name == "injected"


def _dependency_names(requirements):
    return sorted(re.split(r"[<>=!~ ]", r, maxsplit=1)[0].strip().lower() for r in requirements)


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    project = table["dependencies"] + [r for extra in table["optional-dependencies"].values() for r in extra]
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = lines.index("dependencies:") + 1
    conda = [line.strip()[2:] for line in lines[start:]
             if line.startswith("  - ") and not line.strip().startswith("- pip")
             and not line.strip().startswith("- python")]
    conda = ["torch" + c[len("pytorch"):] if c.startswith("pytorch") else c for c in conda]
    assert _dependency_names(conda) == _dependency_names(project)
    # and the same lower bounds
    assert sorted(c.replace(" ", "") for c in conda) == sorted(p.replace(" ", "") for p in project)


def test_the_runtime_needs_no_jupyter_or_test_tool():
    """``pip install asbsr`` for ``asbsr upscale`` pulls no notebook or test machinery; every
    module of the package that imports one does so inside the function that needs it."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = set(_dependency_names(table["dependencies"]))
    assert not runtime & {"papermill", "jupyterlab", "ipykernel", "ipywidgets", "nbconvert", "pytest", "nbval"}
    assert set(table["optional-dependencies"]) == {"notebooks", "test"}
    script = ("import sys, asbsr.lab.cli, asbsr.inference, asbsr.tiling, asbsr.lab.zoo; "
              "print(sorted(m for m in ('papermill', 'ipywidgets', 'IPython', 'pytest', 'nbval', 'pywt') "
              "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 1


# Calls whose value a cell may end with: they show nothing, or show what they are meant to.
SHOWS_NOTHING = {"show", "print", "display", "close", "record", "save_figure", "assert_close", "redraw"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_cell_ends_with_a_value_it_would_print_by_accident(path):
    """A cell's last expression is displayed: a path or a generator object left there shows up
    as ``PosixPath(...)`` in the notebook a learner reads."""
    import ast

    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        last = ast.parse(cell.source).body[-1:]
        if last and isinstance(last[0], ast.Expr) and isinstance(last[0].value, ast.Call):
            function = last[0].value.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
            assert name in SHOWS_NOTHING, f"a cell of {path.name} ends with {name}(...): {cell.source[-80:]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean_with_one_parameters_cell(path):
    book = nbformat.read(path, as_version=4)
    assert book.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in book.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), \
        "commit notebooks with outputs cleared"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    for line in tagged[0].source.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert re.match(r"^[A-Z_][A-Z0-9_]* = .+  # .+$", line), f"literal with a comment: {line!r}"
    assert len(book.cells) <= 45
