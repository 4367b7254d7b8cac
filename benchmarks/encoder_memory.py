"""Peak memory of E's representation of a large image: whole-image pass vs block by block.

    for mode in whole tiled none; do
        /usr/bin/time -f "$mode peak RSS %M KB" python benchmarks/encoder_memory.py $mode
    done

``none`` runs E on a 16x16 corner only: the process's own baseline (torch, the model, the image).
The paper-size E (``dim=256``, Haar input) on a random 2000x1500 image; one torch thread.
"""

import argparse
import time

import torch

from asbsr.models.predictor import DegradationEncoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("whole", "tiled", "none"))
    parser.add_argument("--width", type=int, default=2000)
    parser.add_argument("--height", type=int, default=1500)
    parser.add_argument("--tile", type=int, default=256, help="block side, in Haar-band pixels")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    encoder = DegradationEncoder("haar", 256).eval()
    lr = torch.rand(1, 3, args.height, args.width)
    started = time.perf_counter()
    with torch.no_grad():
        if args.mode == "whole":
            rep = encoder(lr)
        elif args.mode == "tiled":
            rep = encoder.forward_tiled(lr, args.tile)
        else:
            rep = encoder(lr[..., :16, :16])
    print(f"{args.mode}: |r| = {rep.norm():.6f}, {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
