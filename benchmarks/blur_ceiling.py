"""How well can a network of E's shape read the blur at all? A supervised ceiling for the probe.

    python benchmarks/blur_ceiling.py [--train-data DIR] [--steps 1000] [--seed 0]
                                      [--probe-sets val classic5 skimage ...] [--out FILE]

``asbsr probe`` asks of E's representation that a ridge regression read the log LR blur width
``sqrt(λ1² + λ2²) / s`` from it, on photos no model trains on. E learns that only indirectly
(SimSiam's Eq. 3 plus M's L_k). This script trains the same encoder (Haar input, per-patch
normalisation, width 256) plus one linear layer *directly* on that target (mean squared error on
the log width), on the same Eq. 1 patches and schedule as stage 1 at the ``cpu`` size (batch 32,
48-pixel patches, Adam 1e-3, cosine), and measures the same ridge probe on its representation,
and the R² of its own linear output, on the probe photos (16 patches each, seed 0), beside the
same probe on 8 hand-made blur features (``asbsr.lab.probe.handmade_features``); ``--steps 0``
measures the untrained network. What this
supervised network reaches bounds what the probe can expect of E at that budget: the blur of a
patch is only partly visible (the downsampler's own low-pass, flat regions), and no encoder can
read what is not there. One JSON line per run is appended to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from asbsr.config import make_config
from asbsr.data import load_set
from asbsr.models.predictor import DegradationEncoder
from asbsr.sampling import sample_pairs
from asbsr.train import TRAIN_MAX_SIDE, learning_rate
from asbsr.lab.analysis import r2_score, representations
from asbsr.lab.probe import PROBE_SETS, grouped_ridge_r2, handmade_features, lr_blur_width, probe_set

HERE = Path(__file__).resolve().parent


def train_ceiling(train_data: str, steps: int, seed: int) -> DegradationEncoder:
    """The encoder (and a linear head on it, kept as ``encoder.head``) trained to regress the log
    LR blur width of each Eq. 1 patch."""
    config = make_config("cpu", {"data.train": train_data, "stage1.steps": steps,
                                 "stage1.schedule": "cosine", "seed": seed})
    images = [image for _, image in load_set(train_data, max_side=TRAIN_MAX_SIDE)]
    torch.manual_seed(seed)
    encoder = DegradationEncoder("haar", config.encoder.dim, normalise=True)
    encoder.head = torch.nn.Linear(config.encoder.dim, 1)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=config.stage1.lr)
    generator = torch.Generator().manual_seed(seed)
    encoder.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step, stage=1)
        batch = sample_pairs(images, config.stage1.batch_size, config.stage1.patch_size,
                             config.degradation, generator)
        target = lr_blur_width(batch.degradations).log().float()
        predicted = encoder.head(encoder(batch.lr1)).squeeze(1)
        loss = (predicted - target).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return encoder.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-data", default="train")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe-sets", nargs="+", default=list(PROBE_SETS))
    parser.add_argument("--out", type=Path, default=HERE / "blur_ceiling.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    encoder = train_ceiling(args.train_data, args.steps, args.seed)
    seconds = time.perf_counter() - started
    probe = probe_set([image for name in args.probe_sets for image in load_set(name)], per_photo=16, seed=0)
    target = lr_blur_width(probe.patches.degradations).log()
    rep = representations(encoder, probe.patches.lr)
    with torch.no_grad():
        own = encoder.head(rep.float()).squeeze(1).double()
    row = {"train_data": args.train_data, "steps": args.steps, "seed": args.seed,
           "probe_sets": args.probe_sets, "train_seconds": round(seconds, 1),
           "probe_r2": round(grouped_ridge_r2(rep, target, probe.groups), 4),
           "head_r2": round(r2_score(own, target.double()), 4),
           "handmade_r2": round(grouped_ridge_r2(handmade_features(probe.patches.lr), target, probe.groups), 4)}
    with args.out.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
