"""Data-parallel training on several processes, launched by ``torchrun``.

    torchrun --standalone --nproc_per_node=4 -m asbsr.lab.zoo_train --preset paper --methods ours

One process (no ``torchrun``) is the default and runs exactly as before: nothing here is used.
Under ``torchrun`` (``WORLD_SIZE`` > 1) each of the N processes

* draws the *whole* batch of B samples from the same seeded generator and keeps its own B/N
  (``shard``): the N shards together are the batch one process would draw, so the run is the same
  run whatever N is (sampling costs every process the whole batch; the networks see B/N);
* averages gradients with ``DistributedDataParallel`` -- the mean of the N shard means is the
  batch mean, so the update equals one process's;
* normalises with batch statistics of the whole batch in stage 1 (``GlobalBatchNorm``; PyTorch's
  ``SyncBatchNorm`` refuses CPU tensors, this one runs on CPU and GPU alike);
* reports losses averaged over the processes, so the history is the one-process history.

Only rank 0 writes checkpoints, histories, zoo files and manifests; every rank resumes from them.
Backends: NCCL on CUDA, gloo on CPU (the tests run two CPU processes).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1


def current() -> Ranks:
    """The process group this process is in (one process: ``Ranks()``)."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return Ranks()


def setup(device: str | None = None) -> Ranks:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE``, ``RANK``,
    ``MASTER_ADDR``...), once; a no-op for one process. On CUDA each process takes the GPU of its
    ``LOCAL_RANK``."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return current()
    cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return current()


def device_for(ranks: Ranks, device: torch.device) -> torch.device:
    """On CUDA, each process's own GPU; elsewhere ``device`` itself."""
    if ranks.parallel and device.type == "cuda":
        return torch.device("cuda", ranks.local_rank)
    return device


def check_batch(batch: int, ranks: Ranks, what: str) -> int:
    """The per-process batch, ``batch / N``; ``ValueError`` unless N divides ``batch``."""
    if batch % ranks.world:
        raise ValueError(f"{what} {batch} cannot be split over {ranks.world} processes; "
                         f"use a multiple of {ranks.world}")
    return batch // ranks.world


def shard(tensor: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """This process's contiguous part of a batch (first dimension)."""
    if not ranks.parallel:
        return tensor
    size = check_batch(tensor.shape[0], ranks, "a batch of")
    return tensor[ranks.rank * size:(ranks.rank + 1) * size]


def mean_over_ranks(values: dict[str, float], ranks: Ranks) -> dict[str, float]:
    """Each value averaged over the processes (the batch means of equal shards average to the
    batch mean); unchanged for one process."""
    if not ranks.parallel or not values:
        return values
    gathered: list = [None] * ranks.world
    dist.all_gather_object(gathered, values)  # any backend: the objects travel as bytes
    return {k: sum(float(v[k]) for v in gathered) / ranks.world for k in values}


def barrier(ranks: Ranks) -> None:
    if ranks.parallel:
        dist.barrier()


def shutdown(clean: bool = True) -> None:
    """Leave the process group. After a normal finish (``clean``) a barrier comes first, so that no
    process tears down its connections while another still uses them (gloo aborts the process
    otherwise); after an error there is none, since the other processes may never reach it."""
    if dist.is_available() and dist.is_initialized():
        if clean:
            dist.barrier()
        dist.destroy_process_group()


def from_main(value, ranks: Ranks):
    """Rank 0's ``value`` on every process (decisions one process makes for all, e.g. whether
    the zoo already holds a model)."""
    if not ranks.parallel:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def main_lock(lock, ranks: Ranks):
    """``lock`` (a context manager yielding whether it was acquired) held by rank 0 alone, its
    answer shared with every process: the N processes of one torchrun job act as one trainer."""
    if not ranks.parallel:
        with lock as acquired:
            yield acquired
        return
    if ranks.main:
        with lock as acquired:
            yield from_main(acquired, ranks)
    else:  # the other ranks never touch the lock file
        yield from_main(None, ranks)


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) with its gradient: the gradient of a sum over the processes is the sum of
    the processes' gradients, all-reduced the same way."""

    @staticmethod
    def forward(ctx, tensor):
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad):
        total = grad.clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the whole batch across the processes.

    The per-channel sums of ``x`` and ``x²`` and the sample count are all-reduced (with autograd,
    so the gradient flows to every process's inputs, as in ``SyncBatchNorm``); running statistics
    are updated as ``BatchNorm`` does (unbiased variance, ``momentum``). Outside training, or with
    one process, it is plain ``BatchNorm``. Its state dict is ``BatchNorm``'s.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        count = x.new_tensor([x.numel() / channels])
        totals = _SumOverRanks.apply(torch.cat([x.sum(dims), (x * x).sum(dims), count]))
        n = totals[-1]
        mean = totals[:channels] / n
        var = totals[channels:2 * channels] / n - mean * mean  # biased, as BatchNorm normalises
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(var.detach() * n / (n - 1), alpha=momentum)
        shape = [1, channels] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every ``BatchNorm1d/2d/3d`` replaced, in place, by a ``GlobalBatchNorm``
    holding the same parameters and buffers; returns it."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, GlobalBatchNorm):
            replacement = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                          child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            replacement.train(child.training)
            replacement.to(next(child.buffers(), torch.empty(0)).device)
            setattr(module, name, replacement)
        else:
            convert_batchnorm(child)
    return module
