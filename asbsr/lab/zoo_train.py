"""Train the model zoo: every Table 1 and Table 2 method at one preset and several seeds.

    python -m asbsr.lab.zoo_train --preset cpu --seeds 0 1 2 [--methods ours lte ...]

Resumable at any point: each stage-1 and stage-2 run checkpoints into ``--work`` and resumes
from there; each finished model is exported (fp16) into the zoo with its config, seed, stage-1
key, the command, its wall time and its validation scores, and is skipped on the next call
when the zoo already holds that exact config. Stop it whenever you like and run the same
command again.

To use several cores or GPUs, start the same command several times (``OMP_NUM_THREADS=1`` each
on a CPU): the processes share the work through file locks in ``--work``.
"""

from __future__ import annotations

import argparse
import functools
import shlex
import sys
from pathlib import Path

import torch

from asbsr import distributed
from asbsr.checkpoint import CheckpointError, checkpoint_path, stage_key, uses_stage1
from asbsr.config import METHODS, TABLE1_METHODS, TABLE2_METHODS, make_config, method_config
from asbsr.data import load_set, set_digest
from asbsr.sampling import sample_degradation
from asbsr.train import TRAIN_MAX_SIDE, check_device, train_stage2
from asbsr.lab.benchmark import (
    Sample, bicubic_upscaler, degrade_once, degraded_set, evaluate, image_seed, mean_std, model_upscaler,
)
from asbsr.lab.notebook import PROJECT_ROOT
from asbsr.lab.zoo import (
    ZOO_DIR, choose_default, export_model, export_stage1, file_sha256, merge_zoo, model_name, read_manifest,
    record_digests, update_manifest,
)

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


# Train-vs-validation curves: the central square of every photo, degraded once at one scale.
CURVE_SCALE, CURVE_CROP = 3.0, 192


def curve_samples(set_name: str, config) -> list[Sample]:
    """The central ``CURVE_CROP`` square of each photo of a set, degraded once at ``CURVE_SCALE``
    by its own seeded Eq. 1 degradation: small enough to measure at every checkpoint."""
    samples = []
    for name, image in load_set(set_name, max_side=TRAIN_MAX_SIDE):
        height, width = image.shape[-2:]
        side = min(CURVE_CROP, height, width)
        top, left = (height - side) // 2, (width - side) // 2
        generator = torch.Generator().manual_seed(image_seed(config.eval.degradation_seed, "curve", name))
        degradation = sample_degradation(generator, config.degradation, scale=CURVE_SCALE)
        hr, lr = degrade_once(image[:, top:top + side, left:left + side], degradation)
        samples.append(Sample(name, hr, lr, degradation))
    return samples


def psnr_monitor(config):
    """``monitor(model) -> {"train_psnr", "val_psnr"}`` for ``train_stage2``: mean PSNR (Y, shave
    3) on ``curve_samples`` of the training and of the validation photos, so that the zoo
    records whether a model overfits its few training photos. ``bicubic`` gives the same two
    numbers for bicubic interpolation, the curves' floor."""
    splits = {"train_psnr": curve_samples(config.data.train, config),
              "val_psnr": curve_samples(config.data.val, config)}

    def mean_psnr(upscaler) -> dict:
        return {split: round(mean_std([row["psnr"] for row in evaluate(upscaler, samples)])[0], 4)
                for split, samples in splits.items()}

    def monitor(model) -> dict:
        return mean_psnr(model_upscaler(model, config.eval.chunk))

    monitor.bicubic = lambda: mean_psnr(bicubic_upscaler)
    return monitor


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
# k_l (Fig. 4, notebook 03), and E trained with L_cl alone (the stage-1 ablation of section 3.5,
# which also trains "ours" on top, so the ablation has an SR result as well as a probe result).
STAGE1_VARIANTS = {
    "rgb_input": ({"encoder.input": "rgb"}, ()),
    "hr_kernel": ({"encoder.kernel_target": "hr"}, ()),
    "contrastive_only": ({"encoder.kernel_loss_weight": 0.0}, ("ours",)),
}


def _stage1(config, zoo: Path, work: Path, device, progress, label: str = "paper"):
    """Train (or resume) a stage-1 run and put it in the zoo unless it is there already.

    A lock on the run's key makes a second process that needs the same stage 1 wait for it
    and then load it, instead of training it twice."""
    from asbsr.lab.zoo import file_lock, find_stage1, obtain_stage1

    key = stage_key(config, 1)
    ranks = distributed.current()
    with distributed.main_lock(file_lock(work / "locks" / f"stage1-{key}.lock"), ranks):
        # the full-precision checkpoint of an earlier (or interrupted) run first, then the zoo's
        # fp16 copy, else train: every model of one seed then sees the same E and M
        own = checkpoint_path(work / "checkpoints", config, 1).exists()
        train = distributed.from_main(own or find_stage1(config, zoo) is None, ranks)
        result = obtain_stage1(config, work / "checkpoints", train=train, device=device, progress=progress, zoo=zoo)
        if ranks.main:
            print(f"stage 1 ({label}, seed {config.seed}): {result.status}", flush=True)
        if ranks.main and key not in read_manifest(zoo)["stage1"]:
            file = export_stage1(result, zoo)
            entry = {
                "file": file, "sha256": file_sha256(zoo / file), "variant": label, "preset": config.preset,
                "seed": config.seed, "steps": config.stage1.steps,
                "train_digest": set_digest(config.data.train),
                "final_losses": {k: round(v[-1], 5) for k, v in result.history.items()
                                 if k in ("loss", "contrastive", "kernel")},
                "wall_seconds": result.history.get("wall_seconds"),
            }
            update_manifest(lambda manifest: manifest["stage1"].__setitem__(key, entry), zoo)
        distributed.barrier(ranks)
    return result


def _stage2(config, method: str, variant: str | None, stage1_of, zoo: Path, work: Path, command: str,
            device, progress) -> None:
    """Train one SR model into the zoo, unless the zoo holds it or another process is on it."""
    from asbsr.lab.zoo import file_lock

    mconfig = method_config(config, method)
    name = model_name(method, config.preset, config.seed, variant)
    key = stage_key(mconfig, 2)
    ranks = distributed.current()
    with distributed.main_lock(file_lock(work / "locks" / f"{name}.lock", wait=False), ranks) as mine:
        if not mine:
            if ranks.main:
                print(f"{name}: another process is training it, skipped", flush=True)
            return
        entry = read_manifest(zoo)["models"].get(name)
        if distributed.from_main(bool(entry and entry["key"] == key), ranks):
            if ranks.main:
                print(f"{name}: in the zoo already, skipped", flush=True)
            return
        monitor = psnr_monitor(mconfig) if ranks.main else None  # rank 0 measures the curves
        result = train_stage2(mconfig, stage1_of(), work / "checkpoints", device=device, progress=progress,
                              monitor=monitor)
        if not ranks.main:
            distributed.barrier(ranks)  # while rank 0 scores and exports the model
            return
        print(f"{name}: {result.status}", flush=True)
        scores = validation_scores(model_upscaler(result.model, config.eval.chunk), mconfig,
                                   work / "benchmark-cache")
        file = export_model(mconfig, result.model, method, zoo, variant)
        entry = {
            "file": file, "sha256": file_sha256(zoo / file), "method": method,
            "variant": variant, "preset": config.preset, "seed": config.seed, "key": key,
            "stage1": stage_key(config, 1) if uses_stage1(mconfig) else None,
            "steps": mconfig.stage2.steps, "train_digest": set_digest(mconfig.data.train),
            "val_digest": set_digest(mconfig.data.val),
            "wall_seconds": result.history.get("wall_seconds"), "command": command,
            "scores": scores, "history": thin_history(result.history),
            "curves": {"points": result.history.get("monitor", []), "bicubic": monitor.bicubic(),
                       "scale": CURVE_SCALE, "crop": CURVE_CROP},
        }

        def record(manifest):
            manifest["models"][name] = entry
            choose_default(manifest)

        update_manifest(record, zoo)
        print(f"{name}: x2/x3/x4 PSNR " + " / ".join(
            f"{scores[k]['psnr']:.2f}" for k in ("x2", "x3", "x4")), flush=True)
        distributed.barrier(ranks)


def train_zoo(preset: str, seeds: list[int], methods: list[str], variants: list[str], work: Path,
              zoo: Path, overrides: dict, command: str, device=None, progress: bool = True) -> None:
    """Train every ``method`` and stage-1 ``variant`` for every seed into ``zoo``, skipping what
    the zoo holds. Several processes may run the same command at once (one per core or GPU): a
    model another process is training is skipped, a stage 1 another is training is waited for."""
    base = make_config(preset, overrides)
    ranks = distributed.current()
    # bicubic's validation scores, the models' floor: measured again when the photos change
    validation = set_digest(base.data.val)
    if ranks.main and read_manifest(zoo).get("reference_val_digest") != validation:
        reference = validation_scores(bicubic_upscaler, base, work / "benchmark-cache")

        def record_reference(manifest):
            manifest.setdefault("reference", {})["bicubic"] = reference
            manifest["reference_val_digest"] = validation

        update_manifest(record_reference, zoo)
    for seed in seeds:
        config = make_config(preset, {**overrides, "seed": seed})
        # trained or loaded on first use only: a seed whose models are all done needs none
        stage1_of = functools.cache(functools.partial(_stage1, config, zoo, work, device, progress))
        for method in methods:
            _stage2(config, method, None, stage1_of, zoo, work, command, device, progress)
        for label in variants:
            changes, on_top = STAGE1_VARIANTS[label]
            vconfig = make_config(preset, {**overrides, "seed": seed, **changes})
            result = _stage1(vconfig, zoo, work, device, progress, label)
            for method in on_top:
                _stage2(vconfig, method, label, lambda result=result: result, zoo, work, command,
                        device, progress)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asbsr.lab.zoo_train", description=__doc__.split("\n\n")[0])
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
    parser.add_argument("--merge", type=Path, metavar="FOLDER",
                        help="instead of training, add the models of a zoo folder trained elsewhere")
    parser.add_argument("--digests", action="store_true",
                        help="instead of training, load every zoo file the manifest lists without a "
                             "SHA-256 and record it")
    args = parser.parse_args(argv)
    if args.digests:
        try:
            recorded = record_digests(args.zoo)
        except CheckpointError as error:
            parser.exit(2, f"error: {error}\n")
        print(f"recorded the SHA-256 of {len(recorded)} files in {args.zoo / 'MANIFEST.json'}")
        return 0
    if args.merge:
        try:
            added = merge_zoo(args.merge, args.zoo)
        except (ValueError, CheckpointError) as error:
            parser.exit(2, f"error: {error}\n")
        print(f"merged into {args.zoo}: {', '.join(added) or 'nothing new'}; "
              f"default model {read_manifest(args.zoo)['default']}")
        return 0
    methods = list(dict.fromkeys(TABLE2_METHODS[-1:] + TABLE1_METHODS + TABLE2_METHODS)) \
        if args.methods == ["all"] else args.methods
    try:
        overrides = check_request(args.preset, args.seeds, methods, args.variants, args.set, args.device)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    ranks = distributed.setup(args.device)  # one process: nothing to join
    try:
        sizes = make_config(args.preset, overrides)
        distributed.check_batch(sizes.stage1.batch_size, ranks, "stage1.batch_size")
        distributed.check_batch(sizes.stage2.batch_size, ranks, "stage2.batch_size")
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    launcher = f"torchrun --nproc_per_node={ranks.world} -m" if ranks.parallel else "python -m"
    command = f"{launcher} asbsr.lab.zoo_train " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    try:
        train_zoo(args.preset, args.seeds, methods, args.variants, args.work, args.zoo, overrides,
                  command, args.device)
    except KeyboardInterrupt:
        distributed.shutdown(clean=False)
        print("interrupted: every finished model is in the zoo, the rest resumes from its last "
              "checkpoint when you run the same command again", file=sys.stderr)
        return 130
    except BaseException:
        distributed.shutdown(clean=False)
        raise
    distributed.shutdown()
    return 0


def check_request(preset: str, seeds: list[int], methods: list[str], variants: list[str],
                  settings: list[str], device: str | None) -> dict:
    """Everything a training request names, checked before the first step: the preset, the
    methods, the stage-1 variants, each ``--set KEY=VALUE`` (key and value) and the device.
    Returns the overrides; raises ``ValueError`` with one line naming what is wrong."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; valid: all, {', '.join(METHODS)}")
    unknown = [v for v in variants if v not in STAGE1_VARIANTS]
    if unknown:
        raise ValueError(f"unknown stage-1 variant {unknown[0]!r}; valid: {', '.join(STAGE1_VARIANTS)}")
    if any(seed < 0 for seed in seeds):
        raise ValueError(f"seeds must be >= 0, got {seeds}")
    malformed = [item for item in settings if "=" not in item]
    if malformed:
        raise ValueError(f"--set takes KEY=VALUE, got {malformed[0]!r}")
    overrides = dict(item.split("=", 1) for item in settings)
    for seed in seeds:  # make_config checks every key and value
        for method in methods:
            method_config(make_config(preset, {**overrides, "seed": seed}), method)
        for label in variants:
            make_config(preset, {**overrides, "seed": seed, **STAGE1_VARIANTS[label][0]})
    if device is not None:
        check_device(device)
    return overrides


if __name__ == "__main__":
    sys.exit(main())
