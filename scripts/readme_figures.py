"""Copy one figure per notebook from a pipeline run into docs/figures/ for the README.

    python scripts/readme_figures.py runs/cpu-<time>

Each figure is shrunk to at most ``--width`` pixels wide (PIL, Lanczos) and saved as an optimised
PNG, or as a JPEG (quality 85) when the PNG would exceed 200 KB (figures full of photographs). The README names the run (preset, date) the figures came from.
"""

import argparse
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
MAX_PNG_BYTES = 200_000
FIGURES = [  # (notebook, figure stem) -- one per notebook
    ("00_overview", "fig2"),
    ("01_degradation_synthesis", "degradation_grid"),
    ("02_wavelet_contrastive_learning", "probe-r2"),
    ("03_kernel_estimation", "fig4"),
    ("04_modulated_lte", "scales"),
    ("05_cycle_consistency", "loop"),
    ("06_benchmark_tables", "table2-differences"),
    ("07_qualitative_results", "figure3"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--width", type=int, default=1000)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    missing = []
    for notebook, stem in FIGURES:
        source = args.run_dir / "figures" / f"{notebook}-{stem}.png"
        if not source.exists():
            missing.append(str(source))
            continue
        image = Image.open(source).convert("RGB")
        if image.width > args.width:
            image = image.resize((args.width, round(image.height * args.width / image.width)),
                                 Image.Resampling.LANCZOS)
        target = args.out / f"{notebook[:2]}-{stem}.png"
        image.save(target, optimize=True)
        if target.stat().st_size > MAX_PNG_BYTES:  # a photographic figure: JPEG is far smaller
            target.unlink()
            target = target.with_suffix(".jpg")
            image.save(target, quality=85, optimize=True)
        print(f"{target.relative_to(ROOT)}: {image.width}x{image.height}, {target.stat().st_size // 1024} KB")
    if missing:
        print("missing:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
