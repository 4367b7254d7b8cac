"""The package's layering: the method (``asbsr``, ``asbsr.models``) never imports the tooling
around it (``asbsr.lab``), and the networks import nothing of the method's machinery above them."""

from __future__ import annotations

import ast
from pathlib import Path

import asbsr

ROOT = Path(asbsr.__file__).resolve().parent
# what the networks may build on: their config, the wavelet transform E reads, each other
MODELS_MAY_IMPORT = ("asbsr.config", "asbsr.wavelet", "asbsr.models")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name == "asbsr" or name.startswith("asbsr.")}


def method_modules() -> list[Path]:
    return [p for p in ROOT.rglob("*.py") if "lab" not in p.relative_to(ROOT).parts]


def test_the_method_never_imports_the_lab():
    offenders = {str(p.relative_to(ROOT)): sorted(n for n in imported_modules(p) if n.startswith("asbsr.lab"))
                 for p in method_modules()}
    assert {k: v for k, v in offenders.items() if v} == {}
    assert len(method_modules()) > 15  # the walk found the package


def test_the_networks_import_only_their_config_the_wavelets_and_each_other():
    models = [p for p in (ROOT / "models").rglob("*.py")]
    assert any(p.name == "blind.py" for p in models)
    offenders = {}
    for path in models:
        wrong = sorted(n for n in imported_modules(path)
                       if not n.startswith(MODELS_MAY_IMPORT) and n != "asbsr")
        if wrong:
            offenders[str(path.relative_to(ROOT))] = wrong
    assert offenders == {}


def test_the_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from asbsr.inference import upscale\nimport asbsr.lab.zoo\n")
    assert imported_modules(bad) == {"asbsr.inference", "asbsr.inference.upscale", "asbsr.lab.zoo"}
