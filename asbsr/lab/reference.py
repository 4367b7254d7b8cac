"""Seeded reference outputs and gradients of one paper-size training step of each stage and of
one inference call, so that a change made for speed can be shown to compute the same numbers.

    python -m asbsr.lab.reference            # compare this code with the recorded reference
    python -m asbsr.lab.reference --write    # record the reference (only before a speed change)

What is recorded (``tests/data/reference_step.json``), at the ``gpu`` preset's architecture and
batch sizes (the paper's: 16x64 modulated EDSR + LTE 256 with local ensemble, stage 1 batch 128,
stage 2 batch 16 with 2,304 HR queries and the 48x48 cycle grid), random weights from fixed
seeds, batches drawn by the package's own samplers from three validation photos:

* stage 1: ``train.stage1_loss`` on a ``sample_pairs`` batch, then backward: the losses, M's
  kernels and the gradient of every SimSiam and M parameter;
* stage 2 (Ours, cycle on): ``train.stage2_loss`` on a ``sample_sr_batch`` batch, then backward:
  the losses and the gradient of every SR-module parameter;
* inference: ``inference.upscale`` of a 48x48 LR crop at x3.5.

Everything runs in float64, so that a difference in the math shows above the rounding: in
float32 the summation order alone moves some gradients of this step by 1e-5 to 3e-5 relative
(the LTE phase weights', measured against float64), which a change of batching or of thread
count reorders. The recorded reference decodes the cycle's LR-grid queries from all four
neighbours, as the authors' code does; today's code decodes them from the nearest one
(``coords.ensemble_for``) and lands within 1e-9 of it.

A tensor is kept as a digest, not in full: its shape, norm, largest magnitude and four
projections on seeded Gaussian vectors. Two tensors agree "to 1e-5 relative" when the root mean
square of the projection differences (an estimate of the norm of their difference) is at most
1e-5 of the reference's norm, and the norms agree as closely. A gradient that is zero up to
rounding in the reference (below 1e-6 of the largest gradient norm of its stage: E's convolution
biases ahead of a BatchNorm, and M's last 1x1 filter, whose scale the kernel's normalisation
cancels, have no true gradient) must stay below that bound instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

import torch

from asbsr.config import make_config, method_config
from asbsr.data import load_set
from asbsr.files import atomic_write_text
from asbsr.inference import upscale
from asbsr.lab.notebook import PROJECT_ROOT
from asbsr.sampling import sample_pairs, sample_sr_batch
from asbsr.train import QueryStep, build_blind_sr, build_stage1, kernel_target, stage1_loss, stage2_loss

REFERENCE_FILE = PROJECT_ROOT / "tests" / "data" / "reference_step.json"
TOLERANCE = 1e-5
ZERO_GRADIENT = 1e-6  # of the largest gradient norm of a stage
PROJECTIONS = 4
PHOTOS = 3
INFERENCE_SCALE = 3.5


def digest(name: str, tensor: torch.Tensor) -> dict:
    """Shape, norm, largest magnitude and ``PROJECTIONS`` seeded Gaussian projections of a tensor
    (float64); the seed comes from ``name``, so a tensor is always projected on the same vectors."""
    values = tensor.detach().double().flatten().cpu()
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(PROJECTIONS, values.numel(), generator=generator, dtype=torch.float64)
    return {"shape": list(tensor.shape), "norm": float(values.norm()),
            "absmax": float(values.abs().max()) if values.numel() else 0.0,
            "projections": (directions @ values).tolist()}


def difference(reference: dict, current: dict) -> float:
    """Estimated ``|current - reference| / |reference|`` of two digests of the same name."""
    if reference["shape"] != current["shape"]:
        return math.inf
    gaps = [a - b for a, b in zip(reference["projections"], current["projections"])]
    rms = math.sqrt(sum(g * g for g in gaps) / len(gaps))
    return max(rms, abs(reference["norm"] - current["norm"])) / max(reference["norm"], 1e-30)


def _images(device) -> list[torch.Tensor]:
    return [image.to(device) for _, image in load_set("val", max_side=400)[:PHOTOS]]


def compute(device="cpu", dtype=torch.float64) -> dict[str, dict]:
    """The digests of one seeded stage-1 step, one stage-2 step and one inference call, with the
    models and batches in ``dtype``."""
    device = torch.device(device)
    config = method_config(make_config("gpu"), "ours")
    images = [image.to(dtype) for image in _images(device)]
    out: dict[str, dict] = {}

    torch.manual_seed(0)
    encoder, simsiam, estimator = build_stage1(config)
    simsiam.to(device, dtype).train(), estimator.to(device, dtype).train()
    cfg1 = config.stage1
    batch = sample_pairs(images, cfg1.batch_size, cfg1.patch_size, config.degradation,
                         torch.Generator().manual_seed(0), cfg1.target_context, cfg1.target_taper)
    k_true = kernel_target(batch, config.encoder.kernel_target, config.degradation.lr_kernel_size)
    loss, l_cl, k_hat = stage1_loss(config, simsiam, estimator, batch.lr1.to(device, dtype),
                                    batch.lr2.to(device, dtype), k_true.to(device, dtype))
    loss.backward()
    out["stage1/lr1"] = digest("stage1/lr1", batch.lr1)
    out["stage1/loss"] = digest("stage1/loss", torch.stack([loss, l_cl]))
    out["stage1/k_hat"] = digest("stage1/k_hat", k_hat)
    for module, prefix in ((simsiam, "simsiam"), (estimator, "estimator")):
        for name, parameter in module.named_parameters():
            key = f"stage1/grad/{prefix}.{name}"
            out[key] = digest(key, parameter.grad)

    simsiam.eval(), estimator.eval()
    for parameter in list(simsiam.parameters()) + list(estimator.parameters()):
        parameter.grad = None
    torch.manual_seed(1)
    model = build_blind_sr(config, encoder, estimator).to(device, dtype)
    model.train()
    cfg2 = config.stage2
    batch = sample_sr_batch(images, cfg2.batch_size, cfg2.patch_size, cfg2.queries, config.degradation,
                            torch.Generator().manual_seed(1))
    lr, coord, cell, target = (t.to(device, dtype) for t in (batch.lr, batch.coord, batch.cell, batch.target))
    loss, parts = stage2_loss(model, QueryStep(model), lr, coord, cell, target, cfg2.cycle_weight)
    loss.backward()
    out["stage2/lr"] = digest("stage2/lr", batch.lr)
    out["stage2/loss"] = digest("stage2/loss", torch.stack([loss, parts["super"], parts["cycle"]]))
    for name, parameter in model.sr.named_parameters():
        key = f"stage2/grad/sr.{name}"
        out[key] = digest(key, parameter.grad)

    model.eval()
    with torch.no_grad():
        sr = upscale(model, lr[:1], scale=INFERENCE_SCALE, chunk=8192)
    out["inference/sr"] = digest("inference/sr", sr)
    return out


def compare(reference: dict[str, dict], current: dict[str, dict]) -> list[str]:
    """The entries that do not agree, each as a line; empty when all agree."""
    problems = []
    if set(reference) != set(current):
        problems.append(f"different entries: missing {sorted(set(reference) - set(current))}, "
                        f"new {sorted(set(current) - set(reference))}")
    largest = {stage: max((d["norm"] for k, d in reference.items() if k.startswith(f"{stage}/grad/")),
                          default=0.0) for stage in ("stage1", "stage2")}
    for key in sorted(set(reference) & set(current)):
        ref, cur = reference[key], current[key]
        stage = key.split("/")[0]
        floor = ZERO_GRADIENT * largest.get(stage, 0.0)
        if "/grad/" in key and ref["norm"] < floor:
            if cur["norm"] >= floor:
                problems.append(f"{key}: zero gradient in the reference (norm {ref['norm']:.3g}), "
                                f"now {cur['norm']:.3g}")
            continue
        gap = difference(ref, cur)
        if not gap <= TOLERANCE:
            problems.append(f"{key}: relative difference {gap:.3g} > {TOLERANCE:g}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="record this code's digests as the reference")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    current = compute(args.device)
    if args.write:
        atomic_write_text(REFERENCE_FILE, json.dumps(current, indent=1) + "\n")
        print(f"wrote {len(current)} digests to {REFERENCE_FILE}")
        return 0
    problems = compare(json.loads(REFERENCE_FILE.read_text()), current)
    for line in problems:
        print(line)
    print(f"{len(current) - len(problems)} of {len(current)} digests agree to {TOLERANCE:g} relative")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
