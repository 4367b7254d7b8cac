"""Networks of the method: E and SimSiam (predictor), M (kernel_estimator), the EDSR feature
extractor, and the arbitrary-scale heads (LTE and the Table 1 baselines).

``build_sr_model(cfg.model)`` builds the stage-2 SR module named by ``cfg.model.head``; the
baselines are imported only when asked for.
"""

from __future__ import annotations

from torch import nn

from asbsr.config import ModelConfig

SR_HEADS = ("lte", "liif", "metasr", "srno")


def build_sr_model(cfg: ModelConfig, rep_dim: int = 256) -> nn.Module:
    """The arbitrary-scale SR module of ``cfg.head``: ``lte`` (the paper's), ``liif``,
    ``metasr`` or ``srno``. ``rep_dim`` is the width of E's representation, used when
    ``cfg.modulation`` is on. Every head shares the API ``encode`` / ``query`` / ``forward`` and
    the ``modulated`` attribute."""
    if cfg.head == "lte":
        from asbsr.models.lte import LTE
        return LTE(cfg, rep_dim)
    if cfg.head == "liif":
        from asbsr.models.baselines.liif import LIIF
        return LIIF(cfg, rep_dim)
    if cfg.head == "metasr":
        from asbsr.models.baselines.metasr import MetaSR
        return MetaSR(cfg, rep_dim)
    if cfg.head == "srno":
        from asbsr.models.baselines.srno import SRNO
        return SRNO(cfg, rep_dim)
    raise ValueError(f"unknown SR head {cfg.head!r}; valid heads: {', '.join(SR_HEADS)}")
