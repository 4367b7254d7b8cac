"""asbsr beside the authors' code: the same networks at the paper's size, with the same weights,
checked to agree, then timed in alternation.

    python benchmarks/side_by_side.py --authors PATH [--device cpu|cuda] [--threads N]
                                      [--rounds 3] [--steps 5] [--out side_by_side.json]
                                      [--system-malloc]

``PATH`` is a checkout of the authors' public repository
(github.com/vivian210223/arbitrary-scale-blind-SR); asbsr ships none of its code, fetch it
yourself. Its modules need ``pytorch_wavelets`` (which imports ``pkg_resources``: setuptools
below 81) and ``opencv-python-headless``. They are imported as they are; only their
``datasets`` package is replaced by one that holds nothing but their ``datasets/blur.py``, so
that the data loaders' torchvision import is not needed. Their modules put some tensors on
CUDA whenever CUDA is available, so on a GPU machine run with ``--device cuda``.

Size: the paper's (the ``gpu`` preset's architecture): E and its SimSiam heads at 256, M with
filters 11/7/5/1, a 16x64 EDSR modulated by E, LTE 256 with an MLP of three 256 layers and the
local ensemble; stage 1 batch 128 of 48x48 LR patches, stage 2 batch 16 with 2,304 HR queries
and the 48x48 cycle grid. asbsr's per-patch normalisation of E's input (a deviation,
``encoder.normalise``) is switched off here, so that E computes the authors' function.

**Agreement** (printed): E's representation, M's kernel, the SR output at random queries away
from the last row and column (where asbsr's local-ensemble weights deliberately differ from
LIIF's, ``coords.gather_neighbours``), the losses of one training step of each stage, and the
inference output. Known differences in the math: the authors clamp the predictions to [0, 1]
before the L1 losses (gradients stop there), and blur the cycle's prediction with reflection
padding; asbsr does neither (``losses.cycle_loss``). One adaptation to today's PyTorch: their
``BatchBlur`` gets a contiguous copy of its input (``ContiguousInput``), without which its
``view`` fails.

**Timings** (each case ``steps`` calls, the first dropped; the two implementations alternate
for ``rounds`` rounds; the median of the per-round means is reported, with the ratio
authors / asbsr, so above 1 means asbsr is faster):

* stage-1 step, network part: E on both views, the SimSiam heads, M, L_cl + L_k, backward, Adam,
  on the same LR pair batch;
* stage-2 step, network part: E and M without gradients, the SR module on the HR queries and the
  cycle grid, L1 + 0.1 cycle L1, backward, Adam on the SR module, on the same batch;
* sampling a batch, each with its own degradation code (not equal math: asbsr draws Eq. 1 with
  Eq. 4's target per patch, the authors' SRMDPreprocessing blurs and downsamples on the fly and
  estimates the LR kernel by FFT division, which their stage-2 loop also computes every step);
* inference: a 128x128 input at x4 (512x512, 262,144 queries) in chunks of 30,000 queries.

**Allocator.** asbsr's training and ``upscale`` apply ``asbsr.memory.keep_freed_memory()`` on a
CPU; the setting belongs to the process, so this script applies it at the start and both
implementations run under it. ``--system-malloc`` runs both with glibc's defaults instead.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import types
from pathlib import Path

import torch
from torch import nn

from asbsr.config import make_config, method_config
from asbsr.data import load_set
from asbsr.files import atomic_write_text
from asbsr.inference import upscale
from asbsr.memory import ENVIRONMENT, keep_freed_memory
from asbsr.sampling import sample_pairs, sample_sr_batch
from asbsr.train import QueryStep, build_blind_sr, build_stage1, kernel_target, stage1_loss, stage2_loss

INFER_SIDE, INFER_SCALE, CHUNK = 128, 4, 30000


# ----------------------------------------------------------------------------- the authors' code

def import_authors(path: Path) -> types.SimpleNamespace:
    """Their ``models`` (with ``controller.Model``), ``utils`` and ``datasets/blur.py``."""
    path = path.resolve()
    if not (path / "models" / "lte.py").is_file() or not (path / "datasets" / "blur.py").is_file():
        raise SystemExit(f"{path} does not look like the authors' repository (models/lte.py, datasets/blur.py)")
    sys.path.insert(0, str(path))
    spec = importlib.util.spec_from_file_location("datasets.blur", path / "datasets" / "blur.py")
    blur = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(blur)
    package = types.ModuleType("datasets")
    package.__path__ = []
    package.blur = blur
    sys.modules["datasets"], sys.modules["datasets.blur"] = package, blur
    try:
        import models
        import utils
        from models.controller import Model
        from pytorch_wavelets import DWTForward
    except ImportError as error:
        raise SystemExit(f"the authors' modules need their requirements: {error} "
                         "(pip install pytorch_wavelets opencv-python-headless 'setuptools<81')")
    return types.SimpleNamespace(models=models, utils=utils, Model=Model, blur=blur, DWTForward=DWTForward)


def _rename(state: dict, rules) -> dict:
    out = {}
    for key, value in state.items():
        for test, rewrite in rules:
            new = rewrite(key) if test(key) else None
            if new is not None:
                out[new] = value
                break
        else:
            out[key] = value
    return out


# E's first convolution reads the nine Haar bands. asbsr orders them by colour channel c, then
# band (LH, HL, HH): channel 3c + b. The authors' wave() orders them by band (their HH, LH, HL:
# the same three bands, named by the other axis convention), then colour: channel 3b' + c.
# The same filters on the same data, so the mapping permutes the input channels of that conv.
BAND_SLOT = {0: 2, 1: 1, 2: 0}  # asbsr band b -> the authors' band position b'
AUTHORS_CHANNEL_OF = [3 * BAND_SLOT[i % 3] + i // 3 for i in range(9)]


def simsiam_state(state: dict) -> dict:
    """asbsr SimSiam keys -> theirs: ``encoder.body.i.j.*`` (conv j=0, BatchNorm j=1) is their
    ``encoder.(3i+j).*``, with the first conv's input channels reordered (``AUTHORS_CHANNEL_OF``);
    projector and predictor share the layout."""
    def encoder(key):
        _, _, block, layer, rest = key.split(".", 4)
        return f"encoder.{3 * int(block) + int(layer)}.{rest}"
    out = _rename(state, [(lambda k: k.startswith("encoder.body."), encoder)])
    first = out["encoder.0.weight"]
    reordered = torch.empty_like(first)
    reordered[:, AUTHORS_CHANNEL_OF] = first
    out["encoder.0.weight"] = reordered
    return out


def kernel_state(state: dict) -> dict:
    return _rename(state, [(lambda k: k.startswith("mlp."), lambda k: "decoder." + k[4:]),
                           (lambda k: k.startswith("heads."), lambda k: "dec." + k[6:])])


def lte_state(state: dict) -> dict:
    def block(key):
        _, _, index, part, rest = key.split(".", 4)
        target = {"conv1": "body.0", "conv2": "body.2", "modulation": "apt.mod"}[part]
        return f"encoder.body.{index}.{target}.{rest}"
    return _rename(state, [
        (lambda k: k.startswith("encoder.head."), lambda k: "encoder.head.0." + k[len("encoder.head."):]),
        (lambda k: k.startswith("encoder.tail."), lambda k: "encoder.body_tail." + k[len("encoder.tail."):]),
        (lambda k: k.startswith("encoder.blocks."), block),
        (lambda k: k.startswith("mlp."), lambda k: "imnet.layers." + k[4:]),
    ])


def load_into(module: nn.Module, state: dict, unused=()) -> None:
    """Load and insist that every parameter and buffer of theirs was set, except ``unused``."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not any(k.startswith(u) for u in unused)]
    if missing or unexpected:
        raise RuntimeError(f"weight mapping incomplete: missing {missing}, unexpected {unexpected}")


def build_authors(A, ours: dict, config, device) -> dict:
    """Their SimSiam, KERNEL and LTE (edsr_mod + mlp) with asbsr's weights."""
    make = A.models.make
    simsiam = make({"name": "simsiam", "args": {"dim": config.encoder.dim}})
    kernel = make({"name": "kernel", "args": {}})
    width = config.model.width
    sr = make({"name": "lte", "args": {
        "encoder_spec": {"name": "edsr_mod", "args": {"no_upsampling": True,
                                                      "n_resblocks": config.model.n_resblocks,
                                                      "n_feats": config.model.n_feats}},
        "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": list(config.model.mlp)}},
        "hidden_dim": width}})
    load_into(simsiam, simsiam_state(ours["simsiam"].state_dict()))
    load_into(kernel, kernel_state(ours["estimator"].state_dict()))
    load_into(sr, lte_state(ours["model"].sr.state_dict()), unused=("encoder.sub_mean", "encoder.add_mean"))
    return {"simsiam": simsiam.to(device), "kernel": kernel.to(device), "sr": sr.to(device),
            "wav": A.DWTForward(J=1, mode="zero", wave="haar").to(device)}


class ContiguousInput(nn.Module):
    """Their ``BatchBlur`` with a contiguous input (the same numbers). Their stage-2 forward hands
    it the LR-grid prediction reshaped from ``(B, Q, 3)``, which has channels-last strides; the
    reflection padding keeps that layout in today's PyTorch and their ``view`` then fails."""

    def __init__(self, blur: nn.Module):
        super().__init__()
        self.blur = blur

    def forward(self, image, kernel, size):
        return self.blur(image.contiguous(), kernel, size)


def authors_controller(A, theirs: dict, batch: int, queries: int, side: int, device) -> nn.Module:
    """Their stage-2 ``controller.Model`` around these modules (its constructor would load a
    stage-1 checkpoint from disk; the attributes it sets are set here instead)."""
    model = A.Model.__new__(A.Model)
    nn.Module.__init__(model)
    model.device, model.bs, model.qpt, model.N, model.inp_size = device, batch, queries, 7, side
    model.wav, model.blur = theirs["wav"], ContiguousInput(A.blur.BatchBlur())
    # frozen copies: stage-1 timing trains the originals
    model.encoder, model.SR, model.kernel = (copy.deepcopy(theirs["simsiam"]), theirs["sr"],
                                             copy.deepcopy(theirs["kernel"]))
    half = torch.tensor([0.5], device=device)
    model.inp_sub, model.inp_div = half.view(1, -1, 1, 1), half.view(1, -1, 1, 1)
    model.gt_sub, model.gt_div = half.view(1, 1, -1), half.view(1, 1, -1)
    for module in (model.encoder, model.kernel):
        module.eval()
        for parameter in module.parameters():
            parameter.requires_grad_(False)
    return model


# ----------------------------------------------------------------------------- steps

def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def stage1_steps(A, config, ours, theirs, lr1, lr2, k_true):
    """``(asbsr_step, authors_step)``, each one full network step on the same pair batch,
    returning the loss (a float)."""
    simsiam, estimator = ours["simsiam"], ours["estimator"]
    optimizer = torch.optim.Adam(list(simsiam.parameters()) + list(estimator.parameters()), lr=config.stage1.lr)

    def asbsr_step():
        simsiam.train(), estimator.train()
        loss = stage1_loss(config, simsiam, estimator, lr1, lr2, k_true)[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    model, kernel, wav = theirs["simsiam"], theirs["kernel"], theirs["wav"]
    # their parameter groups (the projector is left out of them, their defect)
    their_optimizer = torch.optim.Adam([{"params": model.encoder.parameters()},
                                        {"params": model.predictor.parameters()},
                                        {"params": kernel.parameters()}], lr=config.stage1.lr)
    cosine, l1 = nn.CosineSimilarity(dim=1), nn.L1Loss()
    target, count = k_true.unsqueeze(1), lr1.shape[0]

    def authors_step():
        model.train(), kernel.train()
        bands = A.utils.wave(torch.cat((lr1, lr2), dim=0), wav)
        their_optimizer.zero_grad()
        p1, p2, z1, z2, fea = model(x1=bands[:count], x2=bands[count:])
        predicted = kernel(fea)
        loss_c = -(cosine(p1, z2).mean() + cosine(p2, z1).mean()) * 0.5
        mask = torch.ones_like(target) * 100
        mask[target > 0] = 200
        loss = loss_c + l1(mask * predicted, mask * target)
        loss.backward()
        their_optimizer.step()
        return loss.item()
    return asbsr_step, authors_step


def stage2_steps(A, config, ours, theirs, batch, device):
    model = ours["model"]
    query_net, cfg2 = QueryStep(model), config.stage2
    optimizer = torch.optim.Adam(model.sr.parameters(), lr=cfg2.lr)
    lr, coord, cell, target = batch

    def asbsr_step():
        model.train()
        loss = stage2_loss(model, query_net, lr, coord, cell, target, cfg2.cycle_weight)[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    controller = authors_controller(A, theirs, lr.shape[0], coord.shape[1], lr.shape[-1], device)
    their_optimizer = torch.optim.Adam(controller.SR.parameters(), lr=cfg2.lr)
    l1 = nn.L1Loss()

    def authors_step():
        controller.SR.train()
        their_optimizer.zero_grad()
        predicted, lr_blur, _ = controller(lr, coord, cell, state="train")
        loss = l1(predicted, target) + cfg2.cycle_weight * l1(lr_blur, lr.detach())
        loss.backward()
        their_optimizer.step()
        return loss.item()
    return asbsr_step, authors_step


def inference_calls(A, ours, theirs, lr):
    model = ours["model"]
    height, width = lr.shape[-2] * INFER_SCALE, lr.shape[-1] * INFER_SCALE

    def asbsr_call():
        model.eval()
        return upscale(model, lr, scale=INFER_SCALE, chunk=CHUNK)

    sr, encoder, wav = theirs["sr"], theirs["simsiam"], theirs["wav"]
    coord = A.utils.make_coord((height, width)).to(lr.device).unsqueeze(0)
    cell = torch.ones_like(coord)
    cell[..., 0] *= 2 / height
    cell[..., 1] *= 2 / width

    def authors_call():
        # their evaluation: E once, then LTE's gen_feat and query_rgb chunk by chunk
        sr.eval(), encoder.eval()
        with torch.no_grad():
            feature = encoder(A.utils.wave(lr, wav))
            sr.gen_feat((lr - 0.5) / 0.5, feature)
            chunks = [sr.query_rgb(coord[:, start:start + CHUNK], cell[:, start:start + CHUNK])
                      for start in range(0, coord.shape[1], CHUNK)]
            out = torch.cat(chunks, dim=1) * 0.5 + 0.5
        return out.clamp(0, 1).view(1, height, width, 3).permute(0, 3, 1, 2)
    return asbsr_call, authors_call


def sampling_calls(A, config, images, generator, device, scale: float = 4.0):
    """Drawing one batch of each stage, each with its own degradation code (not equal math)."""
    cfg1, cfg2 = config.stage1, config.stage2

    def asbsr_stage1():
        batch = sample_pairs(images, cfg1.batch_size, cfg1.patch_size, config.degradation, generator,
                             cfg1.target_context, cfg1.target_taper)
        kernel_target(batch, config.encoder.kernel_target, config.degradation.lr_kernel_size)

    def asbsr_stage2():
        sample_sr_batch(images, cfg2.batch_size, cfg2.patch_size, cfg2.queries, config.degradation, generator)

    degrade = A.blur.SRMDPreprocessing()
    hr_side = round(cfg1.patch_size * scale)
    crops = torch.stack([image[:, :hr_side, :hr_side] for image in images[:1]] * cfg1.batch_size).to(device)

    def authors_stage1():  # their train_degrade.py preprocess: query and key views, then Eq.-4 by FFT
        pair = torch.stack((crops, crops.flip(-1)), dim=1)
        lr, ks = degrade(pair, scale, random=True, state="blur+down+kernel", norm=True)
        q_blur, q_clean, _, _ = torch.split(lr, [1, 1, 1, 1], dim=1)
        A.utils.gt_lr_kernel(q_blur.squeeze(1), q_clean.squeeze(1), ks)

    def authors_stage2():  # their train_SR.py data(): blur + down, and the FFT kernel estimate
        lr, ks = degrade(crops[:cfg2.batch_size], scale, random=True, state="blur+down+kernel", norm=True)
        lr_blur, lr_clean = torch.split(lr, [cfg2.batch_size, cfg2.batch_size], dim=0)
        A.utils.gt_lr_kernel(lr_blur, lr_clean, ks)
    return (asbsr_stage1, authors_stage1), (asbsr_stage2, authors_stage2)


# ----------------------------------------------------------------------------- measurement

def call_seconds(fn, calls: int, device) -> float:
    """Mean seconds of ``calls`` calls after one dropped call."""
    fn()
    sync(device)
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(device)
    return (time.perf_counter() - started) / calls


def agreement(A, config, ours, theirs, pair_batch, sr_batch, device) -> dict:
    """Largest absolute differences between the two implementations on the same inputs."""
    lr1 = pair_batch[0][:16]
    simsiam, estimator, model = ours["simsiam"], ours["estimator"], ours["model"]
    simsiam.eval(), estimator.eval(), theirs["simsiam"].eval(), theirs["kernel"].eval()
    out = {}
    with torch.no_grad():
        rep = simsiam.encoder(lr1)
        their_rep = theirs["simsiam"](A.utils.wave(lr1, theirs["wav"]))
        out["E representation"] = (rep, their_rep)
        out["M kernel"] = (estimator(rep), theirs["kernel"](rep)[:, 0])
        lr = sr_batch[0][:2]
        rep = simsiam.encoder(lr)
        side = lr.shape[-1]
        generator = torch.Generator().manual_seed(0)
        inner = 1 - 2.0 / side
        coord = ((torch.rand(2, 4096, 2, generator=generator) * 2 - 1) * inner).to(device)
        cell = torch.full_like(coord, 2.0 / (side * 3))
        model.sr.eval(), theirs["sr"].eval()
        out["SR output"] = (model.sr(lr, coord, cell, rep),
                            theirs["sr"]((lr - 0.5) / 0.5, coord, cell, rep) * 0.5 + 0.5)
    return {name: difference(a, b) for name, (a, b) in out.items()}


def difference(ours: torch.Tensor, theirs: torch.Tensor) -> dict:
    return {"max_abs_difference": float((ours - theirs).abs().max()), "max_abs_value": float(ours.abs().max())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--authors", type=Path, required=True, help="a checkout of the authors' repository")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="timed calls per case and round, after one dropped")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--system-malloc", action="store_true",
                        help="glibc's allocator defaults for both (no keep_freed_memory)")
    args = parser.parse_args(argv)
    if args.system_malloc:
        os.environ[ENVIRONMENT] = "0"
    kept = keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    A = import_authors(args.authors)

    config = method_config(make_config("gpu", {"encoder.normalise": False}), "ours")
    torch.manual_seed(0)
    encoder, simsiam, estimator = build_stage1(config)
    # stage 2 freezes copies of E and M: stage-1 timing trains the originals
    model = build_blind_sr(config, copy.deepcopy(encoder), copy.deepcopy(estimator))
    ours = {"simsiam": simsiam.to(device), "estimator": estimator.to(device), "model": model.to(device)}
    theirs = build_authors(A, ours, config, device)

    images = [image.to(device) for _, image in load_set("val", max_side=400)]
    generator = torch.Generator().manual_seed(0)
    cfg1, cfg2 = config.stage1, config.stage2
    pairs = sample_pairs(images, cfg1.batch_size, cfg1.patch_size, config.degradation, generator,
                         cfg1.target_context, cfg1.target_taper)
    pair_batch = (pairs.lr1.to(device), pairs.lr2.to(device),
                  kernel_target(pairs, config.encoder.kernel_target, config.degradation.lr_kernel_size).to(device))
    sr = sample_sr_batch(images, cfg2.batch_size, cfg2.patch_size, cfg2.queries, config.degradation, generator)
    sr_batch = tuple(t.to(device) for t in (sr.lr, sr.coord, sr.cell, sr.target))
    infer_lr = images[0][None, :, :INFER_SIDE, :INFER_SIDE].contiguous()

    report = {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "keep_freed_memory": kept,
              "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "load_average_before": [round(x, 2) for x in os.getloadavg()],
              "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "rounds": args.rounds, "steps": args.steps}
    report["agreement"] = agreement(A, config, ours, theirs, pair_batch, sr_batch, device)
    inference = inference_calls(A, ours, theirs, infer_lr)
    asbsr_out, their_out = (fn() for fn in inference)
    report["agreement"][f"inference x{INFER_SCALE}"] = difference(asbsr_out, their_out)
    cases = {"stage-1 step (network)": stage1_steps(A, config, ours, theirs, *pair_batch),
             "stage-2 step (network)": stage2_steps(A, config, ours, theirs, sr_batch, device)}
    # the first step of each stage, from the same weights and batch
    report["first_step_loss"] = {name: {"asbsr": a(), "authors": b()} for name, (a, b) in cases.items()}
    cases[f"inference {INFER_SIDE}^2 x{INFER_SCALE}"] = inference
    (s1, s2) = sampling_calls(A, config, images, generator, device)
    cases["stage-1 sampling (own code)"], cases["stage-2 sampling (own code)"] = s1, s2

    for name, value in report["agreement"].items():
        print(f"agreement: {name}: max |asbsr - authors| = {value['max_abs_difference']:.3g} "
              f"(max |asbsr| {value['max_abs_value']:.3g})")
    for name, losses in report["first_step_loss"].items():
        print(f"first {name} loss: asbsr {losses['asbsr']:.6f}, authors {losses['authors']:.6f}")
    samples = {name: {"asbsr": [], "authors": []} for name in cases}
    for round_index in range(args.rounds):
        for name, (asbsr_fn, authors_fn) in cases.items():
            calls = 1 if name.startswith("inference") else args.steps
            order = [("asbsr", asbsr_fn), ("authors", authors_fn)]
            for label, fn in order if round_index % 2 == 0 else order[::-1]:
                samples[name][label].append(call_seconds(fn, calls, device))
        print(f"round {round_index + 1}/{args.rounds} done", flush=True)
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for name, times in samples.items():
        a, b = statistics.median(times["asbsr"]), statistics.median(times["authors"])
        rows.append({"case": name, "asbsr_s": round(a, 4), "authors_s": round(b, 4),
                     "authors_over_asbsr": round(b / a, 3), "asbsr_rounds": [round(t, 4) for t in times["asbsr"]],
                     "authors_rounds": [round(t, 4) for t in times["authors"]]})
    report["timings"] = rows
    print(f"\n{'case':32s} {'authors s':>10s} {'asbsr s':>10s} {'authors/asbsr':>14s}")
    for row in rows:
        print(f"{row['case']:32s} {row['authors_s']:10.4f} {row['asbsr_s']:10.4f} {row['authors_over_asbsr']:14.2f}")
    print(f"device {args.device}, {report['threads']} threads, keep_freed_memory {kept}, "
          f"load {report['load_average_before']} -> "
          f"{report['load_average_after']}")
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
