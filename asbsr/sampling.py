"""Random training data of Section 4: degradations, stage-1 LR pairs, stage-2 query batches.

Every random number comes from the ``torch.Generator`` passed in, so one seed gives the same
batch, bit for bit. A degradation is drawn as in the paper: an odd kernel size uniformly from
``cfg.kernel_sizes`` (7..21), ``λ1, λ2 ~ U(0.2, 4)`` (standard deviations, see
``asbsr.degradation.gaussian_kernel``), ``θ ~ U(0, π)``, a downsampler uniformly from
``bicubic, bilinear, area`` and ``s ~ U(1, 4)``; then ``y = (x ⊗ k_h)↓s`` (Eq. 1).

An LR patch of side ``p`` at scale ``s`` comes from an HR crop of side ``round(p * s)``, whose
LR size ``round(round(p * s) / s)`` is exactly ``p`` for every ``s >= 1``.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from asbsr.config import DegradationConfig
from asbsr.degradation import Degradation, check_scale, degrade, lr_size, lr_space_kernel, resize
from asbsr.models.coords import make_coord, make_cell


class PairBatch(NamedTuple):
    """Stage 1: two LR patches per HR image sharing one degradation (a SimSiam positive pair)."""

    lr1: torch.Tensor  # (B, 3, p, p) in [0, 1]
    lr2: torch.Tensor  # (B, 3, p, p), another crop of the same HR image, same degradation
    clean1: torch.Tensor  # (B, 3, p, p): lr1's HR crop downsampled the same way, without blur
    k_l: torch.Tensor  # (B, K, K): Eq. 4 on (clean1, lr1), K = cfg.lr_kernel_size
    k_h: torch.Tensor  # (B, K, K): the HR kernel zero-padded to K, centred
    degradations: list[Degradation]


class SRBatch(NamedTuple):
    """Stage 2: LR patches and randomly sampled HR pixels to query."""

    lr: torch.Tensor  # (B, 3, p, p) in [0, 1]
    coord: torch.Tensor  # (B, Q, 2): (y, x) centres of the sampled HR pixels in [-1, 1]
    cell: torch.Tensor  # (B, Q, 2): (2 / H_b, 2 / W_b), the HR pixel size of sample b
    target: torch.Tensor  # (B, Q, 3): RGB of the sampled HR pixels
    clean_lr: torch.Tensor  # (B, 3, p, p): the HR crop downsampled without blur
    k_l: torch.Tensor  # (B, K, K): Eq. 4 on (clean_lr, lr)
    degradations: list[Degradation]
    hr: list[torch.Tensor]  # B crops (3, round(p * s_b), round(p * s_b)); sizes differ


def _uniform(low: float, high: float, u: float) -> float:
    return low + (high - low) * u


def sample_degradation(
    generator: torch.Generator, cfg: DegradationConfig, scale: float | None = None
) -> Degradation:
    """Draw one degradation of Section 4 from ``cfg``'s ranges; ``scale`` fixes ``s`` if given.

    Six uniforms are drawn every time (also when ``scale`` is fixed), so the random stream
    that follows does not depend on ``scale``.
    """
    u = torch.rand(6, generator=generator, dtype=torch.float64, device=generator.device).tolist()
    sizes, modes = cfg.kernel_sizes, cfg.modes
    return Degradation(
        kernel_size=int(sizes[min(int(u[0] * len(sizes)), len(sizes) - 1)]),
        lambda1=_uniform(*cfg.lambda_range, u[1]),
        lambda2=_uniform(*cfg.lambda_range, u[2]),
        theta=_uniform(*cfg.theta_range, u[3]),
        mode=modes[min(int(u[4] * len(modes)), len(modes) - 1)],
        scale=check_scale(_uniform(*cfg.scale_range, u[5]) if scale is None else scale),
    )


def _randint(high: int, generator: torch.Generator) -> int:
    """A uniform integer in ``[0, high)``."""
    return int(torch.randint(high, (1,), generator=generator, device=generator.device))


def _random_crop(image: torch.Tensor, side: int, generator: torch.Generator) -> torch.Tensor:
    top = _randint(image.shape[-2] - side + 1, generator)
    left = _randint(image.shape[-1] - side + 1, generator)
    return image[:, top:top + side, left:left + side]


def _check_inputs(
    hr_images: Sequence[torch.Tensor], batch: int, patch: int, cfg: DegradationConfig
) -> None:
    """Fail before drawing anything: every image must fit the largest HR crop."""
    if batch < 1 or patch < 1:
        raise ValueError(f"batch and patch must be >= 1, got batch={batch}, patch={patch}")
    if len(hr_images) == 0:
        raise ValueError("hr_images is empty")
    if max(cfg.kernel_sizes) > cfg.lr_kernel_size:
        raise ValueError(f"kernel sizes up to {max(cfg.kernel_sizes)} do not fit the "
                         f"{cfg.lr_kernel_size}x{cfg.lr_kernel_size} kernel tensors")
    if round(patch * cfg.scale_range[0]) < max(cfg.kernel_sizes):
        raise ValueError(f"an HR crop of {round(patch * cfg.scale_range[0])} pixels is smaller than "
                         f"the largest kernel ({max(cfg.kernel_sizes)}); use a larger patch")
    need = round(patch * cfg.scale_range[1])
    for index, image in enumerate(hr_images):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"hr_images[{index}] must be (3, H, W), got {tuple(image.shape)}")
        if min(image.shape[-2:]) < need:
            raise ValueError(f"hr_images[{index}] is {image.shape[-2]}x{image.shape[-1]}, smaller than "
                             f"the {need}x{need} HR crop of a {patch}-pixel patch at scale "
                             f"{cfg.scale_range[1]}")


def _draw(hr_images, patch, cfg, generator) -> tuple[torch.Tensor, Degradation, int]:
    """Pick an image and a degradation; return the image, the degradation and the HR side."""
    image = hr_images[_randint(len(hr_images), generator)]
    degradation = sample_degradation(generator, cfg)
    side = round(patch * degradation.scale)
    assert lr_size((side, side), degradation.scale) == (patch, patch)
    return image, degradation, side


def _other(hr_images, image, generator) -> torch.Tensor:
    """A photo of ``hr_images`` other than ``image``, uniformly (``image`` itself if it is alone)."""
    others = [other for other in hr_images if other is not image]
    return others[_randint(len(others), generator)] if others else image


def pad_kernel(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad an odd ``(k, k)`` kernel to ``(size, size)``, keeping its centre in the middle."""
    pad = (size - kernel.shape[-1]) // 2
    return F.pad(kernel, (pad, pad, pad, pad))


def sample_pairs(
    hr_images: Sequence[torch.Tensor],
    batch: int,
    patch: int,
    cfg: DegradationConfig,
    generator: torch.Generator,
    context: int = 0,
    taper: int = 0,
    other_photo: bool = False,
) -> PairBatch:
    """Stage-1 batch (Section 3.1): for each sample one HR image, one degradation, two crops.

    Both crops (side ``round(p * s)``, independent positions) are degraded with the same
    ``k_h``, downsampler and ``s`` into ``lr1`` and ``lr2`` (``(B, 3, p, p)``). ``clean1`` is
    ``lr1``'s crop downsampled by the same ``↓s`` without blur, and ``k_l`` is Eq. 4 on
    ``(clean1, lr1)``. Images ``(3, H, W)`` must all be at least ``round(p * max scale)`` on a side.

    ``context > p`` (a deviation, off by default): the first crop is a ``context``-pixel LR
    region, ``k_l`` is Eq. 4 on the whole region (``taper`` border pixels faded, see
    ``lr_space_kernel``), and ``lr1`` / ``clean1`` are a random ``p x p`` window of it. The
    degradation is the same over the region, so its kernel is estimated from
    ``(context / p)²`` times more pixels. Images must then be ``round(context * max scale)``.

    ``other_photo`` (a deviation, off by default): ``lr2`` is cropped from another photo than
    ``lr1`` (drawn uniformly among the others), degraded the same way, so that the pair shares
    its degradation and nothing else.
    """
    _check_inputs(hr_images, batch, max(patch, context), cfg)
    lr1, lr2, clean1, k_l, k_h, degradations = [], [], [], [], [], []
    for _ in range(batch):
        image, degradation, side = _draw(hr_images, patch, cfg, generator)
        kernel = degradation.kernel()
        if context > patch:
            region = _random_crop(image, round(context * degradation.scale), generator)
            big = degrade(region[None], kernel, degradation.scale, degradation.mode, cfg.noise_sigma,
                          generator, size=(context, context))
            big_clean = resize(region[None], (context, context), degradation.mode).clamp(0, 1)
            k_l.append(lr_space_kernel(big_clean, big, size=cfg.lr_kernel_size, taper=taper)[0])
            top, left = _randint(context - patch + 1, generator), _randint(context - patch + 1, generator)
            lr1.append(big[0, :, top:top + patch, left:left + patch])
            clean1.append(big_clean[0, :, top:top + patch, left:left + patch])
            crop = _random_crop(_other(hr_images, image, generator) if other_photo else image,
                                side, generator)[None]
            lr2.append(degrade(crop, kernel, degradation.scale, degradation.mode, cfg.noise_sigma,
                               generator, size=(patch, patch))[0])
        else:
            second = _other(hr_images, image, generator) if other_photo else image
            crops = torch.stack([_random_crop(image, side, generator), _random_crop(second, side, generator)])
            lr = degrade(crops, kernel, degradation.scale, degradation.mode, cfg.noise_sigma,
                         generator, size=(patch, patch))
            lr1.append(lr[0])
            lr2.append(lr[1])
            clean1.append(resize(crops[:1], (patch, patch), degradation.mode).clamp(0, 1)[0])
        k_h.append(pad_kernel(kernel, cfg.lr_kernel_size))
        degradations.append(degradation)
    lr1, clean1 = torch.stack(lr1), torch.stack(clean1)
    k_l = torch.stack(k_l) if k_l else lr_space_kernel(clean1, lr1, size=cfg.lr_kernel_size, taper=taper)
    return PairBatch(lr1, torch.stack(lr2), clean1, k_l, torch.stack(k_h).to(lr1.device), degradations)


def sample_sr_batch(
    hr_images: Sequence[torch.Tensor],
    batch: int,
    patch: int,
    queries: int,
    cfg: DegradationConfig,
    generator: torch.Generator,
) -> SRBatch:
    """Stage-2 batch (Section 3.3): LR patches and ``queries`` HR pixels per patch.

    Per sample: a random image, degradation and scale ``s``; an HR crop of side
    ``H = round(p * s)``; ``lr`` = Eq. 1 of the crop, exactly ``p x p``. ``queries`` distinct HR
    pixels are drawn (with replacement only when ``queries > H²``); ``coord`` is their centre
    (``make_coord(H, H)``), ``cell`` = ``(2 / H, 2 / H)`` and ``target`` their RGB value.
    """
    _check_inputs(hr_images, batch, patch, cfg)
    if queries < 1:
        raise ValueError(f"queries must be >= 1, got {queries}")
    lrs, cleans, coords, cells, targets, crops, degradations = [], [], [], [], [], [], []
    for _ in range(batch):
        image, degradation, side = _draw(hr_images, patch, cfg, generator)
        crop = _random_crop(image, side, generator)
        lr = degrade(crop[None], degradation.kernel(), degradation.scale, degradation.mode,
                     cfg.noise_sigma, generator, size=(patch, patch))
        lrs.append(lr[0])
        cleans.append(resize(crop[None], (patch, patch), degradation.mode).clamp(0, 1)[0])
        pixels = side * side
        if queries <= pixels:
            index = torch.randperm(pixels, generator=generator, device=generator.device)[:queries]
        else:
            index = torch.randint(pixels, (queries,), generator=generator, device=generator.device)
        index = index.to(crop.device)
        coords.append(make_coord(side, side, device=crop.device, dtype=crop.dtype)[index])
        cells.append(make_cell(side, side, queries, device=crop.device, dtype=crop.dtype))
        targets.append(crop.reshape(3, -1).t()[index])
        crops.append(crop)
        degradations.append(degradation)
    lr, clean_lr = torch.stack(lrs), torch.stack(cleans)
    k_l = lr_space_kernel(clean_lr, lr, size=cfg.lr_kernel_size)
    return SRBatch(lr, torch.stack(coords), torch.stack(cells), torch.stack(targets), clean_lr,
                   k_l, degradations, crops)
