"""Train a stage 1 (E, SimSiam heads, M) with chosen overrides and probe it as it learns.

    python benchmarks/stage1_levers.py NAME [--preset cpu] [--set KEY=VALUE ...]
                                       [--at 300,750,1500] [--work DIR] [--out FILE]

At every step count of ``--at`` the run pauses (a resumable checkpoint under ``--work``), and
``asbsr.lab.probe`` measures E and M on patches of photos no model trains on (the validation,
classic and scikit-image photos, 16 patches each, seed 0): the ridge probe R², M's ρ and re-blur
gain, the photo and blur shares of E's variance, and the Fig. 4 trend. One JSON line per
measurement is appended to ``--out`` (default ``benchmarks/stage1_levers.jsonl``); the table in
``benchmarks/STAGE1.md`` is made from those lines by ``--table``. Killed, the same command
resumes from the last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from asbsr.config import make_config
from asbsr.data import load_set
from asbsr.train import train_stage1
from asbsr.lab.probe import PROBE_SETS, probe_set, probe_stage1

HERE = Path(__file__).resolve().parent


def parse_sets(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = value
    return out


def run(name: str, preset: str, overrides: dict, milestones: list[int], work: Path, out: Path,
        per_photo: int, probe_sets: list[str]) -> None:
    config = make_config(preset, {**overrides, "stage1.steps": max(milestones),
                                  "stage1.checkpoint_every": 10 ** 9})
    images = [image for set_name in probe_sets for image in load_set(set_name)]
    probe = probe_set(images, per_photo=per_photo, seed=0)
    done = set()
    if out.exists():
        done = {(row["name"], row["step"], tuple(row.get("probe_sets", PROBE_SETS)))
                for row in map(json.loads, out.read_text().splitlines())}
    step = 0
    for milestone in sorted(milestones):
        started = time.perf_counter()
        result = train_stage1(config, work, device="cpu", progress=False,
                              stop_after=max(milestone - step, 0))
        step = result.history["step"][-1]
        if (name, step, tuple(probe_sets)) in done:
            continue
        numbers = probe_stage1(result.encoder, result.estimator, probe, trend_images=images[:4])
        row = {"name": name, "preset": preset, "overrides": overrides, "step": step,
               "pairs": step * config.stage1.batch_size, "probe_sets": probe_sets,
               "train_photos": len(load_set(config.data.train)), "probe_photos": len(images),
               "train_seconds": round(result.history["wall_seconds"][0], 1),
               "kernel_l1_last100": sum(result.history["kernel"][-100:]) / len(result.history["kernel"][-100:]),
               **{k: round(v, 4) for k, v in numbers.items()}}
        with out.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(json.dumps(row), f"({time.perf_counter() - started:.0f} s)", flush=True)


def table(out: Path) -> str:
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    lines = ["| run | overrides | photos: train / probe | steps | pairs | E probe R² | M ρ | re-blur gain | Fig. 4 trend ρ | photo share | blur share | train s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sets = " ".join(f"{k}={v}" for k, v in r["overrides"].items()) or "—"
        photos = f"{r.get('train_photos', 10)} / {r.get('probe_photos', 13)}"
        lines.append(f"| {r['name']} | {sets} | {photos} | {r['step']} | {r['pairs']} | {r['probe_r2']:.2f} | "
                     f"{r['kernel_rho']:.2f} | {r['reblur_gain']:+.2f} dB | {r.get('scale_trend', float('nan')):.2f} | "
                     f"{r['photo_share']:.2f} | {r['blur_share']:.2f} | {r['train_seconds']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--at", default="300,750,1500", help="step counts at which to probe")
    parser.add_argument("--work", type=Path, default=Path("runs/stage1_levers"))
    parser.add_argument("--out", type=Path, default=HERE / "stage1_levers.jsonl")
    parser.add_argument("--per-photo", type=int, default=16)
    parser.add_argument("--probe-sets", nargs="+", default=list(PROBE_SETS),
                        help="named sets or folders of photos to probe on (none may be trained on)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--table", action="store_true", help="print the Markdown table of --out")
    args = parser.parse_args()
    if args.table:
        print(table(args.out))
        return
    torch.set_num_threads(args.threads)
    run(args.name, args.preset, parse_sets(args.set), [int(v) for v in args.at.split(",")],
        args.work / args.name, args.out, args.per_photo, args.probe_sets)


if __name__ == "__main__":
    main()
