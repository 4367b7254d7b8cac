"""The arbitrary-scale heads of Table 1 that are not the paper's: LIIF, Meta-SR, SRNO, and the
LR-space Wiener deconvolution of the DCLS-style baselines (DCLS + LIIF, DCLS + LTE).

Each head has the API of ``asbsr.models.lte.LTE`` (``encode`` / ``query`` / ``forward``,
``modulated``, ``receptive_radius``); ``asbsr.models.build_sr_model`` builds them by name.
"""
