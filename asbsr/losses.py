"""The training objectives: Eq. 3 (SimSiam), L_k (kernel L1), Eq. 5 (L_super), Eq. 6 (L_cycle).

Stage 1 minimises ``L_cl + L_k``; stage 2 minimises Eq. 7, ``L_SR = L_super + lambda * L_cycle``
with ``lambda = 0.1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from asbsr.degradation import blur


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SimSiam's D(p, z) = -<p, z> / (|p| |z|), averaged over the batch. ``z`` must already be
    detached (the stop-gradient is part of the model's forward)."""
    return -F.cosine_similarity(p, z, dim=-1).mean()


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Eq. 3, the symmetric SimSiam objective on two views of one degradation:

    ``L_cl = 1/2 D(p1, sg(z2)) + 1/2 D(p2, sg(z1))``

    ``p_i = G(proj(E(y_iH)))`` are the predictor outputs, ``z_i = proj(E(y_iH))`` the (detached)
    projections, all ``(B, dim)``. The minimum is -1 (every pair aligned).

    The paper writes Eq. 3 with E(.) in the place of the projection; like SimSiam itself (and the
    authors' code) the cosine is taken on the projector's output.
    """
    return 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)


def kernel_loss(k_hat: torch.Tensor, k_true: torch.Tensor, weight: float = 1.0,
                positive_weight: float = 1.0) -> torch.Tensor:
    """L_k = |k_hat_l - k_l|_1 (Section 3.2), weighted: ``mean(w |k_hat - k|)`` over the
    ``(B, 21, 21)`` entries, with ``w = weight`` and ``weight * positive_weight`` where
    ``k_true > 0``.

    The paper writes a plain L1 (``weight = positive_weight = 1``). The authors' code uses
    ``weight = 100`` and ``positive_weight = 2`` (L1 of ``w k_hat`` against ``w k`` with ``w`` 100,
    and 200 on the kernel's support), which makes L_k 100-200x heavier against L_cl.
    """
    w = torch.where(k_true > 0, weight * positive_weight, weight)
    return (w * (k_hat - k_true).abs()).mean()


def super_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 5, L_super = |x_hat - x|_1 over the sampled HR pixels ``(B, Q, 3)``."""
    return F.l1_loss(predicted, target)


def cycle_loss(lr_grid_prediction: torch.Tensor, k_hat: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    """Eq. 6, L_cycle = |x_hat_{down s} (*) k_hat_l - y|_1.

    Args:
        lr_grid_prediction: the SR module queried at scale 1, i.e. at the pixel centres of the
            ``h x w`` LR grid: ``(B, 3, h, w)``, an estimate of the blur-free ``x_{down s}``.
        k_hat: the frozen estimator's LR-space kernels ``(B, 21, 21)``.
        lr: the LR input ``y``, ``(B, 3, h, w)``.
    """
    return F.l1_loss(blur(lr_grid_prediction, k_hat), lr)
