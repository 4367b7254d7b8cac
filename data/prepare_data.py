"""Rebuild the committed images of data/ from their upstream packages (run by hand, never at run time).

How the inputs were obtained (the machine reaches only PyPI and Debian):

    apt-get download lomiri-wallpapers-16.04          # Debian, version 20.04.0-2
    dpkg-deb -x lomiri-wallpapers-16.04_20.04.0-2_all.deb deb/
    pip download --no-deps sporco==0.2.2.post1 -d .   # PyPI wheel, not installed
    unzip sporco-0.2.2.post1-py3-none-any.whl -d wheel/

    python data/prepare_data.py deb/usr/share/backgrounds wheel/sporco/data

Photos are downscaled with PIL's antialiased Lanczos filter so that the long side is
LONG_SIDE pixels, and written as PNG without metadata; the five sporco PNGs are copied
byte for byte. See data/SOURCES.md for the origin and license of every file.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from PIL import Image

LONG_SIDE = 1024
HERE = Path(__file__).resolve().parent

# committed name -> file name in lomiri-wallpapers-16.04 (usr/share/backgrounds/)
TRAIN = {
    "aitzgorri": "aitzgorri_by_Aitzol_Berasategi.jpg",
    "bird_lamp": "free_by_Peter_Nerlich.jpg",
    "bridge": "Bridge_by_Sander_Klootwijk.jpg",
    "clock": "greentock_by_Peter_Nerlich.jpg",
    "dandelions": "seeding_by_Clements_Engelhardt.jpg",
    "dragonfly": "Dragonfly_by_Bolly.jpg",
    "fig_bowl": "Picture_0B_by_freespace.jpg",
    "stream": "life_by_Aitzol_Berasategi.jpg",
    "sunset": "sunset_by_Aitzol_Berasategi.jpg",
    "wine_room": "Wine_by_Jakkub_Mede.jpg",
}
VAL = {
    "brushes": "Picture_1A_by_freespace.jpg",
    "dogs": "friends_by_Aitzol_Berasategi.jpg",
    "picos_de_europa": "picosdeeuropa_by_Aitzol_Berasategi.jpg",
}
CLASSIC5 = ("barbara.png", "kodim23.png", "monarch.png", "sail.png", "tulips.png")


def downscale(src: Path, dst: Path, long_side: int = LONG_SIDE) -> tuple[tuple, tuple]:
    """Resize ``src`` so that its long side is ``long_side`` and save it as a bare PNG."""
    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        factor = long_side / max(w, h)
        size = (round(w * factor), round(h * factor))
        # PIL widens the Lanczos support by the reduction factor, i.e. it antialiases.
        small = im.resize(size, Image.Resampling.LANCZOS)
    small.save(dst, optimize=True)
    return (w, h), size


def main(backgrounds: Path, sporco_data: Path) -> None:
    for folder, table in (("train", TRAIN), ("val", VAL)):
        (HERE / folder).mkdir(exist_ok=True)
        for name, original in table.items():
            before, after = downscale(backgrounds / original, HERE / folder / f"{name}.png")
            print(f"{folder}/{name}.png  {before[0]}x{before[1]} -> {after[0]}x{after[1]}")
    (HERE / "classic5").mkdir(exist_ok=True)
    for name in CLASSIC5:
        shutil.copyfile(sporco_data / name, HERE / "classic5" / name)
        print(f"classic5/{name}  copied unchanged")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
