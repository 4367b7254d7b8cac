"""How fast asbsr trains and infers, at the paper's size and the CPU preset's, on this machine.

    python benchmarks/perf.py [--device cuda|cpu] [--quick] [--out results.json]
                              [--sizes gpu,cpu] [--inputs 256,512] [--scales 2,4]
                              [--warmup W] [--steps N] [--no-train] [--no-infer] [--no-sweep]
                              [--sweep-size S] [--sweep-input 256] [--sweep-scale 4]
                              [--variants default,chunk,...] [--threads T] [--in-process]
                              [--system-malloc]

Results and what they mean: benchmarks/RESULTS.md.

What it measures, with the package's own code and nothing re-implemented:

* **Training iterations per second**, stage 1 and stage 2, and the split of a step into
  sampling the batch (blur, resampling, Eq. 4), forward pass with the loss, backward pass and
  Adam: the step of ``train_stage1`` / ``train_stage2`` (their samplers, ``stage1_loss`` /
  ``stage2_loss``), ``W`` warm-up steps and then ``N`` timed ones in one process, with a
  device synchronisation at each phase boundary, so the clock is honest on a GPU too. A
  rate from fewer than ``MIN_RATE_STEPS`` timed steps is marked as such in the table.
* **Inference**: ``BlindSR.upscale`` (E on the whole image, the EDSR encoder once, then chunked
  LTE queries) of a random ``side x side`` input at x2 and x4, random weights (time does not
  depend on them). Reported: the whole call, the encoder alone, and the peak memory on top of
  what was in use before the call: ``torch.cuda.max_memory_allocated`` on a GPU; on a CPU each
  case runs in a child process that resets and reads its own peak resident set (Linux VmHWM),
  and the CPU seconds of the call are reported beside the wall time.
* **Sweep** ("make it fast"): query chunk size, ``torch.inference_mode`` around the call,
  channels-last convolutions, and bf16 autocast, each against the default path on one case.

On a CPU, training and inference run with ``asbsr.memory.keep_freed_memory()`` in force, as
``train_stage1`` / ``train_stage2`` / ``upscale`` apply it; ``--system-malloc`` leaves glibc's
allocator at its defaults (here and in the child processes).

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
from asbsr.memory import ENVIRONMENT, keep_freed_memory
from asbsr.sampling import sample_pairs, sample_sr_batch
from asbsr.train import QueryStep, build_blind_sr, build_stage1, kernel_target, stage1_loss, stage2_loss

SIZES = ("gpu", "cpu", "smoke")


# ----------------------------------------------------------------------------- helpers

def allocator(system_malloc: bool) -> bool:
    """Apply ``keep_freed_memory`` to this process, as training and inference do, or with
    ``system_malloc`` switch it off here and in child processes; returns whether it is in force."""
    if system_malloc:
        os.environ[ENVIRONMENT] = "0"
        return False
    return keep_freed_memory()


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

PHASES = ("sampling", "forward", "backward", "optimiser")
MIN_RATE_STEPS = 10  # fewer timed steps than this give a rough rate, and the table says so


def _stage_steps(stage: int, config, device: torch.device, images: list[torch.Tensor],
                 network=contextlib.nullcontext):
    """``step(index) -> {phase: seconds}``: one training step of a stage as ``train_stage1`` /
    ``train_stage2`` run it (their samplers, ``stage1_loss`` / ``stage2_loss``, backward, Adam),
    timed phase by phase, with a device synchronisation at each boundary. ``network()`` is a
    context manager entered around the network part (forward, backward, Adam), not the sampling."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    encoder, simsiam, estimator = build_stage1(config)
    if stage == 1:
        simsiam.to(device).train(), estimator.to(device).train()
        parameters = list(simsiam.parameters()) + list(estimator.parameters())
        cfg = config.stage1

        def sample():
            batch = sample_pairs(images, cfg.batch_size, cfg.patch_size, config.degradation, generator,
                                 cfg.target_context, cfg.target_taper,
                                 other_photo=cfg.positive_pair == "other_photo")
            k_true = kernel_target(batch, config.encoder.kernel_target, config.degradation.lr_kernel_size)
            return batch.lr1.to(device), batch.lr2.to(device), k_true.to(device)

        def forward(index, lr1, lr2, k_true):
            return stage1_loss(config, simsiam, estimator, lr1, lr2, k_true)[0]
    else:
        model = build_blind_sr(config, encoder, estimator).to(device)
        model.train()
        query_net = QueryStep(model)
        parameters = list(model.sr.parameters())
        cfg = config.stage2

        def sample():
            batch = sample_sr_batch(images, cfg.batch_size, cfg.patch_size, cfg.queries, config.degradation,
                                    generator)
            return tuple(t.to(device) for t in (batch.lr, batch.coord, batch.cell, batch.target))

        def forward(index, lr, coord, cell, target):
            return stage2_loss(model, query_net, lr, coord, cell, target, cfg.cycle_weight,
                               measure_cycle=(index + 1) % 10 == 0)[0]
    optimizer = torch.optim.Adam(parameters, lr=cfg.lr)

    def step(index: int) -> dict:
        marks = [time.perf_counter()]
        inputs = sample()
        sync(device), marks.append(time.perf_counter())
        with network():
            loss = forward(index, *inputs)
            sync(device), marks.append(time.perf_counter())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            sync(device), marks.append(time.perf_counter())
            optimizer.step()
            loss.item()
            sync(device), marks.append(time.perf_counter())
        return {phase: b - a for phase, a, b in zip(PHASES, marks, marks[1:])}
    return step


def time_training(size: str, device: torch.device, images: list[torch.Tensor],
                  warmup: int, steps: int) -> list[dict]:
    """Iterations per second of both stages and the split of a step: ``warmup`` steps, then
    ``steps`` timed ones, in one process (the first steps of a process run slow while memory is
    allocated and caches fill; resuming a checkpoint starts that again, so no checkpoint is
    involved). Checkpoint writes and logging of the real loop are not counted."""
    config = make_config(size)
    rows = []
    for stage in (1, 2):
        step = _stage_steps(stage, config, device, images)
        for index in range(warmup):
            step(index)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started_cpu, split = cpu_seconds(), dict.fromkeys(PHASES, 0.0)
        for index in range(warmup, warmup + steps):
            for phase, seconds in step(index).items():
                split[phase] += seconds
        used_cpu = cpu_seconds() - started_cpu
        seconds = sum(split.values())
        row = {"size": size, "stage": stage, "batch": getattr(config, f"stage{stage}").batch_size,
               "warmup": warmup, "steps": steps, "seconds": round(seconds, 3),
               "it_per_s": round(steps / seconds, 3), "s_per_it": round(seconds / steps, 3),
               **{f"{phase}_s": round(split[phase] / steps, 4) for phase in PHASES}}
        if device.type == "cpu":  # all threads
            row["cpu_s_per_it"] = round(used_cpu / steps, 3)
        if device.type == "cuda":
            row["peak_mib"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
        rows.append(row)
    return rows


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
                             "3 timed steps (a rough rate), the sweep on the cpu size, 1 repeat")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--sizes", default="gpu,cpu", help="model sizes (presets): gpu, cpu, smoke")
    parser.add_argument("--inputs", help="LR input sides (default 256,512; --quick 256)")
    parser.add_argument("--scales", default="2,4", help="upscaling factors")
    parser.add_argument("--warmup", type=int, help="warm-up training steps (default 3)")
    parser.add_argument("--steps", type=int, help="timed training steps (default 20; --quick 3)")
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
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's allocator at its defaults (no keep_freed_memory)")
    args = parser.parse_args(argv)
    kept = allocator(args.system_malloc)
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
    warmup = args.warmup if args.warmup is not None else 3
    steps = args.steps if args.steps is not None else (3 if args.quick else 20)
    if steps < 1:
        parser.error("--steps must be at least 1")
    report = {
        "device": device_name(device), "device_type": device.type, "torch": torch.__version__,
        "python": platform.python_version(), "threads": torch.get_num_threads(),
        "quick": args.quick, "keep_freed_memory": kept, "load_average_before": load_average(),
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

    for row in report["training"]:
        row["note"] = "" if row["steps"] >= MIN_RATE_STEPS else f"rough: {row['steps']} timed steps"
    print_table("training (seconds per step and its split)", report["training"], [
        ("size", "size"), ("stage", "stage"), ("batch", "batch"), ("warmup", "warm-up"),
        ("steps", "timed steps"), ("it_per_s", "it/s"), ("s_per_it", "s/it"),
        *((f"{phase}_s", phase) for phase in PHASES), ("cpu_s_per_it", "CPU s/it"),
        ("peak_mib", "peak MiB"), ("note", "")])
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
