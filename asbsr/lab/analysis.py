"""Measuring the stage-1 networks: does E's representation encode the degradation, and is M's
kernel the right one?

Everything here evaluates trained (or untrained) networks on LR patches whose degradation is
known, cut from held-out photos:

* ``labelled_patches`` / ``evaluation_patches`` -- LR patches with their degradation, the blur-free
  ``x↓s`` and the kernels ``k_h`` and ``k_l`` (Eq. 4), from a seeded generator;
* ``degradation_labels`` -- the numbers a representation should predict (mean blur width
  ``(λ1 + λ2) / 2``, the scale ``s`` and their ratio);
* ``pca_2d``, ``ridge_probe``, ``knn_probe`` -- a 2-D picture and two held-out R² scores of how
  well those numbers can be read off a representation;
* ``band_energies`` -- why E looks at the Haar high bands;
* ``fixed_kernel_series`` -- the study of Fig. 4: one ``k_h``, one image, many scales;
* ``reblur_psnr`` -- the LR-consistency check ``PSNR(x↓s ⊗ k, y)`` of Eq. 2;
* ``closed_loop`` -- Eq. 6 at inference on one LR patch, for a trained ``BlindSR``, and
  ``late_mean``, the level a training curve settles at.

All arithmetic is torch; the R² probes are closed-form (no optimiser, no randomness besides the
split), so a number printed in a notebook is reproducible to the last digit on one machine.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from asbsr.config import Config, DegradationConfig
from asbsr.data import load_set
from asbsr.degradation import Degradation, blur, degrade, lr_size, lr_space_kernel, resize
from asbsr.inference import grid_queries
from asbsr.losses import cycle_loss
from asbsr.metrics import psnr_y
from asbsr.sampling import pad_kernel, sample_degradation
from asbsr.wavelet import haar_dwt

BAND_NAMES = ("LH", "HL", "HH")


# ---------------------------------------------------------------- labelled LR patches

class LabelledPatches(NamedTuple):
    """LR patches with everything known about how they were made."""

    lr: torch.Tensor  # (N, 3, p, p) in [0, 1]: y = (x ⊗ k_h)↓s (Eq. 1, noise-free)
    clean: torch.Tensor  # (N, 3, p, p): x↓s, the same HR crop downsampled without blur
    k_l: torch.Tensor  # (N, K, K): Eq. 4 on (clean, lr)
    k_h: torch.Tensor  # (N, K, K): the HR kernel zero-padded to K
    degradations: list[Degradation]
    sources: list[str]  # the photo each patch was cut from


def degraded_patches(images: Sequence[tuple[str, torch.Tensor]], degradations: Sequence[Degradation],
                     patch: int, generator: torch.Generator, kernel_size: int = 21,
                     noise_sigma: float = 0.0) -> LabelledPatches:
    """One LR patch per given degradation, each from a random crop of a random photo.

    ``images``: ``[(name, (3, H, W)), ...]`` as ``asbsr.data.load_set`` returns them. For a
    degradation of scale ``s`` the HR crop has side ``round(patch * s)``, whose LR size is exactly
    ``patch``; the photo and the crop position are drawn from ``generator``. ``kernel_size`` is
    the side ``K`` of the returned ``k_l`` and ``k_h``.
    """
    if not images:
        raise ValueError("no images to cut patches from")
    lrs, cleans, kernels, sources = [], [], [], []
    for degradation in degradations:
        side = round(patch * degradation.scale)
        if lr_size((side, side), degradation.scale) != (patch, patch):
            raise ValueError(f"scale {degradation.scale} cannot give a {patch}-pixel patch")
        fitting = [(n, im) for n, im in images if min(im.shape[-2:]) >= side]
        if not fitting:
            raise ValueError(f"no image is large enough for a {side}-pixel HR crop")
        name, image = fitting[int(torch.randint(len(fitting), (1,), generator=generator))]
        top = int(torch.randint(image.shape[-2] - side + 1, (1,), generator=generator))
        left = int(torch.randint(image.shape[-1] - side + 1, (1,), generator=generator))
        crop = image[None, :, top:top + side, left:left + side]
        kernel = degradation.kernel()
        lrs.append(degrade(crop, kernel, degradation.scale, degradation.mode, noise_sigma,
                           generator, size=(patch, patch))[0])
        cleans.append(resize(crop, (patch, patch), degradation.mode).clamp(0, 1)[0])
        kernels.append(pad_kernel(kernel, kernel_size))
        sources.append(name)
    lr, clean = torch.stack(lrs), torch.stack(cleans)
    return LabelledPatches(lr, clean, lr_space_kernel(clean, lr, size=kernel_size),
                           torch.stack(kernels), list(degradations), sources)


def labelled_patches(images: Sequence[tuple[str, torch.Tensor]], count: int, patch: int,
                     cfg: DegradationConfig, generator: torch.Generator) -> LabelledPatches:
    """``count`` patches with degradations drawn as in training (``sample_degradation`` on
    ``cfg``'s ranges), then cut by ``degraded_patches``."""
    degradations = [sample_degradation(generator, cfg) for _ in range(count)]
    return degraded_patches(images, degradations, patch, generator, cfg.lr_kernel_size, cfg.noise_sigma)


def evaluation_patches(config: Config, count: int, seed: int, patch: int | None = None) -> LabelledPatches:
    """The labelled evaluation set of the notebooks: ``count`` patches of the held-out photos
    (``config.data.val``) at the training patch size, one random training-range degradation
    each, drawn with ``torch.Generator().manual_seed(seed)``."""
    generator = torch.Generator().manual_seed(seed)
    return labelled_patches(load_set(config.data.val), count, patch or config.stage1.patch_size,
                            config.degradation, generator)


def degradation_labels(degradations: Sequence[Degradation]) -> dict[str, torch.Tensor]:
    """The numbers a degradation representation should carry, each ``(N,)`` float64:

    * ``blur width``: the mean standard deviation ``(λ1 + λ2) / 2`` of ``k_h``, in HR pixels;
    * ``scale``: the downscaling factor ``s``;
    * ``LR blur width``: ``(λ1 + λ2) / (2 s)``, the same blur in LR pixels -- roughly what an LR
      patch can show, since downscaling by ``s`` narrows the blur by ``s``.
    """
    width = torch.tensor([(d.lambda1 + d.lambda2) / 2 for d in degradations], dtype=torch.float64)
    scale = torch.tensor([d.scale for d in degradations], dtype=torch.float64)
    return {"blur width": width, "scale": scale, "LR blur width": width / scale}


@torch.no_grad()
def in_eval_mode(module: torch.nn.Module, inputs: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``module(inputs)`` in batches, in eval mode (BatchNorm's running statistics, so a sample's
    output does not depend on its batch), on the module's device; float32 on the CPU. The
    module's mode is restored afterwards."""
    was_training = module.training
    module.eval()
    device = next(module.parameters()).device
    out = torch.cat([module(inputs[i:i + batch_size].to(device)).float().cpu()
                     for i in range(0, inputs.shape[0], batch_size)])
    module.train(was_training)
    return out


def representations(encoder: torch.nn.Module, lr: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """E's representations of ``lr`` ``(N, 3, h, w)`` as ``(N, dim)``, in eval mode."""
    return in_eval_mode(encoder, lr, batch_size)


# ---------------------------------------------------------------- probes

def pca_2d(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Principal component analysis of ``features`` ``(N, D)`` by ``torch.linalg.svd``.

    Returns ``(points (N, 2), explained (2,))``: the centred features projected on the two
    leading right singular vectors, and the fraction of the total variance each one explains.
    """
    x = features.double() - features.double().mean(dim=0)
    _, singular, vh = torch.linalg.svd(x, full_matrices=False)
    variance = singular ** 2
    explained = variance[:2] / variance.sum().clamp_min(1e-300)
    return x @ vh[:2].T, explained


def r2_score(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """Coefficient of determination ``1 - Σ(t - p)² / Σ(t - mean t)²``; at most 1, 0 for
    predicting the mean, negative for worse than that."""
    predicted, target = predicted.double(), target.double()
    total = ((target - target.mean()) ** 2).sum()
    return float(1 - ((target - predicted) ** 2).sum() / total.clamp_min(1e-300))


def split_indices(count: int, train_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random split of ``range(count)`` into ``(train, test)`` index tensors."""
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    cut = min(max(round(count * train_fraction), 2), count - 2)
    return order[:cut], order[cut:]


def _standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre and scale both by the training split's statistics (constant features stay 0)."""
    mean, std = train.mean(dim=0), train.std(dim=0)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return (train - mean) / std, (test - mean) / std


RIDGE_ALPHAS = tuple(10.0 ** e for e in range(-3, 5))


def ridge_fit(x: torch.Tensor, t: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge regression without intercept, ``w = (XᵀX + αI)⁻¹ Xᵀ t``, for ``x`` ``(N, D)`` and a
    centred ``t`` ``(N,)`` (float64). Returns ``(w (D,), loo (N,))`` where ``loo[i]`` is the exact
    leave-one-out residual ``(t_i - x_i·w) / (1 - H_ii)``, ``H = X (XᵀX + αI)⁻¹ Xᵀ`` -- the error
    on sample ``i`` of the fit without it, with no refitting."""
    gram = x.T @ x + alpha * torch.eye(x.shape[1], dtype=x.dtype)
    weights = torch.linalg.solve(gram, x.T @ t)
    hat_diagonal = (x * torch.linalg.solve(gram, x.T).T).sum(dim=1)
    return weights, (t - x @ weights) / (1 - hat_diagonal).clamp_min(1e-12)


def ridge_probe(features: torch.Tensor, target: torch.Tensor, train_fraction: float = 0.7,
                seed: int = 0, alphas: Sequence[float] = RIDGE_ALPHAS) -> dict:
    """Linear probe: closed-form ridge regression (``ridge_fit``) from ``features`` ``(N, D)`` to
    ``target`` ``(N,)``, fitted on a seeded split and scored on the rest.

    Features are standardised and the target centred with the fitting split's statistics. The
    penalty ``α`` is the one of ``alphas`` with the smallest leave-one-out error on the fitting
    split, so the held-out split is used once, for the R² returned:
    ``{"r2": held-out R², "alpha": α, "train_r2": R² on the fitting split}``.
    """
    train, test = split_indices(features.shape[0], train_fraction, seed)
    t_train, t_test = target[train].double(), target[test].double()
    fitted, predicted, alpha = ridge_predict(features[train], t_train, features[test], alphas)
    return {"r2": r2_score(predicted, t_test), "alpha": alpha, "train_r2": r2_score(fitted, t_train)}


def ridge_predict(x_train: torch.Tensor, t_train: torch.Tensor, x_test: torch.Tensor,
                  alphas: Sequence[float] = RIDGE_ALPHAS) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Fit a ridge probe on ``(x_train (N, D), t_train (N,))`` and predict ``x_test (M, D)``.

    Features are standardised and the target centred with the fitting set's statistics; the
    penalty is the one of ``alphas`` with the smallest exact leave-one-out error on the fitting
    set (``ridge_fit``). Returns ``(predictions on x_train, predictions on x_test, alpha)``.
    """
    x_train, x_test = _standardise(x_train.double(), x_test.double())
    t_train = t_train.double()
    offset = t_train.mean()
    fits = [(float((ridge_fit(x_train, t_train - offset, alpha)[1] ** 2).mean()), alpha) for alpha in alphas]
    alpha = min(fits)[1]
    weights = ridge_fit(x_train, t_train - offset, alpha)[0]
    return x_train @ weights + offset, x_test @ weights + offset, alpha


def knn_probe(features: torch.Tensor, target: torch.Tensor, k: int = 5, train_fraction: float = 0.7,
              seed: int = 0) -> dict:
    """k-nearest-neighbour regression: each held-out sample predicts the mean target of its ``k``
    nearest training samples (Euclidean distance on standardised features). Same split as
    ``ridge_probe`` for the same ``seed``. Returns ``{"r2": held-out R², "k": k}``."""
    train, test = split_indices(features.shape[0], train_fraction, seed)
    x_train, x_test = _standardise(features[train].double(), features[test].double())
    k = min(k, len(train))
    nearest = torch.cdist(x_test, x_train).topk(k, dim=1, largest=False).indices
    predicted = target[train].double()[nearest].mean(dim=1)
    return {"r2": r2_score(predicted, target[test].double()), "k": k}


# ---------------------------------------------------------------- Haar bands

def band_energies(lr: torch.Tensor) -> torch.Tensor:
    """Mean squared value of the LL, LH, HL, HH Haar bands of ``lr`` ``(B, 3, h, w)``, averaged
    over RGB: ``(B, 4)``. Blur and downscaling remove high frequencies, so they show up in the
    last three columns first."""
    low, high = haar_dwt(lr)
    batch = lr.shape[0]
    high = high.view(batch, 3, 3, *high.shape[-2:])  # (B, RGB, band, h, w)
    return torch.cat([low.pow(2).mean(dim=(1, 2, 3))[:, None], high.pow(2).mean(dim=(1, 3, 4))], dim=1)


# ---------------------------------------------------------------- Fig. 4 and LR consistency

class ScaledView(NamedTuple):
    """One image blurred by a fixed ``k_h`` and downsampled at one scale."""

    scale: float
    lr: torch.Tensor  # (1, 3, h, w)
    clean: torch.Tensor  # (1, 3, h, w): x↓s without blur
    k_l: torch.Tensor  # (K, K): Eq. 4 on (clean, lr)


def fixed_kernel_series(hr: torch.Tensor, kernel: torch.Tensor, scales: Sequence[float],
                        mode: str = "bicubic", kernel_size: int = 21) -> list[ScaledView]:
    """The study of Fig. 4: blur one image ``hr`` ``(3, H, W)`` with one ``k_h`` and downsample
    it by each of ``scales`` (Eq. 1). Per scale the LR image, the blur-free ``x↓s`` and the
    LR-space kernel ``k_l`` of Eq. 4, which -- unlike ``k_h`` -- changes with the scale."""
    views = []
    for scale in scales:
        lr = degrade(hr[None], kernel, scale, mode)
        clean = resize(hr[None], lr.shape[-2:], mode).clamp(0, 1)
        views.append(ScaledView(float(scale), lr, clean, lr_space_kernel(clean, lr, size=kernel_size)[0]))
    return views


def kernel_spread(kernels: torch.Tensor) -> torch.Tensor:
    """Root-mean-square radius ``sqrt(Σ k(d) |d - mean d|²)`` of ``(..., K, K)`` kernels that sum
    to 1, in pixels of their own grid: ``(...)``. A Gaussian with standard deviations λ1, λ2 has
    ``sqrt(λ1² + λ2²)``."""
    size = kernels.shape[-1]
    offsets = torch.arange(size, dtype=kernels.dtype, device=kernels.device) - size // 2
    rows, cols = kernels.sum(dim=-1), kernels.sum(dim=-2)
    spread = 0.0
    for marginal in (rows, cols):
        mean = (marginal * offsets).sum(dim=-1, keepdim=True)
        spread = spread + (marginal * (offsets - mean) ** 2).sum(dim=-1)
    return spread.clamp_min(0).sqrt()


def reblur_psnr(clean: torch.Tensor, lr: torch.Tensor, kernels: torch.Tensor | None,
                shave: int = 4) -> torch.Tensor:
    """The LR-consistency of Eq. 2: PSNR (Y channel, ``asbsr.metrics.psnr_y``) of
    ``x↓s ⊗ k`` against ``y`` per sample, ``(N,)`` in dB.

    ``clean``: ``x↓s`` ``(N, 3, h, w)``; ``lr``: ``y``; ``kernels``: ``(N, K, K)`` or ``None``
    for no blur at all (the floor). ``shave`` border pixels are left out, where the reflect
    padding of the LR-space blur cannot match the HR-space blur.
    """
    reblurred = clean if kernels is None else blur(clean, kernels).clamp(0, 1)
    return torch.tensor([psnr_y(a, b, shave=shave) for a, b in zip(reblurred, lr)], dtype=torch.float64)


def mean_l1(estimated: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Per-kernel mean absolute error of ``(N, K, K)`` kernels: ``(N,)`` -- L_k of Section 3.2
    sample by sample."""
    return (estimated.double() - true.double()).abs().flatten(1).mean(dim=1)


# ---------------------------------------------------------------- the closed loop (Section 3.4)

def closed_loop(model: torch.nn.Module, y: torch.Tensor, x_down: torch.Tensor | None = None) -> dict:
    """Eq. 6 at inference on LR patches ``y`` ``(B, 3, h, w)``, for a ``BlindSR`` with M.

    The SR module is queried at the pixel centres of ``y``'s own grid with the LR cell (the
    scale-1 queries the training loop uses for the cycle), giving its estimate ``x_hat`` of the
    blur-free ``x↓s`` (not clamped: what the loss sees); M gives ``k_hat = M(E(y))``. Returns
    ``x_hat``, ``k_hat`` ``(B, k, k)``, ``reblurred = x_hat ⊗ k_hat``, ``l1`` = L_cycle (a float)
    and, when the true ``x_down`` is given, ``x_error = mean |x_hat - x↓s|``; all on ``y``'s device.
    """
    batch, _, height, width = y.shape
    coord, cell = grid_queries((height, width), (height, width), model.max_scale, device=y.device)
    with torch.no_grad():
        features = model.encode(y)
        x_hat = model.query(features, coord[None].expand(batch, -1, -1), cell[None].expand(batch, -1, -1))
        x_hat = x_hat.transpose(1, 2).reshape(batch, 3, height, width)  # (B, h*w, 3) -> images
        k_hat = model.estimator(model.representation(y))
        reblurred = blur(x_hat, k_hat)
    loop = {"x_hat": x_hat, "k_hat": k_hat, "reblurred": reblurred,
            "l1": cycle_loss(x_hat, k_hat, y).item()}
    if x_down is not None:
        loop["x_error"] = (x_hat - x_down).abs().mean().item()
    return loop


def late_mean(values: Sequence[float], fraction: float = 0.25) -> float:
    """The mean of the last ``fraction`` of a training curve (at least one point): the level it
    settles at, less noisy than its last value."""
    values = torch.as_tensor(values, dtype=torch.float64)
    if values.numel() == 0:
        raise ValueError("late_mean of an empty curve")
    return float(values[-max(1, int(values.numel() * fraction)):].mean())

