"""Rebuild the committed images of data/ from their upstream packages (run by hand, never at run time).

How the inputs were obtained (the machine reaches only PyPI and Debian). Packages of Debian 12
(bookworm) come from the system's own apt sources; those of trixie and bullseye from a private
apt configuration that leaves the system's apt state alone (``apt.conf`` setting ``Dir::State``,
``Dir::Cache`` and ``Dir::Etc::SourceList`` to a scratch folder whose ``sources.list`` names
``deb.debian.org`` trixie, trixie-security and bullseye)::

    mkdir debs && cd debs
    apt-get download lomiri-wallpapers-16.04=20.04.0-2 lomiri-wallpapers-20.04=20.04.0-2 \\
        lxqt-themes=1.2.0-1 palapeli-data=4:22.12.3-1 sddm-theme-maldives=0.19.0-5
    APT_CONFIG=apt.conf apt-get update
    APT_CONFIG=apt.conf apt-get download budgie-backgrounds=3.0-1 gnome-backgrounds=3.38.0-1 \\
        wordpress-theme-twentytwentyfour=6.8.12+dfsg1-0+deb13u1 \\
        wordpress-theme-twentytwentyfive=6.8.12+dfsg1-0+deb13u1
    pip download --no-deps sporco==0.2.2.post1 -d .   # PyPI wheel, not installed
    unzip sporco-0.2.2.post1-py3-none-any.whl -d wheel/
    cd .. && python data/prepare_data.py debs debs/wheel/sporco/data

Four validation photos come from scikit-image's own data folder (the PyPI wheel of
scikit-image 0.26.0, which asbsr installs; ``--skimage-data`` names another copy of that folder).

Each ``.deb`` is unpacked with ``dpkg-deb -x`` into ``debs/<package>/``. Photos are converted to
RGB, downscaled with PIL's antialiased Lanczos filter so that the long side is ``LONG_SIDE``
pixels (each side rounded to the nearest pixel) and written as PNG with no metadata (no ICC
profile, EXIF or text chunks: the pixels are all that is stored); the five sporco PNGs are copied
byte for byte; the four scikit-image photos keep their size (long side 451-640 px) and are
re-encoded as PNG from their pixels alone. Every written file is then checked against ``data/SHA256SUMS``; with ``--write-sums``
that file is rewritten instead. See data/SOURCES.md for the origin and license of every file.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
from pathlib import Path

from PIL import Image

LONG_SIDE = 640
HERE = Path(__file__).resolve().parent
SUMS = HERE / "SHA256SUMS"

# package -> the .deb file name apt-get download writes (":" of an epoch becomes "%3a")
DEBS = {
    "lomiri-wallpapers-16.04": "lomiri-wallpapers-16.04_20.04.0-2_all.deb",
    "lomiri-wallpapers-20.04": "lomiri-wallpapers-20.04_20.04.0-2_all.deb",
    "budgie-backgrounds": "budgie-backgrounds_3.0-1_all.deb",
    "wordpress-theme-twentytwentyfour": "wordpress-theme-twentytwentyfour_6.8.12+dfsg1-0+deb13u1_all.deb",
    "wordpress-theme-twentytwentyfive": "wordpress-theme-twentytwentyfive_6.8.12+dfsg1-0+deb13u1_all.deb",
    "lxqt-themes": "lxqt-themes_1.2.0-1_all.deb",
    "gnome-backgrounds": "gnome-backgrounds_3.38.0-1_all.deb",
    "palapeli-data": "palapeli-data_4%3a22.12.3-1_all.deb",
    "sddm-theme-maldives": "sddm-theme-maldives_0.19.0-5_all.deb",
}

LOMIRI = "lomiri-wallpapers-16.04", "usr/share/backgrounds/"
BUDGIE = "budgie-backgrounds", "usr/share/backgrounds/budgie/"
WP2024 = "wordpress-theme-twentytwentyfour", "usr/share/wordpress/wp-content/themes/twentytwentyfour/assets/images/"
WP2025 = "wordpress-theme-twentytwentyfive", "usr/share/wordpress/wp-content/themes/twentytwentyfive/assets/images/"
LXQT = "lxqt-themes", "usr/share/lxqt/wallpapers/"
GNOME = "gnome-backgrounds", "usr/share/backgrounds/gnome/"
PALAPELI = "palapeli-data", "usr/share/palapeli/collection/"
MALDIVES = "sddm-theme-maldives", "usr/share/sddm/themes/maldives/"
LOMIRI2004 = "lomiri-wallpapers-20.04", "usr/share/backgrounds/"

# (folder, committed stem, package and folder inside it, original file name)
PHOTOS = [
    ("train", "aitzgorri", LOMIRI, "aitzgorri_by_Aitzol_Berasategi.jpg"),
    ("train", "bird_lamp", LOMIRI, "free_by_Peter_Nerlich.jpg"),
    ("train", "bridge", LOMIRI, "Bridge_by_Sander_Klootwijk.jpg"),
    ("train", "clock", LOMIRI, "greentock_by_Peter_Nerlich.jpg"),
    ("train", "dandelions", LOMIRI, "seeding_by_Clements_Engelhardt.jpg"),
    ("train", "dragonfly", LOMIRI, "Dragonfly_by_Bolly.jpg"),
    ("train", "fig_bowl", LOMIRI, "Picture_0B_by_freespace.jpg"),
    ("train", "stream", LOMIRI, "life_by_Aitzol_Berasategi.jpg"),
    ("train", "sunset", LOMIRI, "sunset_by_Aitzol_Berasategi.jpg"),
    ("train", "wine_room", LOMIRI, "Wine_by_Jakkub_Mede.jpg"),
    ("train", "kleiber", LOMIRI2004, "Kleiber_by_Lukas_Baubkus.jpg"),
    ("train", "abstract_spiral", BUDGIE, "abstract-spiral.jpg"),
    ("train", "beacon_street_sunset", BUDGIE, "beacon-street-sunset.jpg"),
    ("train", "blue_periwinkle", BUDGIE, "blue-periwinkle.jpg"),
    ("train", "canyon_wren", BUDGIE, "canyon-wren.jpg"),
    ("train", "casa_mila", BUDGIE, "casa-mila.jpg"),
    ("train", "extreme_desert_hike", BUDGIE, "extreme-desert-hike.jpg"),
    ("train", "high_trestle_trail", BUDGIE, "high-trestle-trail.jpg"),
    ("train", "lake_sherburne", BUDGIE, "lake-sherburne.jpg"),
    ("train", "oakland_zoo_otters", BUDGIE, "oakland-zoo-otters.jpg"),
    ("train", "perched_osprey", BUDGIE, "perched-osprey.jpg"),
    ("train", "piazza_gae_aulenti", BUDGIE, "piazza-gae-aulenti.jpg"),
    ("train", "roman_colosseum", BUDGIE, "roman-colosseum.jpg"),
    ("train", "singaporean_cityscape", BUDGIE, "singaporean-cityscape.jpg"),
    ("train", "tea_gardens", BUDGIE, "tea-gardens.jpg"),
    ("train", "abstract_geometric_art", WP2024, "abstract-geometric-art.webp"),
    ("train", "angular_roof", WP2024, "angular-roof.webp"),
    ("train", "art_gallery", WP2024, "art-gallery.webp"),
    ("train", "building_exterior", WP2024, "building-exterior.webp"),
    ("train", "hotel_facade", WP2024, "hotel-facade.webp"),
    ("train", "museum", WP2024, "museum.webp"),
    ("train", "tourist_and_building", WP2024, "tourist-and-building.webp"),
    ("train", "windows", WP2024, "windows.webp"),
    ("train", "totara_tree", WP2025, "404-image.webp"),
    ("train", "botany_flowers", WP2025, "botany-flowers.webp"),
    ("train", "mill_workers", WP2025, "link-in-bio-background.webp"),
    ("train", "cliff_palace", WP2025, "poster-image-background.webp"),
    ("val", "brushes", LOMIRI, "Picture_1A_by_freespace.jpg"),
    ("val", "dogs", LOMIRI, "friends_by_Aitzol_Berasategi.jpg"),
    ("val", "picos_de_europa", LOMIRI, "picosdeeuropa_by_Aitzol_Berasategi.jpg"),
    ("val", "after_the_rain", LXQT, "after-the-rain.jpg"),
    ("val", "beam", LXQT, "beam.png"),
    ("val", "butterfly", LXQT, "butterfly.png"),
    ("val", "flowers", LXQT, "flowers.png"),
    ("val", "fog", LXQT, "fog.jpg"),
    ("val", "this_is_not_windows", LXQT, "this-is-not-windows.jpg"),
    ("val", "coldwarm", GNOME, "ColdWarm.jpg"),
    ("val", "seasunset", GNOME, "SeaSunset.jpg"),
    ("val", "dark_ivy", GNOME, "Dark_Ivy.jpg"),
    ("val", "cincinnati_bridge", PALAPELI, "cincinnati-bridge.jpg"),
    ("val", "citrus_fruits", PALAPELI, "citrus-fruits.jpg"),
    ("val", "european_honey_bee", PALAPELI, "european-honey-bee.jpg"),
    ("val", "maldives_jetty", MALDIVES, "background.jpg"),
]
# (committed stem in val/, file in scikit-image's data folder): its colour photographs with a
# public-domain or CC0 statement in their skimage.data docstrings
SKIMAGE_VAL = [("astronaut", "astronaut.png"), ("chelsea", "chelsea.png"), ("coffee", "coffee.png"),
               ("rocket", "rocket.jpg")]
CLASSIC5 = ("barbara.png", "kodim23.png", "monarch.png", "sail.png", "tulips.png")


def downscale(src: Path, dst: Path, long_side: int = LONG_SIDE) -> tuple[tuple, tuple]:
    """Resize ``src`` so that its long side is ``long_side`` and save its pixels alone as PNG."""
    with Image.open(src) as im:
        rgb = im.convert("RGB")
    w, h = rgb.size
    factor = long_side / max(w, h)
    size = (round(w * factor), round(h * factor))
    # PIL widens the Lanczos support by the reduction factor, i.e. it antialiases.
    small = rgb.resize(size, Image.Resampling.LANCZOS)
    # A fresh image from the bytes alone: no ICC profile, EXIF or text chunk reaches the file.
    Image.frombytes("RGB", small.size, small.tobytes()).save(dst, optimize=True)
    return (w, h), size


def repack(src: Path, dst: Path) -> tuple[int, int]:
    """Save the RGB pixels of ``src`` alone as PNG at their own size; returns (w, h)."""
    with Image.open(src) as im:
        rgb = im.convert("RGB")
    Image.frombytes("RGB", rgb.size, rgb.tobytes()).save(dst, optimize=True)
    return rgb.size


def installed_skimage_data() -> Path:
    """The data folder of the installed scikit-image (importing it downloads nothing)."""
    import skimage.data

    return Path(skimage.data.data_dir)


def unpack(debs: Path, package: str) -> Path:
    """``debs/<package>/``, unpacked from its ``.deb`` with ``dpkg-deb -x`` if not there yet."""
    root = debs / package
    if not root.is_dir():
        subprocess.run(["dpkg-deb", "-x", str(debs / DEBS[package]), str(root)], check=True)
    return root


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(debs: Path, sporco_data: Path, write_sums: bool = False,
         skimage_data: Path | None = None) -> int:
    written = []
    for folder, stem, (package, inside), original in PHOTOS:
        (HERE / folder).mkdir(exist_ok=True)
        target = HERE / folder / f"{stem}.png"
        before, after = downscale(unpack(debs, package) / inside / original, target)
        written.append(target)
        print(f"{folder}/{stem}.png  {before[0]}x{before[1]} -> {after[0]}x{after[1]}")
    skimage_data = skimage_data or installed_skimage_data()
    for stem, original in SKIMAGE_VAL:
        target = HERE / "val" / f"{stem}.png"
        width, height = repack(skimage_data / original, target)
        written.append(target)
        print(f"val/{stem}.png  {width}x{height} from scikit-image's {original}, size kept")
    (HERE / "classic5").mkdir(exist_ok=True)
    for name in CLASSIC5:
        shutil.copyfile(sporco_data / name, HERE / "classic5" / name)
        written.append(HERE / "classic5" / name)
        print(f"classic5/{name}  copied unchanged")
    lines = [f"{sha256(p)}  {p.relative_to(HERE).as_posix()}" for p in written]
    if write_sums:
        SUMS.write_text("\n".join(lines) + "\n")
        print(f"wrote {SUMS.name}: {len(lines)} files")
        return 0
    expected = set(SUMS.read_text().splitlines())
    wrong = [line.split("  ", 1)[1] for line in lines if line not in expected]
    print(f"{len(lines) - len(wrong)} of {len(lines)} files match {SUMS.name}" +
          (f"; different: {', '.join(wrong)}" if wrong else ""))
    return 1 if wrong else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("debs", type=Path, help="folder holding the .deb files")
    parser.add_argument("sporco_data", type=Path, help="sporco/data of the unpacked wheel")
    parser.add_argument("--skimage-data", type=Path,
                        help="scikit-image's data folder (default: the installed scikit-image's)")
    parser.add_argument("--write-sums", action="store_true", help="rewrite data/SHA256SUMS")
    args = parser.parse_args()
    raise SystemExit(main(args.debs, args.sporco_data, args.write_sums, args.skimage_data))
