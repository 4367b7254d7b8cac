"""Train the model zoo: every Table 1 and Table 2 method at one preset and several seeds.

    python -m asbsr.zoo_train --preset cpu --seeds 0 1 2 [--methods ours lte ...]

Resumable at any point: each stage-1 and stage-2 run checkpoints into ``--work`` and resumes
from there; each finished model is exported (fp16) into the zoo with its config, seed, stage-1
key, the command, its wall time and its validation scores, and is skipped on the next call
when the zoo already holds that exact config. Stop it whenever you like and run the same
command again.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from asbsr.benchmark import bicubic_upscaler, degraded_set, evaluate, mean_std, model_upscaler
from asbsr.checkpoint import stage_key
from asbsr.config import METHODS, TABLE1_METHODS, TABLE2_METHODS, make_config, method_config
from asbsr.notebook import PROJECT_ROOT
from asbsr.train import train_stage1, train_stage2
from asbsr.zoo import ZOO_DIR, export_model, export_stage1, model_name, read_manifest, write_manifest

VALIDATION_SCALES = (2.0, 3.0, 4.0)


def validation_scores(upscaler, config, cache_dir: Path) -> dict:
    """Mean PSNR / SSIM on the validation photos at x2, x3, x4 (one fixed degradation each)."""
    scores = {}
    for scale in VALIDATION_SCALES:
        samples = degraded_set(config.data.val, scale, config.eval.degradation_seed,
                               config.degradation, cache_dir=cache_dir)
        rows = evaluate(upscaler, samples)
        scores[f"x{scale:g}"] = {"psnr": mean_std([r["psnr"] for r in rows])[0],
                                 "ssim": mean_std([r["ssim"] for r in rows])[0]}
    return scores


def thin_history(history: dict, points: int = 150) -> dict:
    """Every n-th value of the stage-2 curves, so the manifest stays small."""
    thinned = {}
    for key, partner in (("super", "step"), ("cycle", "cycle_step")):
        if key in history:
            n = max(1, len(history[key]) // points)
            thinned[key] = [round(v, 5) for v in history[key][::n]]
            thinned[partner] = history[partner][::n]
    return thinned


# Stage-1 variants the notebooks study: the RGB-input E (notebook 02), M trained on k_h instead of
# k_l (Fig. 4, notebook 03), and E trained with L_cl alone (the stage-1 ablation).
STAGE1_VARIANTS = {
    "rgb_input": {"encoder.input": "rgb"},
    "hr_kernel": {"encoder.kernel_target": "hr"},
    "contrastive_only": {"encoder.kernel_loss_weight": 0.0},
}


def _stage1(config, manifest, zoo: Path, work: Path, device, progress, label: str = "paper"):
    """Train (or resume) a stage-1 run and put it in the zoo unless it is there already."""
    from asbsr.zoo import find_stage1, obtain_stage1

    result = obtain_stage1(config, work / "checkpoints", train=find_stage1(config, zoo) is None,
                           device=device, progress=progress)
    print(f"stage 1 ({label}, seed {config.seed}): {result.status}", flush=True)
    key = stage_key(config, 1)
    if key not in manifest["stage1"]:
        manifest["stage1"][key] = {
            "file": export_stage1(result, zoo), "variant": label, "preset": config.preset,
            "seed": config.seed, "steps": config.stage1.steps,
            "final_losses": {k: round(v[-1], 5) for k, v in result.history.items()
                             if k in ("loss", "contrastive", "kernel")},
            "wall_seconds": result.history.get("wall_seconds"),
        }
        write_manifest(manifest, zoo)
    return result


def train_zoo(preset: str, seeds: list[int], methods: list[str], variants: list[str], work: Path,
              zoo: Path, overrides: dict, command: str, device=None, progress: bool = True) -> None:
    cache = work / "benchmark-cache"
    manifest = read_manifest(zoo)
    base = make_config(preset, overrides)
    if "bicubic" not in manifest.get("reference", {}):
        manifest.setdefault("reference", {})["bicubic"] = validation_scores(bicubic_upscaler, base, cache)
        write_manifest(manifest, zoo)
    for seed in seeds:
        config = make_config(preset, {**overrides, "seed": seed})
        stage1 = None
        for method in methods:
            mconfig = method_config(config, method)
            name = model_name(method, preset, seed)
            entry = manifest["models"].get(name)
            if entry and entry["key"] == stage_key(mconfig, 2):
                print(f"{name}: in the zoo already, skipped", flush=True)
                continue
            stage1 = stage1 or _stage1(config, manifest, zoo, work, device, progress)
            result = train_stage2(mconfig, stage1, work / "checkpoints", device=device, progress=progress)
            print(f"{name}: {result.status}", flush=True)
            scores = validation_scores(model_upscaler(result.model, config.eval.chunk), mconfig, cache)
            manifest["models"][name] = {
                "file": export_model(mconfig, result.model, method, zoo), "method": method,
                "preset": preset, "seed": seed, "key": stage_key(mconfig, 2),
                "stage1": stage_key(config, 1), "steps": mconfig.stage2.steps,
                "wall_seconds": result.history.get("wall_seconds"), "command": command,
                "scores": scores, "history": thin_history(result.history),
            }
            ours = [n for n, e in manifest["models"].items() if e["method"] == "ours"]
            if ours:
                manifest["default"] = max(ours, key=lambda n: manifest["models"][n]["scores"]["x4"]["psnr"])
            write_manifest(manifest, zoo)
            print(f"{name}: x2/x3/x4 PSNR " + " / ".join(
                f"{scores[k]['psnr']:.2f}" for k in ("x2", "x3", "x4")), flush=True)
        for label in variants:
            _stage1(make_config(preset, {**overrides, "seed": seed, **STAGE1_VARIANTS[label]}),
                    manifest, zoo, work, device, progress, label)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asbsr.zoo_train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["all"],
                        help=f"'all' or names from: {', '.join(METHODS)}")
    parser.add_argument("--variants", nargs="*", default=list(STAGE1_VARIANTS),
                        help=f"stage-1 variants to train too: {', '.join(STAGE1_VARIANTS)}")
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "runs" / "zoo-work")
    parser.add_argument("--zoo", type=Path, default=ZOO_DIR)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--device")
    args = parser.parse_args(argv)
    methods = list(dict.fromkeys(TABLE2_METHODS[-1:] + TABLE1_METHODS + TABLE2_METHODS)) \
        if args.methods == ["all"] else args.methods
    overrides = dict(item.split("=", 1) for item in args.set)
    command = "python -m asbsr.zoo_train " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    train_zoo(args.preset, args.seeds, methods, args.variants, args.work, args.zoo, overrides,
              command, args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
