"""The two training stages of Section 3.5, with checkpoints that resume.

Stage 1 trains the implicit predictor E (through SimSiam, Eq. 3) and the explicit kernel
estimator M (L_k against Eq. 4's k_l) jointly: ``L = L_cl + L_k``; M reads E's representation
without a stop-gradient, so L_k shapes E too.

Stage 2 freezes E and M (and keeps them in eval mode) and trains the arbitrary-scale SR module
with Eq. 7: ``L_SR = L_super + 0.1 L_cycle``. As in the authors' code, one encoding of the LR
patch serves the HR queries and the scale-1 queries of the LR grid (for the cycle); unlike it,
the scale-1 queries are decoded from their nearest feature alone (``stage2_loss``).

Both loops are the same for every preset; ``train_stage1(config, folder)`` loads the finished
checkpoint of that exact config when it exists, resumes a partial one, or trains from scratch.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from asbsr import distributed
from asbsr.checkpoint import (
    FORMAT, atomic_save, checkpoint_path, load_checkpoint, load_state, stage_key,
)
from asbsr.config import Config, to_dict
from asbsr.data import load_set
from asbsr.files import atomic_write_text
from asbsr.losses import cycle_loss, kernel_loss, simsiam_loss, super_loss
from asbsr.memory import keep_freed_memory
from asbsr.models import build_sr_model
from asbsr.models.blind import BlindSR
from asbsr.models.coords import make_cell, make_coord
from asbsr.models.kernel_estimator import KernelEstimator
from asbsr.models.predictor import DegradationEncoder, SimSiam
from asbsr.sampling import sample_pairs, sample_sr_batch

# Longest side of the training photos in memory; crops are at most 48 * 4 = 192 pixels.
TRAIN_MAX_SIDE = 1200


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def available_devices() -> list[str]:
    """The device types this machine can run on: ``cpu`` and any of cuda, mps, xpu present."""
    found = ["cpu"]
    for kind in ("cuda", "mps", "xpu"):
        backend = getattr(torch, kind, None) if kind != "mps" else getattr(torch.backends, "mps", None)
        try:
            if backend is not None and backend.is_available():
                found.append(kind)
        except Exception:  # a backend that cannot even be asked counts as absent
            pass
    return found


def check_device(name: str) -> torch.device:
    """``torch.device(name)`` if this machine has it (and, for ``cuda:N``, that many GPUs), else
    ``ValueError`` naming the devices it does have."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a device name; here: {', '.join(available_devices())}") from None
    present = available_devices()
    if device.type not in present:
        raise ValueError(f"--device {name}: this machine has no {device.type} device; here: {', '.join(present)}")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def autocast(device: torch.device):
    """bf16 autocast on CUDA (the LTE sinusoid keeps fp32 inside the head); off on CPU."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def full_precision(tensor: torch.Tensor) -> torch.Tensor:
    """An autocast result back in fp32 for the losses; fp32 and fp64 tensors stay as they are."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


@dataclass
class Stage1Result:
    config: Config
    encoder: DegradationEncoder
    simsiam: SimSiam
    estimator: KernelEstimator
    history: dict
    path: Path
    status: str  # one line: what was loaded or trained


@dataclass
class Stage2Result:
    config: Config
    model: BlindSR
    history: dict
    path: Path
    status: str


def build_stage1(config: Config) -> tuple[DegradationEncoder, SimSiam, KernelEstimator]:
    encoder = DegradationEncoder(input=config.encoder.input, dim=config.encoder.dim,
                                 normalise=config.encoder.normalise)
    simsiam = SimSiam(encoder, dim=config.encoder.dim, projector_bias=config.encoder.projector_bias)
    estimator = KernelEstimator(dim=config.encoder.dim, size=config.degradation.lr_kernel_size)
    return encoder, simsiam, estimator


def build_blind_sr(config: Config, encoder: DegradationEncoder, estimator: KernelEstimator) -> BlindSR:
    sr = build_sr_model(config.model, rep_dim=config.encoder.dim)
    return BlindSR(encoder, sr, estimator, deblur=config.model.deblur,
                   max_scale=config.degradation.scale_range[1])


def learning_rate(config: Config, step: int, stage: int = 2) -> float:
    """A stage's learning rate at ``step``: constant (stage 1 of the authors), cosine to 0, or
    the authors' stage-2 halving at 20/40/60/80 % of training."""
    section = config.stage1 if stage == 1 else config.stage2
    base, steps = section.lr, max(section.steps, 1)
    if section.schedule == "constant":
        return base
    if section.schedule == "cosine":
        return 0.5 * base * (1 + math.cos(math.pi * step / steps))
    return base * 0.5 ** sum(step >= round(f * steps) for f in (0.2, 0.4, 0.6, 0.8))


def training_images(config: Config, device=None) -> list[torch.Tensor]:
    """The HR training photos, on ``device``: the samplers follow their inputs' device, so on a
    GPU the blur and resampling of each batch run there too."""
    return [image.to(device) for _, image in load_set(config.data.train, max_side=TRAIN_MAX_SIDE)]


def _save(path: Path, config: Config, stage: int, step: int, steps: int, models: dict,
          optimizer, generator: torch.Generator, history: dict, parent: str | None = None) -> None:
    atomic_save({
        "format": FORMAT, "stage": stage, "config": to_dict(config), "key": stage_key(config, stage),
        "step": step, "steps": steps,
        "models": {name: module.state_dict() for name, module in models.items()},
        "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
        "history": history, "parent": parent,
    }, path)
    atomic_write_text(path.with_suffix(".history.json"), json.dumps(history))


def remove_stale_temporaries(path: Path, older_than: float = 600.0) -> list[Path]:
    """Delete the temporary files an interrupted write of ``path`` (or of its history) left
    beside it, ``.<name>.*.tmp`` untouched for ``older_than`` seconds (a write in progress, by
    this or another process, is younger). Returns what was removed."""
    removed = []
    now = time.time()
    for name in (path.name, path.with_suffix(".history.json").name):
        for orphan in path.parent.glob(f".{name}.*.tmp"):
            try:
                if now - orphan.stat().st_mtime > older_than:
                    orphan.unlink()
                    removed.append(orphan)
            except FileNotFoundError:  # another process removed it first
                pass
    return removed


def _resume(path: Path, models: dict, optimizer, generator: torch.Generator, device) -> tuple[int, dict]:
    """Restore a checkpoint's weights, optimizer and sampler state; returns (step, history)."""
    data = load_checkpoint(path, map_location=device)
    for name, module in models.items():
        load_state(module, data["models"][name], name)
    optimizer.load_state_dict(data["optimizer"])
    generator.set_state(data["generator"].cpu())
    return int(data["step"]), data["history"]


def _run(stage: int, config: Config, path: Path, models: dict, trainable, step_fn, steps: int,
         every: int, device, progress: bool, stop_after: int | None, parent: str | None = None,
         monitor: Callable[[], dict] | None = None):
    """The loop both stages share: resume, step, log, checkpoint atomically, stop when asked.

    ``monitor`` (optional) is called at every regular checkpoint and at the end; what it returns
    is appended, with the step, to ``history["monitor"]`` before the checkpoint is written, so a
    resumed run continues the same curve."""
    ranks = distributed.current()
    optimizer = torch.optim.Adam(trainable, lr=config.stage1.lr if stage == 1 else config.stage2.lr)
    generator = torch.Generator().manual_seed(config.seed)
    step, history = 0, {}
    if ranks.main:
        remove_stale_temporaries(path)
    if path.exists():  # every process resumes from the checkpoint rank 0 wrote
        step, history = _resume(path, models, optimizer, generator, device)
    start_step, started = step, time.perf_counter()
    earlier_seconds = history.get("wall_seconds", [0.0])[0]
    if step >= steps:
        return history, f"loaded stage-{stage} checkpoint {path.name} ({step} steps)"
    bar = tqdm(total=steps, initial=step, desc=f"stage {stage}", disable=not progress or not ranks.main,
               mininterval=2.0, leave=False)
    while step < steps:
        if stop_after is not None and step - start_step >= stop_after:
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step, stage)
        losses = step_fn(step, generator, optimizer)
        step += 1
        for name, value in losses.items():
            history.setdefault(name, []).append(value)
        history.setdefault("step", []).append(step)
        bar.update(1)
        if step % 10 == 0 or step == steps:
            bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items() if k != "cycle_step"})
        history["wall_seconds"] = [earlier_seconds + time.perf_counter() - started]
        if step % every == 0 or step == steps:
            if ranks.main:  # one process measures and writes; the others wait for the file
                if monitor is not None:
                    history.setdefault("monitor", []).append({"step": step, **monitor()})
                _save(path, config, stage, step, steps, models, optimizer, generator, history, parent)
            distributed.barrier(ranks)
    bar.close()
    if step < steps:  # interrupted on purpose: keep what was done
        if ranks.main:
            _save(path, config, stage, step, steps, models, optimizer, generator, history, parent)
        distributed.barrier(ranks)
    seconds = time.perf_counter() - started
    verb = "resumed" if start_step else "trained"
    return history, (f"{verb} stage {stage}: steps {start_step}->{step} of {steps} in "
                     f"{seconds:.0f} s -> {path.name}")


def train_stage1(config: Config, folder: str | Path, device=None, progress: bool = True,
                 stop_after: int | None = None, images: list[torch.Tensor] | None = None) -> Stage1Result:
    """Train (or load, or resume) E, its SimSiam heads and M on random pairs of Section 3.1.

    ``stop_after`` ends this call after that many steps (a checkpoint is written), as an
    interruption would; calling again resumes.
    """
    ranks = distributed.current()
    device = distributed.device_for(ranks, torch.device(device) if device is not None else default_device())
    distributed.check_batch(config.stage1.batch_size, ranks, "stage1.batch_size")
    if device.type == "cpu":
        keep_freed_memory()
    torch.manual_seed(config.seed)
    encoder, simsiam, estimator = build_stage1(config)
    if ranks.parallel:  # batch statistics of the whole batch, across the processes
        distributed.convert_batchnorm(simsiam), distributed.convert_batchnorm(estimator)
    simsiam.to(device), estimator.to(device)
    models = {"simsiam": simsiam, "estimator": estimator}
    # under torchrun the gradients are averaged over the processes; one process calls the modules
    pair_net, kernel_net = (_parallel(simsiam, device), _parallel(estimator, device)) if ranks.parallel \
        else (simsiam, estimator)
    path = checkpoint_path(folder, config, 1)
    cfg1, target = config.stage1, config.encoder.kernel_target
    hr_images = images  # loaded on the first step when not given

    def step_fn(step, generator, optimizer):
        nonlocal hr_images
        if hr_images is None:
            hr_images = training_images(config, device)
        simsiam.train(), estimator.train()
        batch = sample_pairs(hr_images, cfg1.batch_size, cfg1.patch_size, config.degradation, generator,
                             cfg1.target_context, cfg1.target_taper,
                             other_photo=cfg1.positive_pair == "other_photo")
        lr1, lr2 = (distributed.shard(t, ranks).to(device) for t in (batch.lr1, batch.lr2))
        k_true = distributed.shard(kernel_target(batch, target, config.degradation.lr_kernel_size), ranks).to(device)
        loss, l_cl, k_hat = stage1_loss(config, pair_net, kernel_net, lr1, lr2, k_true)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # "kernel" is the plain L1 whatever the weights, so that runs can be compared
        return distributed.mean_over_ranks({"loss": loss.item(), "contrastive": l_cl.item(),
                                            "kernel": kernel_loss(k_hat.detach(), k_true).item()}, ranks)

    trainable = list(simsiam.parameters()) + list(estimator.parameters())
    history, status = _run(1, config, path, models, trainable, step_fn, cfg1.steps,
                           cfg1.checkpoint_every, device, progress, stop_after)
    simsiam.eval(), estimator.eval()
    return Stage1Result(config, encoder, simsiam, estimator, history, path, status)


def stage1_loss(config: Config, pair_net: nn.Module, kernel_net: nn.Module, lr1: torch.Tensor,
                lr2: torch.Tensor, k_true: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One stage-1 forward pass: ``L = L_cl + L_k`` on a pair batch (Eq. 3 and M's L1 on
    ``k_true``). Returns ``(loss, L_cl, M's kernels)``; the caller runs backward."""
    with autocast(lr1.device):
        p1, p2, z1, z2, r1, _ = pair_net(lr1, lr2)
        l_cl = simsiam_loss(*(full_precision(t) for t in (p1, p2, z1, z2)))
        k_hat = kernel_net(full_precision(r1))
        l_k = kernel_loss(k_hat, k_true, config.encoder.kernel_loss_weight,
                          config.encoder.kernel_positive_weight)
        return l_cl + l_k, l_cl, k_hat


def kernel_target(batch, target: str, size: int) -> torch.Tensor:
    """What M learns to output for ``batch.lr1`` (``encoder.kernel_target``): Eq. 4's ``k_l``
    (``"lr"``), the HR kernel ``k_h`` (``"hr"``), or ``k_h`` with both standard deviations
    divided by ``s`` (``"lr_gaussian"``)."""
    if target == "lr":
        return batch.k_l
    if target == "hr":
        return batch.k_h
    return torch.stack([d.lr_gaussian(size) for d in batch.degradations]).to(batch.k_l.device)


def train_stage2(config: Config, stage1: Stage1Result, folder: str | Path, device=None,
                 progress: bool = True, stop_after: int | None = None,
                 images: list[torch.Tensor] | None = None,
                 monitor: Callable[[nn.Module], dict] | None = None) -> Stage2Result:
    """Train (or load, or resume) the arbitrary-scale SR module with Eq. 7, E and M frozen.

    ``monitor(model)``, if given, measures the model at every checkpoint (e.g. PSNR on training
    and validation photos, ``zoo_train.psnr_monitor``) into ``history["monitor"]``; it must not
    draw from the training generator, and the model is back in training mode for the next step.

    The history always records the cycle error (Eq. 6), also for models trained without it, so
    that the effect of the cycle loss can be plotted.
    """
    ranks = distributed.current()
    device = distributed.device_for(ranks, torch.device(device) if device is not None else default_device())
    distributed.check_batch(config.stage2.batch_size, ranks, "stage2.batch_size")
    if device.type == "cpu":
        keep_freed_memory()
    torch.manual_seed(config.seed + 1)
    model = build_blind_sr(config, stage1.encoder, stage1.estimator).to(device)
    models = {"encoder": model.encoder, "estimator": model.estimator, "sr": model.sr}
    # one call through the SR module, so that DistributedDataParallel can average its gradients
    query_net = _parallel(QueryStep(model), device) if ranks.parallel else QueryStep(model)
    path = checkpoint_path(folder, config, 2)
    cfg2, weight = config.stage2, config.stage2.cycle_weight
    hr_images = images
    side = cfg2.patch_size

    def step_fn(step, generator, optimizer):
        nonlocal hr_images
        if hr_images is None:
            hr_images = training_images(config, device)
        model.train()
        batch = sample_sr_batch(hr_images, cfg2.batch_size, side, cfg2.queries, config.degradation, generator)
        lr, coord, cell, target = (distributed.shard(t, ranks).to(device)
                                   for t in (batch.lr, batch.coord, batch.cell, batch.target))
        loss, parts = stage2_loss(model, query_net, lr, coord, cell, target, weight,
                                  measure_cycle=(step + 1) % 10 == 0)
        losses = {"super": parts["super"].item()}
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses["loss"] = loss.item()
        if "cycle" in parts:
            losses["cycle"] = parts["cycle"].item()
        losses = distributed.mean_over_ranks(losses, ranks)
        if "cycle" in losses:
            losses["cycle_step"] = step + 1
        return losses

    history, status = _run(2, config, path, models, list(model.sr.parameters()), step_fn,
                           cfg2.steps, cfg2.checkpoint_every, device, progress, stop_after,
                           parent=stage_key(config, 1),
                           monitor=None if monitor is None else lambda: _measure(model, monitor))
    model.eval()
    return Stage2Result(config, model, history, path, status)


def stage2_loss(model: BlindSR, query_net: nn.Module, lr: torch.Tensor, coord: torch.Tensor,
                cell: torch.Tensor, target: torch.Tensor, cycle_weight: float,
                measure_cycle: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One stage-2 forward pass, Eq. 7: ``L_SR = L_super + cycle_weight * L_cycle``.

    ``lr`` ``(B, 3, side, side)``; ``coord``, ``cell``, ``target`` the HR queries ``(B, Q, ·)``;
    ``query_net`` is ``QueryStep(model)`` (or its DDP wrapper). E and M run without gradients.
    With ``cycle_weight > 0`` one encoding serves the HR queries and the scale-1 queries on the
    LR grid (Eq. 6); with it 0 the cycle error is computed only when ``measure_cycle`` (no
    gradient). The scale-1 queries sit on LR pixel centres, where the local ensemble is the
    nearest feature alone up to ~1e-9 (``coords.ensemble_for``): they are decoded from that one
    (the authors' code decodes all four neighbours).
    Returns the loss and its parts ``{"super", "cycle"?}`` (tensors; the caller runs backward).
    """
    count, side = lr.shape[0], lr.shape[-1]
    lr_coord = make_coord(side, side, device=lr.device, dtype=lr.dtype).expand(count, -1, -1)
    lr_cell = make_cell(side, side, side * side, device=lr.device, dtype=lr.dtype).expand(count, -1, -1)
    with torch.no_grad():
        rep = model.encoder(lr)
        k_hat = model.estimator(rep)
    with autocast(lr.device):
        if cycle_weight > 0:
            predicted, features, lr_only = query_net(lr, rep, coord, cell, lr_coord, lr_cell)
        else:
            predicted, features = query_net(lr, rep, coord, cell)
    parts = {"super": super_loss(full_precision(predicted), target)}
    if cycle_weight > 0:
        parts["cycle"] = cycle_loss(lr_grid(full_precision(lr_only), side), k_hat, lr)
        return parts["super"] + cycle_weight * parts["cycle"], parts
    if measure_cycle:
        with torch.no_grad(), autocast(lr.device):
            lr_only = full_precision(model.query(features, lr_coord, lr_cell, centred=True))
        parts["cycle"] = cycle_loss(lr_grid(lr_only, side), k_hat, lr)
    return parts["super"], parts


class QueryStep(nn.Module):
    """``model.encode(lr, rep)`` and the queries of a stage-2 step as one ``forward`` (what
    ``DistributedDataParallel`` wraps): returns ``(HR predictions, features)``, and with the
    cycle's LR-grid queries given, their predictions third (decoded as ``centred``)."""

    def __init__(self, model: BlindSR):
        super().__init__()
        self.model = model

    def forward(self, lr, rep, coord, cell, grid_coord=None, grid_cell=None):
        features = self.model.encode(lr, rep)
        predicted = self.model.query(features, coord, cell)
        if grid_coord is None:
            return predicted, features
        return predicted, features, self.model.query(features, grid_coord, grid_cell, centred=True)


def _parallel(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` wrapped in ``DistributedDataParallel`` (gradients averaged over the processes)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def _measure(model: nn.Module, monitor: Callable[[nn.Module], dict]) -> dict:
    """``monitor(model)`` in eval mode without gradients; the training step sets train mode again."""
    model.eval()
    with torch.no_grad():
        return monitor(model)


def lr_grid(predicted: torch.Tensor, side: int) -> torch.Tensor:
    """Scale-1 query results ``(B, side*side, 3)`` (row-major LR grid) as an image ``(B, 3, side, side)``."""
    return predicted.transpose(1, 2).reshape(predicted.shape[0], 3, side, side)
