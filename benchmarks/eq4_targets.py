"""How good a kernel is Eq. 4's k_l as M's training target? And does a trained E + M read a whole
image the way it reads a patch?

    python benchmarks/eq4_targets.py                   # the target-noise tables of STAGE1.md
    python benchmarks/eq4_targets.py --whole CKPT      # whole image vs 48-px tiles, one stage 1

Targets: the probe patches of ``asbsr.lab.probe`` (13 unseen photos, 16 patches each, seed 0) with
Eq. 4 (``lr_space_kernel``) computed several ways, each scored as a kernel by Spearman's ρ of its
radius against the true LR blur width and by the re-blur gain; then Eq. 4 on a wider LR region
(``L`` pixels) around each 48-px patch, scored on the patch. Nothing is trained.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from asbsr.config import DegradationConfig
from asbsr.data import load_set
from asbsr.degradation import degrade, gaussian_kernel, lr_space_kernel, resize
from asbsr.sampling import sample_degradation
from asbsr.lab.analysis import kernel_spread
from asbsr.lab.probe import (
    PROBE_SCALES, PROBE_SETS, analytic_lr_kernels, estimate_kernels, load_stage1, lr_blur_width,
    probe_set, reblur_gain, spearman,
)


def score(name: str, kernels: torch.Tensor, clean, lr, width) -> None:
    print(f"{name:42s} ρ {spearman(kernel_spread(kernels.double()), width):+.3f}   "
          f"re-blur gain {reblur_gain(clean, lr, kernels):+.2f} dB", flush=True)


def patch_targets(images) -> None:
    patches = probe_set(images, per_photo=16, seed=0).patches
    clean, lr, width = patches.clean, patches.lr, lr_blur_width(patches.degradations)
    for keep in (22, 40, 80, None):
        for taper in (0, 8):
            score(f"Eq. 4 on the patch, keep {keep}, taper {taper}",
                  lr_space_kernel(clean, lr, keep=keep, taper=taper), clean, lr, width)
    score("Eq. 4, keep 22, channel agreement", lr_space_kernel(clean, lr, channel_agreement=True),
          clean, lr, width)
    score("analytic LR Gaussian", analytic_lr_kernels(patches.degradations), clean, lr, width)


def context_targets(images, sides=(96, 160), patch: int = 48) -> None:
    cfg = dataclasses.replace(DegradationConfig(), scale_range=PROBE_SCALES)
    for side in sides:
        generator = torch.Generator().manual_seed(0)
        lrs, cleans, kernels, degradations = [], [], {}, []
        for _, image in images:
            for _ in range(16):
                d = sample_degradation(generator, cfg)
                hr_side = round(side * d.scale)
                if min(image.shape[-2:]) < hr_side:
                    continue
                top = int(torch.randint(image.shape[-2] - hr_side + 1, (1,), generator=generator))
                left = int(torch.randint(image.shape[-1] - hr_side + 1, (1,), generator=generator))
                crop = image[None, :, top:top + hr_side, left:left + hr_side]
                lr = degrade(crop, d.kernel(), d.scale, d.mode, size=(side, side))
                clean = resize(crop, (side, side), d.mode).clamp(0, 1)
                for keep in (22, 40, None):
                    for taper in (0, 8):
                        kernels.setdefault((keep, taper), []).append(
                            lr_space_kernel(clean, lr, keep=keep, taper=taper)[0])
                o = (side - patch) // 2
                lrs.append(lr[0, :, o:o + patch, o:o + patch])
                cleans.append(clean[0, :, o:o + patch, o:o + patch])
                degradations.append(d)
        lr, clean, width = torch.stack(lrs), torch.stack(cleans), lr_blur_width(degradations)
        for (keep, taper), found in kernels.items():
            score(f"Eq. 4 on {side} px (n={len(degradations)}), keep {keep}, taper {taper}",
                  torch.stack(found), clean, lr, width)


def whole_vs_tiles(checkpoint: str, images, tile: int = 48) -> None:
    encoder, estimator, _ = load_stage1(checkpoint)
    for name, image in images[:6]:
        for lam, scale in ((1.0, 2.0), (3.0, 2.0), (3.0, 4.0)):
            lr = degrade(image[None], gaussian_kernel(21, lam, lam, 0.0), scale, "bicubic")
            whole = float(kernel_spread(estimate_kernels(encoder, estimator, lr).double())[0])
            h, w = lr.shape[-2:]
            tiles = torch.cat([lr[..., i:i + tile, j:j + tile]
                               for i in range(0, h - tile + 1, tile) for j in range(0, w - tile + 1, tile)])
            parts = kernel_spread(estimate_kernels(encoder, estimator, tiles).double())
            print(f"{name:16s} λ={lam} x{scale:g}: true {lam * 2 ** 0.5 / scale:.2f}  "
                  f"whole image {whole:.2f}  median of tiles {float(parts.median()):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--whole", metavar="CKPT", help="a stage-1 checkpoint or zoo file")
    args = parser.parse_args()
    if args.whole:
        whole_vs_tiles(args.whole, load_set("val") + load_set("classic5"))
        return
    images = [image for set_name in PROBE_SETS for image in load_set(set_name)]
    patch_targets(images)
    context_targets(images)


if __name__ == "__main__":
    main()
