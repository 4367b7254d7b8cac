"""An HTML report of a pipeline run: every executed notebook as a page, figures embedded, and an
index that links them beside the numbers of ``metrics.json``.

    python -m asbsr.lab.report runs/cpu-20261207-030345      (the pipeline writes it itself)

The pages are nbconvert's HTML export of the executed notebooks (images are embedded as data, so
the folder can be copied or mailed as it is); ``report.html`` in the run folder is the index.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path

from asbsr.files import atomic_write_text


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        text = json.dumps(value, default=str)
        return html.escape(text if len(text) <= 160 else text[:157] + "...")
    return html.escape(str(value))


def write_report(run_dir: str | Path) -> Path:
    """Export each notebook of ``run_dir/notebooks`` to ``run_dir/report/<name>.html`` and write
    the index ``run_dir/report.html``; returns the index's path."""
    from nbconvert import HTMLExporter  # the notebooks extra: only the pipeline needs it

    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").exists() else {}
    exporter = HTMLExporter()
    pages = []
    for notebook in sorted((run_dir / "notebooks").glob("*.ipynb")):
        body, _ = exporter.from_filename(str(notebook))
        page = run_dir / "report" / f"{notebook.stem}.html"
        atomic_write_text(page, body)
        pages.append(page)
    entries = {entry["notebook"]: entry for entry in summary.get("notebooks", [])}
    rows = []
    for page in pages:
        entry = entries.get(f"{page.stem}.ipynb", {})
        rows.append(f"<tr><td><a href=\"report/{page.name}\">{html.escape(page.stem)}</a></td>"
                    f"<td>{_cell(entry.get('status', ''))}</td><td>{_cell(entry.get('seconds', ''))}</td></tr>")
    results = []
    for notebook, numbers in summary.get("results", {}).items():
        for key, value in numbers.items():
            results.append(f"<tr><td>{html.escape(notebook)}</td><td>{html.escape(key)}</td>"
                           f"<td><code>{_cell(value)}</code></td></tr>")
    settings = {k: summary.get(k, "") for k in ("preset", "device", "device_name", "torch", "python",
                                                 "train", "started", "finished", "status")}
    index = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>asbsr run {html.escape(run_dir.name)}</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:2em auto}}td,th{{padding:2px 10px;text-align:left;
vertical-align:top}}tr:nth-child(even){{background:#f4f4f4}}code{{font-size:90%}}</style></head><body>
<h1>asbsr run <code>{html.escape(run_dir.name)}</code></h1>
<table>{''.join(f'<tr><th>{html.escape(k)}</th><td>{_cell(v)}</td></tr>' for k, v in settings.items())}</table>
<h2>Notebooks</h2>
<table><tr><th>notebook</th><th>status</th><th>seconds</th></tr>{''.join(rows)}</table>
<h2>Recorded results (<code>metrics.json</code>)</h2>
<table><tr><th>notebook</th><th>key</th><th>value</th></tr>{''.join(results)}</table>
</body></html>
"""
    return atomic_write_text(run_dir / "report.html", index)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asbsr.lab.report", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, help="a pipeline run folder")
    args = parser.parse_args(argv)
    if not (args.run_dir / "notebooks").is_dir():
        parser.exit(2, f"error: {args.run_dir} has no notebooks/ folder: not a pipeline run\n")
    print(write_report(args.run_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
