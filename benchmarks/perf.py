"""How fast asbsr trains and infers, at the paper's size and the CPU preset's, on this machine.

    python benchmarks/perf.py [--device cuda|cpu] [--quick] [--out results.json]
                              [--sizes gpu,cpu] [--inputs 256,512] [--scales 2,4]
                              [--warmup W] [--steps N] [--no-train] [--no-infer] [--no-sweep]
                              [--sweep-size S] [--sweep-input 256] [--sweep-scale 4]
                              [--variants default,chunk,...] [--threads T] [--in-process]

Results and what they mean: benchmarks/RESULTS.md.

What it measures, with the package's own code and nothing re-implemented:

* **Training iterations per second**, stage 1 and stage 2: ``train_stage1`` / ``train_stage2``
  run ``W`` warm-up steps into a temporary folder (``stop_after=W``), then resume for ``N``
  more; the rate is ``N`` over the growth of the loop's own ``history["wall_seconds"]``, which
  excludes building the models, loading the checkpoint and saving it. Every step ends in
  ``loss.item()``, a device synchronisation, so the clock is honest on a GPU too. Sampling
  the batch (blur, resampling, Eq. 4) is part of a step, as it is in training.
* **Inference**: ``BlindSR.upscale`` (E on the whole image, the EDSR encoder once, then chunked
  LTE queries) of a random ``side x side`` input at x2 and x4, random weights (time does not
  depend on them). Reported: the whole call, the encoder alone, and the peak memory on top of
  what was in use before the call: ``torch.cuda.max_memory_allocated`` on a GPU; on a CPU each
  case runs in a child process that resets and reads its own peak resident set (Linux VmHWM),
  and the CPU seconds of the call are reported beside the wall time.
* **Sweep** ("make it fast"): query chunk size, ``torch.inference_mode`` around the call,
  channels-last convolutions, and bf16 autocast, each against the default path on one case.

Timings on a shared machine are noisy: the JSON records the load average before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from asbsr.config import make_config
from asbsr.data import load_set
from asbsr.inference import upscale
from asbsr.train import build_blind_sr, build_stage1, train_stage1, train_stage2

SIZES = ("gpu", "cpu", "smoke")
NEVER = 10 ** 9  # a step count / checkpoint interval that is never reached


# ----------------------------------------------------------------------------- helpers

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores visible"


def load_average() -> list[float] | None:
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


def _status_kib(field: str) -> int | None:
    with contextlib.suppress(OSError, AttributeError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def reset_peak_rss() -> int:
    """Start a fresh resident-set peak here; returns the current resident set in KiB.

    Linux: writing 5 to /proc/self/clear_refs resets VmHWM to the current VmRSS. (ru_maxrss
    cannot serve: a child inherits its parent's peak through fork and exec.) Elsewhere the
    ru_maxrss so far is the baseline, which is right when nothing before was larger.
    """
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
        current = _status_kib("VmRSS")
        if current is not None:
            return current
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss() -> int:
    """The resident-set peak (KiB) since ``reset_peak_rss``."""
    peak = _status_kib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build_model(size: str, device: torch.device):
    """BlindSR (E + modulated EDSR + LTE) of a preset's architecture, random weights, eval mode."""
    config = make_config(size)
    torch.manual_seed(0)
    encoder, _, estimator = build_stage1(config)
    model = build_blind_sr(config, encoder, estimator).to(device).eval()
    return config, model


# ----------------------------------------------------------------------------- training

def time_training(size: str, device: torch.device, images: list[torch.Tensor],
                  warmup: int, steps: int) -> list[dict]:
    """Iterations per second of both stages, through train_stage1 / train_stage2 themselves."""
    config = make_config(size, {"stage1.steps": NEVER, "stage1.checkpoint_every": NEVER,
                                "stage2.steps": NEVER, "stage2.checkpoint_every": NEVER})

    def warm_then_time(stage: int, train) -> tuple[dict, object]:
        before = train(warmup).history["wall_seconds"][0]
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started_cpu = cpu_seconds()
        result = train(steps)  # resumes the warm-up's checkpoint
        used_cpu = cpu_seconds() - started_cpu
        seconds = result.history["wall_seconds"][0] - before
        row = {"size": size, "stage": stage, "batch": getattr(config, f"stage{stage}").batch_size,
               "warmup": warmup, "steps": steps, "seconds": round(seconds, 3),
               "it_per_s": round(steps / seconds, 3)}
        if device.type == "cpu":  # all threads, and the resume and final save included
            row["cpu_s_per_it"] = round(used_cpu / steps, 3)
        if device.type == "cuda":
            row["peak_mib"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
        return row, result

    options = dict(device=device, progress=False, images=images)
    with tempfile.TemporaryDirectory(prefix="asbsr-perf-") as folder:
        row1, stage1 = warm_then_time(
            1, lambda count: train_stage1(config, folder, stop_after=count, **options))
        row2, _ = warm_then_time(
            2, lambda count: train_stage2(config, stage1, folder, stop_after=count, **options))
    return [row1, row2]


# ----------------------------------------------------------------------------- inference

def run_case(case: dict) -> dict:
    """One inference measurement, in this process. ``case`` keys: size, side, scale, device,
    repeats, and the variants: chunk (default: the preset's ``eval.chunk``), grad
    ('inference_mode' around the call; upscale itself uses no_grad), channels_last (the SR
    module's convolutions and the input; the gathered coef/freq maps are channels-last in every
    variant, as ``encode`` makes them), bf16 (autocast)."""
    device = torch.device(case["device"])
    config, model = build_model(case["size"], device)
    chunk = case.get("chunk") or config.eval.chunk
    generator = torch.Generator().manual_seed(1)
    lr = torch.rand(1, 3, case["side"], case["side"], generator=generator).to(device)
    if case.get("channels_last"):
        model.sr.to(memory_format=torch.channels_last)
        lr = lr.contiguous(memory_format=torch.channels_last)
    grad = torch.inference_mode if case.get("grad") == "inference_mode" else contextlib.nullcontext
    precision = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if case.get("bf16") \
        else contextlib.nullcontext

    def call(**size_or_scale):
        with grad(), precision():
            return upscale(model, lr, chunk=chunk, **size_or_scale)

    def encode():
        with torch.no_grad(), precision():
            return model.encode(lr)

    # Warm-up on the same input: the encoder at its real shape, the queries at a tiny output.
    call(size=(8, 8)), encode()
    sync(device)
    started = time.perf_counter()  # E + the EDSR body + the coef/freq convolutions
    features = encode()
    sync(device)
    encode_seconds = time.perf_counter() - started
    del features
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base_bytes = torch.cuda.memory_allocated(device)
    else:
        base_kib = reset_peak_rss()
    times, cpu_times = [], []
    for _ in range(case.get("repeats", 1)):
        started, started_cpu = time.perf_counter(), cpu_seconds()
        out = call(scale=case["scale"])
        sync(device)
        times.append(time.perf_counter() - started)
        cpu_times.append(cpu_seconds() - started_cpu)
    if device.type == "cuda":
        peak_mib = (torch.cuda.max_memory_allocated(device) - base_bytes) / 2 ** 20
    else:
        peak_mib = (peak_rss() - base_kib) / 1024
    H, W = out.shape[-2:]
    result = {**case, "chunk": chunk, "out": f"{H}x{W}", "queries": H * W,
              "seconds": round(min(times), 3), "encode_seconds": round(encode_seconds, 3),
              "mpix_per_s": round(H * W / min(times) / 1e6, 3), "peak_mib": round(peak_mib, 1)}
    if device.type == "cpu":  # CPU seconds of all threads: less sensitive to other jobs than wall
        result["cpu_seconds"] = round(min(cpu_times), 3)
    if case.get("bf16"):  # how far bf16 lands from fp32 on the same input and weights
        with torch.no_grad():
            reference = upscale(model, lr, scale=case["scale"], chunk=chunk)
        result["max_abs_diff_vs_fp32"] = round(float((out.float() - reference).abs().max()), 5)
    return result


def measure(case: dict, in_process: bool = False) -> dict:
    """``run_case`` in this process on a GPU (or when asked); on a CPU in a child process, so
    that its peak resident set and allocator state belong to this case alone."""
    if case["device"] != "cpu" or in_process:
        return run_case(case)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(case),
               "--threads", str(torch.get_num_threads())]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


QUICK_MAX_GPU_SIZE_QUERIES = 512 * 512  # --quick skips paper-size cases with more outputs


def inference_cases(sizes, inputs, scales, device: str, quick: bool) -> list[dict]:
    cases = [{"size": size, "side": side, "scale": scale, "device": device,
              "repeats": 1 if device == "cpu" else 3}
             for size in sizes for side in inputs for scale in scales]
    if quick:
        cases = [c for c in cases if c["size"] != "gpu"
                 or round(c["side"] * c["scale"]) ** 2 <= QUICK_MAX_GPU_SIZE_QUERIES]
    return cases


VARIANTS = ("default", "chunk", "inference_mode", "channels_last", "bf16")


def sweep_cases(size: str, side: int, scale: float, device: str, repeats: int,
                variants=VARIANTS) -> list[dict]:
    """The default path, then one change at a time."""
    base = {"size": size, "side": side, "scale": scale, "device": device, "repeats": repeats}
    cases = [dict(base, variant="default")] if "default" in variants else []
    if "chunk" in variants:
        default_chunk = make_config(size).eval.chunk
        cases += [dict(base, variant=f"chunk {c}", chunk=c) for c in (4096, 16384, 65536)
                  if c != default_chunk]
    if "inference_mode" in variants:
        cases.append(dict(base, variant="inference_mode", grad="inference_mode"))
    if "channels_last" in variants:
        cases.append(dict(base, variant="channels_last", channels_last=True))
    if "bf16" in variants:
        cases.append(dict(base, variant="bf16 autocast", bf16=True))
    return cases


# ----------------------------------------------------------------------------- output

def print_table(title: str, rows: list[dict], columns: list[tuple[str, str]]) -> None:
    if not rows:
        return
    print(f"\n{title}")
    cells = [[str(row.get(key, "")) for key, _ in columns] for row in rows]
    widths = [max(len(head), *(len(c[i]) for c in cells)) for i, (_, head) in enumerate(columns)]
    print("  ".join(head.ljust(w) for (_, head), w in zip(columns, widths)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))


def parse_list(text: str, kind=int) -> list:
    return [kind(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true",
                        help="CPU-sized: 256^2 inputs only, paper-size outputs up to 512^2, "
                             "1 warm-up and 2 timed steps, the sweep on the cpu size, 1 repeat")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--sizes", default="gpu,cpu", help="model sizes (presets): gpu, cpu, smoke")
    parser.add_argument("--inputs", help="LR input sides (default 256,512; --quick 256)")
    parser.add_argument("--scales", default="2,4", help="upscaling factors")
    parser.add_argument("--warmup", type=int, help="warm-up training steps (default 3; --quick 1)")
    parser.add_argument("--steps", type=int, help="timed training steps (default 20; --quick 2)")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--no-infer", action="store_true")
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--sweep-size", help="model size of the sweep (default: the first of "
                        "--sizes; --quick: cpu)")
    parser.add_argument("--sweep-input", type=int, default=256, help="LR side of the sweep")
    parser.add_argument("--sweep-scale", type=float, default=4.0, help="scale of the sweep")
    parser.add_argument("--sweep-repeats", type=int,
                        help="timed calls per sweep case, the fastest kept (default 3; --quick 1)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"sweep variants, from {','.join(VARIANTS)}")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--in-process", action="store_true",
                        help="on a CPU, run the inference cases in this process (faster start)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(run_case(json.loads(args.child))))
        return 0

    device = torch.device(args.device)
    sizes = [s for s in args.sizes.split(",") if s]
    if not set(sizes) <= set(SIZES):
        parser.error(f"--sizes takes {', '.join(SIZES)}")
    inputs = parse_list(args.inputs) if args.inputs else ([256] if args.quick else [256, 512])
    scales = parse_list(args.scales, float)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    steps = args.steps if args.steps is not None else (2 if args.quick else 20)
    report = {
        "device": device_name(device), "device_type": device.type, "torch": torch.__version__,
        "python": platform.python_version(), "threads": torch.get_num_threads(),
        "quick": args.quick, "load_average_before": load_average(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "training": [], "inference": [], "sweep": [],
    }
    variants = [v for v in args.variants.split(",") if v]
    if not set(variants) <= set(VARIANTS):
        parser.error(f"--variants takes {', '.join(VARIANTS)}")

    def save(data: dict) -> None:  # after every measurement: a run cut short keeps what it did
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            temporary = args.out.with_name(args.out.name + ".tmp")
            temporary.write_text(json.dumps(data, indent=2))
            os.replace(temporary, args.out)

    print(f"perf: {report['device']} | torch {report['torch']} | {report['threads']} threads | "
          f"load {report['load_average_before']}", flush=True)

    if not args.no_train:
        # The 3 held-out photos, long side 400: plenty for 48 x 4 = 192-pixel crops, quick to
        # load; what the crops show does not change the time of a step.
        images = [image.to(device) for _, image in load_set("val", max_side=400)]
        for size in sizes:
            report["training"] += time_training(size, device, images, warmup, steps)
            save(report)
            print(f"  trained {size}: " + ", ".join(
                f"stage {r['stage']} {r['it_per_s']} it/s" for r in report["training"][-2:]), flush=True)
    if not args.no_infer:
        for case in inference_cases(sizes, inputs, scales, device.type, args.quick):
            report["inference"].append(measure(case, args.in_process))
            save(report)
            r = report["inference"][-1]
            print(f"  {r['size']} {r['side']}^2 x{r['scale']:g}: {r['seconds']} s", flush=True)
    if not args.no_sweep:
        size = args.sweep_size or ("cpu" if args.quick and "cpu" in sizes else sizes[0])
        repeats = args.sweep_repeats or (1 if args.quick else 3)
        for case in sweep_cases(size, args.sweep_input, args.sweep_scale, device.type, repeats,
                                variants):
            report["sweep"].append(measure(case, args.in_process))
            save(report)
            r = report["sweep"][-1]
            print(f"  sweep {r['variant']}: {r['seconds']} s", flush=True)
    report["load_average_after"] = load_average()

    print_table("training", report["training"], [
        ("size", "size"), ("stage", "stage"), ("batch", "batch"), ("steps", "timed steps"),
        ("it_per_s", "it/s"), ("cpu_s_per_it", "CPU s/it"), ("peak_mib", "peak MiB")])
    print_table("inference (BlindSR.upscale, random weights)", report["inference"], [
        ("size", "size"), ("side", "LR side"), ("scale", "scale"), ("out", "output"),
        ("chunk", "chunk"), ("seconds", "seconds"), ("encode_seconds", "encoder s"),
        ("mpix_per_s", "Mpix/s"), ("cpu_seconds", "CPU s"), ("peak_mib", "peak MiB")])
    print_table("sweep (one change at a time)", report["sweep"], [
        ("variant", "variant"), ("size", "size"), ("side", "LR side"), ("scale", "scale"),
        ("chunk", "chunk"), ("seconds", "seconds"), ("encode_seconds", "encoder s"),
        ("cpu_seconds", "CPU s"), ("peak_mib", "peak MiB"), ("max_abs_diff_vs_fp32", "max |bf16-fp32|")])
    print(f"\nload average before {report['load_average_before']}, after {report['load_average_after']}")
    if args.out:
        save(report)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
