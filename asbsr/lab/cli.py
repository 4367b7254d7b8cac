"""The ``asbsr`` command.

    asbsr upscale IN.png OUT.png --scale 3.6      (or --size W H)
    asbsr scores [MODEL ...] [--all] [--record]   (zoo models vs bicubic on the validation photos)
    asbsr probe [MODEL ...] [--photos SET|FOLDER ...]  (does E read the blur, does M estimate k_l?)
    asbsr pipeline --preset cpu                   (the notebooks through papermill)

Bad input gets one line on stderr starting with ``error:`` and exit code 2; no output file is
written unless the whole image was computed (the write itself is atomic).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import warnings
from pathlib import Path

import torch
from PIL import Image

MIN_SIDE = 8  # E halves the input three times (Haar, two stride-2 convs)
MAX_OUTPUT_PIXELS = 250_000_000  # ~3 GB of float32 output; raise with --max-pixels


class UsageError(ValueError):
    """A problem with what the user asked for, reported as one line."""


def _positive_scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"scale must be a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"scale must be a finite number > 0, got {text!r}")
    return value


def _max_pixels(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--max-pixels must be a number, got {text!r}") from None
    if not value >= 1:  # also refuses nan
        raise argparse.ArgumentTypeError(f"--max-pixels must be a number >= 1, got {text!r}")
    return value


# Largest side each format can store (Pillow raises, or worse, only when saving).
FORMAT_MAX_SIDE = {"WEBP": 16383, "JPEG": 65500, "GIF": 65535, "BMP": 2 ** 31 - 1}
# Icon formats store a few fixed square sizes, not the image computed: refused.
ICON_FORMATS = ("ICO", "ICNS")
# Bytes per pixel to expect on disk, for the free-space check: compressed formats need less.
FORMAT_BYTES_PER_PIXEL = {"JPEG": 0.5, "WEBP": 0.5, "GIF": 1.0}


def check_output(path: Path, size: tuple[int, int]) -> list[str]:
    """Everything that would make writing an ``H x W`` RGB image to ``path`` fail, checked
    before any work: the folder exists and is writable, the path is not a folder, Pillow can
    write the format, the format can hold the size, and the disk has room. Raises
    ``UsageError``; returns notes on what the format will change (GIF's 256 colours)."""
    Image.init()
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"cannot write {path.name}: unknown image type {path.suffix!r} "
                         f"(use .png, .jpg, .tif, .bmp or .webp)")
    if fmt not in Image.SAVE:
        raise UsageError(f"cannot write {path.name}: Pillow reads {fmt} but cannot write it "
                         f"(use .png, .jpg, .tif, .bmp or .webp)")
    if fmt in ICON_FORMATS:
        raise UsageError(f"cannot write {path.name}: {fmt} stores icons at fixed square sizes, not "
                         f"the image computed (use .png)")
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give a file name for the output")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"output folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"cannot write to {path}: permission denied")
    height, width = size
    limit = FORMAT_MAX_SIDE.get(fmt)
    if limit is not None and max(height, width) > limit:
        raise UsageError(f"{fmt} stores at most {limit} pixels a side; {width}x{height} does not fit "
                         f"(use .png or .tif)")
    need = int(height * width * 3 * FORMAT_BYTES_PER_PIXEL.get(fmt, 1.0)) + (1 << 20)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise UsageError(f"{folder} has {free / 1e6:.0f} MB free; a {width}x{height} {fmt} may need "
                         f"up to {need / 1e6:.0f} MB")
    return ["GIF stores 256 colours: the output is quantised to a palette"] if fmt == "GIF" else []


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(H, W)`` of an image as ``read_image`` will return it (EXIF orientation applied), from
    its header alone: nothing is decoded. Unreadable files raise ``ImageError``."""
    from asbsr.data import ImageError, check_image_file

    path = check_image_file(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
                width, height = height, width
    except Exception as error:  # read_image gives the full reason
        raise ImageError(f"{path}: cannot read as an image ({type(error).__name__}: {error})") from None
    return height, width


def _device(name: str) -> torch.device:
    from asbsr.train import check_device

    try:
        return check_device(name)
    except ValueError as error:
        raise UsageError(str(error)) from None


def upscale_command(args: argparse.Namespace) -> int:
    from asbsr.checkpoint import CheckpointError
    from asbsr.data import read_image, save_image
    from asbsr.lab.zoo import default_name, load_model, model_path
    from asbsr.train import default_device

    output = Path(args.output)
    h, w = image_size(args.input)  # the header: the size checks below come before the decode
    if min(h, w) < MIN_SIDE:
        raise UsageError(f"{args.input} is {w}x{h} pixels; at least {MIN_SIDE} on each side needed")
    if args.size:
        width, height = args.size
        if width < 1 or height < 1:
            raise UsageError(f"--size needs positive width and height, got {width} {height}")
        out_h, out_w = height, width
        scale = max(out_h / h, out_w / w)
    else:
        scale = args.scale
        out_h, out_w = round(h * scale), round(w * scale)
        if min(out_h, out_w) < 1:
            raise UsageError(f"scale {scale} makes an empty image from {w}x{h}")
    if out_h * out_w > args.max_pixels:
        raise UsageError(f"output {out_w}x{out_h} = {out_h * out_w / 1e6:.0f} MP exceeds the limit of "
                         f"{args.max_pixels / 1e6:.0f} MP (raise it with --max-pixels)")
    if args.tile < 0 or (args.chunk is not None and args.chunk < 1):
        raise UsageError("--tile must be >= 0 and --chunk >= 1")
    output_notes = check_output(output, (out_h, out_w))
    device = _device(args.device) if args.device else default_device()
    if args.checkpoint:
        checkpoint = Path(args.checkpoint)
    else:
        name = args.model or default_name(device.type)
        if name is None:
            raise UsageError("no --model or --checkpoint given and the model zoo has no default model")
        try:
            checkpoint = model_path(name)
        except KeyError as error:
            raise UsageError(error.args[0]) from None
        best = default_name("cuda")
        if not args.model and name != best:
            print(f"note: on a CPU the default is {name}, sized for one; {best} scores higher but "
                  f"is 7-10x slower here (--model {best} to use it)", file=sys.stderr)
    # On a CPU 16k queries per pass ran as fast as 64k with half the memory (benchmarks/RESULTS.md)
    chunk = args.chunk or (65536 if device.type == "cuda" else 16384)
    try:
        model, config = load_model(checkpoint, device=device)
    except CheckpointError as error:
        raise UsageError(str(error)) from None
    low, high = config.degradation.scale_range
    if scale > high:
        print(f"warning: scale {scale:g} is above the training range ({low:g}-{high:g}); "
              f"cells are clipped as in LTE, expect softer detail", file=sys.stderr)
    elif scale < 1:
        print(f"warning: scale {scale:g} < 1 downscales; the model was trained for upscaling",
              file=sys.stderr)
    loaded = read_image(args.input)
    for note in [*loaded.notes, *output_notes]:
        print(f"note: {note}", file=sys.stderr)
    if tuple(loaded.image.shape[-2:]) != (h, w):
        raise UsageError(f"{args.input}: the header says {w}x{h}, the decoded image is "
                         f"{loaded.image.shape[-1]}x{loaded.image.shape[-2]}")
    lr = loaded.image.unsqueeze(0).to(device)
    size = (out_h, out_w)
    progress = out_h * out_w > 4_000_000
    if args.tile > 0:  # memory bounded by the tile, not by the image
        from asbsr.tiling import upscale_tiled
        try:
            sr = upscale_tiled(model, lr, size=size, tile=args.tile, chunk=chunk, progress=progress)
        except ValueError as error:  # e.g. a head whose attention spans the whole image
            raise UsageError(str(error)) from None
    else:
        from asbsr.inference import upscale
        sr = upscale(model, lr, size=size, chunk=chunk, progress=progress)
    try:
        save_image(sr[0].cpu(), output)
    except (OSError, ValueError) as error:  # e.g. the disk filled up while writing
        raise UsageError(f"could not write {output} ({error}); nothing was written") from None
    print(f"{args.input} ({w}x{h}) -> {output} ({out_w}x{out_h}, x{scale:.3g}) "
          f"with {checkpoint.name} on {device.type}")
    return 0


def scores_command(args: argparse.Namespace) -> int:
    """Re-measure zoo models on the validation photos at x2, x3, x4 against bicubic, exactly as
    the zoo driver scored them when it trained them, and print a Markdown table. With
    ``--record`` the new scores replace the stored ones (with the digest of today's photos), and
    the zoo's default models are chosen again from them."""
    import tempfile

    from asbsr.data import set_digest
    from asbsr.lab.benchmark import bicubic_upscaler, model_upscaler
    from asbsr.lab.zoo import ZOO_DIR, choose_default, default_name, load_model, read_manifest, update_manifest
    from asbsr.lab.zoo_train import VALIDATION_SCALES, validation_scores

    zoo = Path(args.zoo) if args.zoo else ZOO_DIR
    manifest = read_manifest(zoo)
    available = sorted(manifest["models"])
    device_type = _device(args.device).type
    names = available if args.all else (args.models or [default_name(device_type, zoo)])
    unknown = [n for n in names if n not in manifest["models"]]
    if not available or unknown:
        raise UsageError(f"not in the zoo: {', '.join(map(str, unknown)) or 'any model'}; "
                         f"it holds: {', '.join(available) or 'nothing'}")
    columns = [f"x{s:g}" for s in VALIDATION_SCALES]
    print("| model | " + " | ".join(f"{c} PSNR / SSIM" for c in columns) + " | stored − now, PSNR |")
    print("|---|" + "---|" * (len(columns) + 1))

    def row(label, scores, stored=None):
        cells = [f"{scores[c]['psnr']:.2f} / {scores[c]['ssim']:.4f}" for c in columns]
        drift = (f"{max(abs(stored[c]['psnr'] - scores[c]['psnr']) for c in columns):.3f} dB"
                 if stored else "")
        print(f"| {label} | " + " | ".join(cells) + f" | {drift} |", flush=True)

    measured = {}
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(args.cache) if args.cache else Path(scratch)
        first = None
        for name in names:
            model, config = load_model(zoo / manifest["models"][name]["file"], device=args.device)
            if first is None:
                first = config
                measured["bicubic"] = validation_scores(bicubic_upscaler, config, cache)
                row("bicubic", measured["bicubic"], manifest.get("reference", {}).get("bicubic"))
            upscaler = model_upscaler(model, config.eval.chunk)
            measured[name] = validation_scores(upscaler, config, cache)
            row(name, measured[name], manifest["models"][name].get("scores"))
    print(f"\nthe '{first.data.val}' photos, one degradation per photo (seed "
          f"{first.eval.degradation_seed}); Y channel, shave ceil(scale). 'stored - now' compares "
          "with the scores the zoo driver recorded from the fp32 weights at training time; the zoo "
          "holds them in fp16.")
    if args.record:
        digest = set_digest(first.data.val)

        def record(manifest):
            for name in names:
                manifest["models"][name].update(scores=measured[name], val_digest=digest,
                                                scored_from="fp16 zoo file")
            manifest.setdefault("reference", {})["bicubic"] = measured["bicubic"]
            manifest["reference_val_digest"] = digest
            choose_default(manifest)

        manifest = update_manifest(record, zoo)
        print(f"recorded in {zoo}: {len(names)} models scored on '{first.data.val}' ({digest}); "
              f"default {manifest.get('default')}, on a CPU {manifest.get('default_cpu')}")
    return 0


def probe_command(args: argparse.Namespace) -> int:
    """The three numbers of ``asbsr.lab.probe`` (and its diagnostics) for zoo models or checkpoints,
    beside what hand-made features and the oracle kernels score on the same patches."""
    from asbsr.data import load_set
    from asbsr.lab.probe import (
        PROBE_SETS, grouped_ridge_r2, handmade_features, load_stage1, lr_blur_width, probe_set,
        probe_stage1, reference_numbers, unique_photos,
    )
    from asbsr.lab.zoo import ZOO_DIR, default_name, model_path

    if args.per_photo < 4:
        raise UsageError(f"--per-photo must be at least 4, got {args.per_photo}")
    zoo = Path(args.zoo) if args.zoo else ZOO_DIR
    names = args.models or [n for n in dict.fromkeys((default_name("cpu", zoo), default_name("cuda", zoo))) if n]
    paths = []
    for name in names:
        if Path(name).suffix == ".pt" or Path(name).is_file():
            paths.append((Path(name).name, Path(name)))
            continue
        try:
            paths.append((name, model_path(name, zoo)))
        except KeyError as error:
            raise UsageError(error.args[0]) from None
    photos = args.photos or list(PROBE_SETS)
    images = unique_photos([image for set_name in photos for image in load_set(set_name)])
    try:
        probe = probe_set(images, per_photo=args.per_photo, seed=args.seed)
    except ValueError as error:
        raise UsageError(str(error)) from None
    patches = probe.patches
    print(f"{len(images)} photos ({', '.join(map(str, photos))}), {args.per_photo} patches each of "
          f"{patches.lr.shape[-1]} LR pixels, scales U(1.5, 4), seed {args.seed}; folds by photo")
    print("| model | E probe R² | M ρ | re-blur gain | Fig. 4 trend ρ | photo share | blur share |")
    print("|---|---|---|---|---|---|---|")
    for label, path in paths:
        encoder, estimator, _ = load_stage1(path)
        n = probe_stage1(encoder, estimator, probe, trend_images=images[:4])
        print(f"| {label} | {n['probe_r2']:.2f} | {n['kernel_rho']:.2f} | {n['reblur_gain']:+.2f} dB | "
              f"{n['scale_trend']:.2f} | {n['photo_share']:.2f} | {n['blur_share']:.2f} |", flush=True)
    width = lr_blur_width(patches.degradations)
    reference = reference_numbers(probe)
    handmade = grouped_ridge_r2(handmade_features(patches.lr), width.log(), probe.groups)
    print(f"| hand-made features (reference) | {handmade:.2f} | | | | | |")
    print(f"| Eq. 4's k_l itself (the paper's target for M) | | {reference['k_l_rho']:.2f} | "
          f"{reference['k_l_gain']:+.2f} dB | | | |")
    print(f"| analytic LR Gaussian (oracle) | | {reference['analytic_rho']:.2f} | "
          f"{reference['analytic_gain']:+.2f} dB | | | |")
    print("\nE probe R²: ridge from E's representation to log(sqrt(λ1² + λ2²) / s), out of fold by "
          "photo. M ρ: Spearman, RMS radius of k̂_l vs that width. Re-blur gain: mean "
          "PSNR(x↓s ⊗ k̂_l, y) − PSNR(x↓s ⊗ mean k̂_l, y). Trend: Spearman of scale vs the spread "
          "of k̂_l for fixed k_h (the LR-space Gaussian's: −1).")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asbsr", description="Arbitrary-scale blind super-resolution")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("upscale", help="super-resolve one image at any scale")
    up.add_argument("input", help="input image (PNG, JPEG, TIFF, ...; grayscale/RGBA/16-bit are converted)")
    up.add_argument("output", help="output image path; written only when complete")
    how = up.add_mutually_exclusive_group(required=True)
    how.add_argument("--scale", type=_positive_scale, help="upscaling factor, e.g. 3.6")
    how.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), help="output width and height")
    model = up.add_mutually_exclusive_group()
    model.add_argument("--model", help="a zoo model by name, e.g. ours-gpu-s0 (default: the zoo's best "
                       "'ours' model; on a CPU the best one sized for a CPU)")
    model.add_argument("--checkpoint", help="a zoo file or stage-2 training checkpoint, by path")
    up.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    up.add_argument("--chunk", type=int, help="output pixels per query pass (default: 16384 on a CPU, "
                    "65536 on a GPU; smaller needs less memory)")
    up.add_argument("--tile", type=int, default=0,
                    help="process the input in blocks of this many LR pixels (bounds memory; "
                         "equal to the whole-image result except for SRNO)")
    up.add_argument("--max-pixels", type=_max_pixels, default=MAX_OUTPUT_PIXELS,
                    help="refuse outputs larger than this many pixels")
    up.set_defaults(handler=upscale_command)
    scores = commands.add_parser("scores", help="zoo models vs bicubic on the validation photos")
    scores.add_argument("models", nargs="*", help="zoo model names (default: the default model for --device)")
    scores.add_argument("--all", action="store_true", help="every model the zoo holds")
    scores.add_argument("--zoo", help="zoo folder (default: the shipped one)")
    scores.add_argument("--cache", help="keep the degraded validation images here")
    scores.add_argument("--device", default="cpu")
    scores.add_argument("--record", action="store_true",
                        help="store the new scores in the zoo and choose its default models again")
    scores.set_defaults(handler=scores_command)
    probe = commands.add_parser("probe", help="does E read the blur and M estimate k_l, on photos "
                                "no model trains on")
    probe.add_argument("models", nargs="*", help="zoo model names or checkpoint paths (default: the "
                       "zoo's default models)")
    probe.add_argument("--photos", nargs="+",
                       help="named sets or folders of photos (default: val classic5 skimage)")
    probe.add_argument("--per-photo", type=int, default=16, help="patches per photo")
    probe.add_argument("--seed", type=int, default=0, help="seed of the degradations and crops")
    probe.add_argument("--zoo", help="zoo folder (default: the shipped one)")
    probe.set_defaults(handler=probe_command)
    pipe = commands.add_parser("pipeline", help="run the notebooks with papermill",
                               add_help=False)
    pipe.set_defaults(handler=None)
    data = commands.add_parser("data", help="download DIV2K's HR images, verified and resumable "
                               "(asbsr data div2k DIR)", add_help=False)
    data.set_defaults(handler=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["pipeline"]:
        from asbsr.lab.pipeline import main as pipeline_main
        return pipeline_main(argv[1:])
    if argv[:1] == ["data"]:
        from asbsr.lab.download import main as download_main
        return download_main(argv[1:], prog="asbsr data")
    parser = build_parser()
    args = parser.parse_args(argv)
    from asbsr.checkpoint import CheckpointError
    from asbsr.data import ImageError
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return args.handler(args)
    except (UsageError, ImageError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory; try --tile 256 and a smaller --chunk", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
