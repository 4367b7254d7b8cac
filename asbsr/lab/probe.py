"""Does the degradation branch do its job on photos it was not trained on?

Three numbers, each computed on LR patches cut from held-out photos with seeded Eq. 1
degradations (48-pixel patches, scales ``U(1.5, 4)``, the training ranges otherwise):

* **E reads the blur** -- ``probe_r2``: a ridge probe from E's representation to the log LR blur
  width ``log(sqrt(λ1² + λ2²) / s)``, scored out of fold with *folds by photo*: every patch is
  predicted by a probe fitted on patches of other photos only, so knowing which photo a patch
  came from cannot help. R² of the out-of-fold predictions.
* **M follows the blur** -- ``kernel_rho``: Spearman's ρ between the RMS radius of M's ``k̂_l``
  and the true LR blur width.
* **M's kernel explains y** -- ``reblur_gain``: the mean over patches of
  ``PSNR(x↓s ⊗ k̂_l, y) − PSNR(x↓s ⊗ k̄, y)``, with ``k̄`` the mean of M's own outputs over
  the patches. A constant estimator scores exactly 0 dB whatever its kernel; the analytic
  LR-space Gaussian (``k_h`` shrunk by ``s``) scores several dB.

Two diagnostics go with them: ``photo_share`` and ``blur_share``, the fraction of the variance of
E's representation explained by which photo a patch came from and by the quartile of its blur
width (between-group sum of squares over the total). And the study of Fig. 4,
``scale_trend``: for fixed ``k_h`` the spread of Eq. 4's ``k_l`` falls as the scale grows;
Spearman's ρ between scale and the spread of M's ``k̂_l`` says whether M follows.

``asbsr probe`` prints all of them for a zoo model or a checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple, Sequence

import torch

from asbsr.config import Config, DegradationConfig
from asbsr.degradation import Degradation, gaussian_kernel
from asbsr.sampling import sample_degradation
from asbsr.lab.analysis import (
    LabelledPatches, degraded_patches, fixed_kernel_series, in_eval_mode, kernel_spread, r2_score,
    reblur_psnr, representations, ridge_predict,
)

PROBE_SETS = ("val", "classic5", "skimage")  # photos no asbsr model trains on
PROBE_SCALES = (1.5, 4.0)
PROBE_PATCH = 48
PROBE_ALPHAS = tuple(10.0 ** e for e in range(-2, 6))
TREND_SCALES = (1.1, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)


class ProbeSet(NamedTuple):
    """Labelled LR patches and the photo each came from."""

    patches: LabelledPatches
    groups: torch.Tensor  # (N,) int: index of the photo of each patch
    names: list[str]  # photo names, indexed by ``groups``


def unique_photos(images: Sequence[tuple[str, torch.Tensor]]) -> list[tuple[str, torch.Tensor]]:
    """``images`` without repeats: a photo whose name and pixels equal an earlier one's is dropped
    (``val`` holds copies of four ``skimage`` photos). Same name, other pixels: both are kept."""
    kept: list[tuple[str, torch.Tensor]] = []
    for name, image in images:
        if not any(name == seen and image.shape == other.shape and torch.equal(image, other)
                   for seen, other in kept):
            kept.append((name, image))
    return kept


def probe_set(images: Sequence[tuple[str, torch.Tensor]], per_photo: int = 16, seed: int = 0,
              patch: int = PROBE_PATCH, scales: tuple[float, float] = PROBE_SCALES,
              cfg: DegradationConfig | None = None) -> ProbeSet:
    """``per_photo`` patches of every photo in ``images`` (``[(name, (3, H, W))]``), each with its
    own degradation drawn by ``sample_degradation`` from ``cfg``'s ranges with the scale range
    replaced by ``scales``; everything from one generator seeded with ``seed``. Photos too small
    for a ``round(patch * scales[1])`` crop are refused."""
    cfg = dataclasses.replace(cfg or DegradationConfig(), scale_range=tuple(scales))
    need = round(patch * scales[1])
    small = [name for name, image in images if min(image.shape[-2:]) < need]
    if small:
        raise ValueError(f"photos smaller than the {need}-pixel HR crop: {', '.join(small)}")
    if len(images) < 2:
        raise ValueError("folds by photo need at least 2 photos")
    generator = torch.Generator().manual_seed(seed)
    parts, groups = [], []
    for index, (name, image) in enumerate(images):
        degradations = [sample_degradation(generator, cfg) for _ in range(per_photo)]
        parts.append(degraded_patches([(name, image)], degradations, patch, generator,
                                      cfg.lr_kernel_size))
        groups += [index] * per_photo
    # field by field: tensors concatenated, lists joined
    patches = LabelledPatches(*(torch.cat(field) if isinstance(field[0], torch.Tensor) else sum(field, [])
                                for field in zip(*parts)))
    return ProbeSet(patches, torch.tensor(groups), [name for name, _ in images])


def lr_blur_width(degradations: Sequence[Degradation]) -> torch.Tensor:
    """``sqrt(λ1² + λ2²) / s`` per degradation, ``(N,)`` float64: the RMS radius of ``k_h``
    (``kernel_spread`` of a Gaussian) shrunk into LR pixels."""
    return torch.tensor([math.hypot(d.lambda1, d.lambda2) / d.scale for d in degradations],
                        dtype=torch.float64)


def analytic_lr_kernels(degradations: Sequence[Degradation], size: int = 21) -> torch.Tensor:
    """``Degradation.lr_gaussian`` of each degradation, ``(N, size, size)``: the oracle of
    ``reblur_gain``, and M's target under ``encoder.kernel_target="lr_gaussian"``."""
    return torch.stack([d.lr_gaussian(size) for d in degradations])


def rank(values: torch.Tensor) -> torch.Tensor:
    """Ranks ``0..N-1`` of ``(N,)`` values, ties given their mean rank."""
    values = values.double()
    order = values.argsort()
    ranks = torch.empty_like(values)
    ranks[order] = torch.arange(len(values), dtype=torch.float64)
    for value in values.unique():  # ties: the mean of their ranks
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two ``(N,)`` tensors (0 if either is constant)."""
    ra, rb = rank(a), rank(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    norm = (ra.square().sum() * rb.square().sum()).sqrt()
    return float((ra * rb).sum() / norm) if norm > 0 else 0.0


def grouped_ridge_r2(features: torch.Tensor, target: torch.Tensor, groups: torch.Tensor,
                     folds: int = 5, alphas: Sequence[float] = PROBE_ALPHAS) -> float:
    """Out-of-fold R² of a ridge probe ``features (N, D) -> target (N,)`` with folds by group.

    The groups (photos) are dealt round-robin into ``folds`` folds (every group in one fold).
    For each fold a ridge regression is fitted on the other folds -- features standardised and
    target centred with their statistics, the penalty chosen among ``alphas`` by the exact
    leave-one-out error on those folds -- and predicts the held-out fold. The R² is that of all
    out-of-fold predictions together against the target.
    """
    features, target = features.double(), target.double()
    labels = groups.unique()
    folds = min(folds, len(labels))
    if folds < 2:
        raise ValueError("folds by group need at least 2 groups")
    fold_of = {int(g): i % folds for i, g in enumerate(labels)}
    fold = torch.tensor([fold_of[int(g)] for g in groups])
    predicted = torch.empty_like(target)
    for held in range(folds):
        train, test = fold != held, fold == held
        predicted[test] = ridge_predict(features[train], target[train], features[test], alphas)[1]
    return r2_score(predicted, target)


def variance_share(features: torch.Tensor, groups: torch.Tensor) -> float:
    """Fraction of the total variance of ``features (N, D)`` that lies between the groups:
    ``Σ_g n_g |mean_g − mean|² / Σ_i |x_i − mean|²`` (1: the group says everything; near 0:
    nothing). Features are standardised first, so every dimension counts alike."""
    x = features.double()
    std = x.std(dim=0)
    x = (x - x.mean(dim=0)) / torch.where(std > 1e-12, std, torch.ones_like(std))
    between = sum(int((groups == g).sum()) * x[groups == g].mean(dim=0).square().sum()
                  for g in groups.unique())
    return float(between / x.square().sum().clamp_min(1e-300))


def quartiles(values: torch.Tensor) -> torch.Tensor:
    """The quartile (0-3) of each of ``(N,)`` values."""
    return (rank(values) * 4 / len(values)).floor().clamp(max=3).long()


def reblur_gain(clean: torch.Tensor, lr: torch.Tensor, kernels: torch.Tensor) -> float:
    """Mean over patches of ``PSNR(x↓s ⊗ k, y) − PSNR(x↓s ⊗ k̄, y)`` in dB, ``k̄`` the mean of
    ``kernels`` ``(N, K, K)``: how much better each patch's own kernel explains its LR patch
    than one kernel for all would (``asbsr.lab.analysis.reblur_psnr``, Y channel)."""
    # averaged in float64, so that N equal kernels average to exactly themselves
    mean = kernels.double().mean(dim=0, keepdim=True).to(kernels.dtype).expand_as(kernels)
    return float((reblur_psnr(clean, lr, kernels) - reblur_psnr(clean, lr, mean)).mean())


def estimate_kernels(encoder: torch.nn.Module, estimator: torch.nn.Module, lr: torch.Tensor,
                     batch_size: int = 256) -> torch.Tensor:
    """M's ``k̂_l`` for LR patches ``(N, 3, h, w)``: ``(N, K, K)``, both networks in eval mode."""
    return in_eval_mode(estimator, representations(encoder, lr, batch_size), batch_size)


def scale_trend(estimate: Callable[[torch.Tensor], torch.Tensor],
                images: Sequence[tuple[str, torch.Tensor]], scales: Sequence[float] = TREND_SCALES,
                kernels: Sequence[tuple[float, float, float]] = ((2.0, 2.0, 0.0), (3.5, 1.5, 0.6)),
                crop: int = 192) -> dict[str, float]:
    """Fig. 4 as numbers: Spearman's ρ between the scale and the spread (``kernel_spread``) of a
    kernel estimate, for fixed ``k_h`` over ``scales``.

    For every photo (its central ``crop`` square) and every ``(λ1, λ2, θ)`` of ``kernels``, the
    photo is degraded at each scale (bicubic), and ``estimate(lr (1, 3, h, w)) -> (1, K, K)``
    gives a kernel; the ρ of each series is averaged. Also returned for reference: the same for
    Eq. 4's ``k_l`` of the same views (``"k_l"``). A ``k_h`` estimator would give a constant
    spread (ρ about 0); the LR-space Gaussian's falls (ρ = −1). Eq. 4's ``k_l`` of these crops is
    too noisy to show the trend (ρ +0.16 over the 13 probe photos).
    """
    estimated, true = [], []
    for _, image in images:
        top, left = (image.shape[-2] - crop) // 2, (image.shape[-1] - crop) // 2
        hr = image[:, max(top, 0):max(top, 0) + crop, max(left, 0):max(left, 0) + crop]
        for l1, l2, theta in kernels:
            views = fixed_kernel_series(hr, gaussian_kernel(21, l1, l2, theta), scales)
            scale = torch.tensor([v.scale for v in views])
            estimated.append(spearman(scale, torch.cat([kernel_spread(estimate(v.lr)) for v in views])))
            true.append(spearman(scale, kernel_spread(torch.stack([v.k_l for v in views]))))
    return {"estimate": sum(estimated) / len(estimated), "k_l": sum(true) / len(true)}


def probe_stage1(encoder: torch.nn.Module, estimator: torch.nn.Module, probe: ProbeSet,
                 trend_images: Sequence[tuple[str, torch.Tensor]] | None = None) -> dict[str, float]:
    """Every number of this module for one E and M on ``probe``; ``trend_images`` (default: the
    first three photos' patches are not enough, so pass photos) adds the Fig. 4 trend."""
    patches = probe.patches
    rep = representations(encoder, patches.lr)
    kernels = estimate_kernels(encoder, estimator, patches.lr)
    width = lr_blur_width(patches.degradations)
    result = {
        "probe_r2": grouped_ridge_r2(rep, width.log(), probe.groups),
        "kernel_rho": spearman(kernel_spread(kernels.double()), width),
        "reblur_gain": reblur_gain(patches.clean, patches.lr, kernels),
        "photo_share": variance_share(rep, probe.groups),
        "blur_share": variance_share(rep, quartiles(width)),
    }
    if trend_images:
        result["scale_trend"] = scale_trend(
            lambda lr: estimate_kernels(encoder, estimator, lr), trend_images)["estimate"]
    return result


def reference_numbers(probe: ProbeSet) -> dict[str, float]:
    """What the oracles score on ``probe``: the analytic LR Gaussian's ρ and re-blur gain, and
    Eq. 4's ``k_l`` (the training target) for the same two numbers."""
    patches = probe.patches
    width = lr_blur_width(patches.degradations)
    analytic = analytic_lr_kernels(patches.degradations, patches.k_l.shape[-1])
    return {
        "analytic_rho": spearman(kernel_spread(analytic.double()), width),
        "analytic_gain": reblur_gain(patches.clean, patches.lr, analytic),
        "k_l_rho": spearman(kernel_spread(patches.k_l.double()), width),
        "k_l_gain": reblur_gain(patches.clean, patches.lr, patches.k_l),
    }


def handmade_features(lr: torch.Tensor) -> torch.Tensor:
    """A reference for E: 8 hand-made blur features per patch ``(N, 3, h, w)`` -> ``(N, 8)``.

    The log energies of the LH, HL and HH Haar bands at two levels (the second level from the
    first's LL band), the log variance of the grey patch, and the log ratio of its mean squared
    gradient to its variance -- statistics that fall as blur grows, for any content.
    """
    from asbsr.wavelet import haar_dwt

    grey = lr.double().mean(dim=1, keepdim=True)
    columns = []
    low = grey
    for _ in range(2):
        low, high = haar_dwt(low)
        columns += [high[:, band].square().mean(dim=(-2, -1)) for band in range(3)]
    variance = grey.var(dim=(-2, -1)).flatten()
    gradient = ((grey[..., 1:, :] - grey[..., :-1, :]).square().mean(dim=(-2, -1))
                + (grey[..., :, 1:] - grey[..., :, :-1]).square().mean(dim=(-2, -1))).flatten()
    columns = [c.flatten() for c in columns] + [variance, gradient / variance.clamp_min(1e-12)]
    return torch.stack(columns, dim=1).clamp_min(1e-12).log()


def load_stage1(path) -> tuple[torch.nn.Module, torch.nn.Module, Config]:
    """E and M (eval mode, CPU) and their config from any file that holds them: a zoo stage-1
    file, a zoo model (its stage-1 file beside it), or a stage-1 or stage-2 training checkpoint.
    Anything else is a ``CheckpointError``."""
    from pathlib import Path

    from asbsr.checkpoint import CheckpointError, checkpoint_config, load_state
    from asbsr.lab.zoo import load_encoder, load_zoo_checkpoint
    from asbsr.train import build_stage1

    path = Path(path)
    data = load_zoo_checkpoint(path)
    kind = data.get("kind", f"stage{data.get('stage')}")
    if kind == "zoo-model":
        if not data.get("stage1_file"):
            raise CheckpointError(f"{path} does not use E and M (no stage-1 file)")
        data = load_zoo_checkpoint(path.parent / data["stage1_file"])
    elif kind not in ("zoo-stage1", "stage1", "stage2"):
        raise CheckpointError(f"{path} holds {kind!r}, not E and M")
    config = checkpoint_config(data)
    encoder, simsiam, estimator = build_stage1(config)
    models = data["models"]
    if not load_encoder(models, encoder, simsiam):
        raise CheckpointError(f"{path} holds no implicit predictor E")
    load_state(estimator, models["estimator"], "kernel estimator M")
    return encoder.float().eval(), estimator.float().eval(), config
