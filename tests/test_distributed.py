"""Data-parallel training (torchrun, DistributedDataParallel) on CPU: two gloo processes with half
the batch each must train the same weights as one process with the whole batch, in both stages,
and an interrupted two-process run must resume to the same weights."""

from __future__ import annotations

import os
import re
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from asbsr import distributed
from asbsr.config import make_config, method_config
from asbsr.train import train_stage1, train_stage2

from conftest import TINY_OVERRIDES

# Tiny sizes with batches two processes can split; BatchNorm needs >= 2 samples per process too.
OVERRIDES = {**TINY_OVERRIDES, "stage1.batch_size": 8, "stage2.batch_size": 4, "stage1.steps": 3,
             "stage2.steps": 3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def images():
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(3, 100, 104, generator=generator) for _ in range(2)]


def _join(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    distributed.setup("cpu")


def _train(rank, folder, overrides, stop_after, result_file):
    config = method_config(make_config("smoke", overrides), "ours")
    data = images()
    stage1 = train_stage1(config, folder, device="cpu", progress=False, images=data, stop_after=stop_after)
    if stop_after is not None and len(stage1.history["step"]) < config.stage1.steps:
        return  # interrupted within stage 1
    stage2 = train_stage2(config, stage1, folder, device="cpu", progress=False, images=data,
                          stop_after=stop_after)
    if rank == 0 and len(stage2.history["step"]) == config.stage2.steps:
        torch.save({"stage1": {k: v.clone() for k, v in stage1.simsiam.state_dict().items()},
                    "estimator": stage1.estimator.state_dict(), "sr": stage2.model.sr.state_dict(),
                    "h1": stage1.history, "h2": stage2.history}, result_file)


def _train_worker(rank, world, port, folder, overrides, stop_after, result_file):
    _join(rank, world, port)
    try:
        _train(rank, folder, overrides, stop_after, result_file)
    except BaseException:
        distributed.shutdown(clean=False)
        raise
    distributed.shutdown()


def run_parallel(folder, result_file, world=2, stop_after=None):
    mp.start_processes(_train_worker, args=(world, free_port(), str(folder), OVERRIDES, stop_after,
                                            str(result_file)), nprocs=world, start_method="spawn")


# Weights are compared where they are determined. Two parametrisations are not: E's convolutions
# have a bias that the BatchNorm after each removes (its true gradient is 0, and Adam turns the
# rounding noise left in it, ~1e-9 and different for any other summation order, into steps of the
# full learning rate; the running means follow it), and M's chain of filters is normalised, so
# a filter scaled up and another scaled down give the same kernel. Those are compared through
# what E and M compute.
NO_EFFECT = re.compile(r"encoder\.body\.\d+\.(0\.bias|1\.running_mean|1\.running_var|1\.num_batches_tracked)")


def relative_difference(a: dict, b: dict, skip=NO_EFFECT) -> float:
    keys = [k for k in a if a[k].is_floating_point() and not (skip and skip.fullmatch(k))]
    diff = torch.sqrt(sum(((a[k].double() - b[k].double()) ** 2).sum() for k in keys))
    norm = torch.sqrt(sum((a[k].double() ** 2).sum() for k in keys))
    return float(diff / norm)


def function_differences(a: dict, b: dict) -> tuple[float, float]:
    """Relative differences of E's representation (batch statistics, as in training) of fixed
    patches and of M's kernel of fixed representations, under two stage-1 states."""
    from asbsr.train import build_stage1

    config = method_config(make_config("smoke", OVERRIDES), "ours")
    generator = torch.Generator().manual_seed(1)
    patches = torch.rand(8, 3, 24, 24, generator=generator)
    reps = torch.randn(5, config.encoder.dim, generator=generator)
    outputs = []
    for state in (a, b):
        _, simsiam, estimator = build_stage1(config)
        simsiam.load_state_dict(state["stage1"]), estimator.load_state_dict(state["estimator"])
        with torch.no_grad():
            outputs.append((simsiam.encoder.train()(patches), estimator.eval()(reps)))
    return tuple(float((x - y).norm() / x.norm()) for x, y in zip(*outputs))


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The reference: one process, the whole batch (its stage-1 checkpoint kept in ``folder``)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    config = method_config(make_config("smoke", OVERRIDES), "ours")
    folder = tmp_path_factory.mktemp("single")
    data = images()
    stage1 = train_stage1(config, folder, device="cpu", progress=False, images=data)
    stage2 = train_stage2(config, stage1, folder, device="cpu", progress=False, images=data)
    torch.set_num_threads(previous)
    return {"stage1": stage1.simsiam.state_dict(), "estimator": stage1.estimator.state_dict(),
            "sr": stage2.model.sr.state_dict(), "h1": stage1.history, "h2": stage2.history,
            "stage1_file": stage1.path}


def test_two_processes_train_stage1_as_one(single, tmp_path):
    run_parallel(tmp_path / "work", tmp_path / "result.pt")
    both = torch.load(tmp_path / "result.pt", weights_only=True)
    assert relative_difference(single["stage1"], both["stage1"]) <= 1e-5
    e, m = function_differences(single, both)
    assert e <= 1e-5 and m <= 1e-5, (e, m)
    for key in ("loss", "contrastive", "kernel"):
        torch.testing.assert_close(torch.tensor(both["h1"][key]), torch.tensor(single["h1"][key]), rtol=1e-5, atol=1e-7)


def test_two_processes_train_stage2_as_one(single, tmp_path):
    import shutil

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(single["stage1_file"], work)  # the same E and M: stage 2 is compared on its own
    run_parallel(work, tmp_path / "result.pt")
    both = torch.load(tmp_path / "result.pt", weights_only=True)
    assert relative_difference(single["sr"], both["sr"], skip=None) <= 1e-5
    for key in ("super", "cycle", "loss"):
        torch.testing.assert_close(torch.tensor(both["h2"][key]), torch.tensor(single["h2"][key]), rtol=1e-5, atol=1e-7)
    assert both["h2"]["cycle_step"] == single["h2"]["cycle_step"]


def test_an_interrupted_two_process_run_resumes_to_the_same_weights(tmp_path):
    run_parallel(tmp_path / "straight", tmp_path / "straight.pt")
    work = tmp_path / "work"
    run_parallel(work, tmp_path / "result.pt", stop_after=2)  # stopped after 2 steps of stage 1
    assert not (tmp_path / "result.pt").exists()
    run_parallel(work, tmp_path / "result.pt", stop_after=2)  # the rest of stage 1, 2 of stage 2
    run_parallel(work, tmp_path / "result.pt")
    straight = torch.load(tmp_path / "straight.pt", weights_only=True)
    resumed = torch.load(tmp_path / "result.pt", weights_only=True)
    for part in ("stage1", "estimator", "sr"):
        assert relative_difference(straight[part], resumed[part], skip=None) <= 1e-5, part


def _batchnorm_worker(rank, world, port, x, result_file):
    _join(rank, world, port)
    try:
        torch.manual_seed(0)
        norm = distributed.convert_batchnorm(nn.Sequential(nn.BatchNorm2d(3)))[0]
        part = x[rank * 4:(rank + 1) * 4].clone().requires_grad_(True)
        out = norm(part)
        (out * torch.arange(out.numel()).view_as(out).float()).sum().backward()
        grads = [torch.zeros_like(part) for _ in range(world)]
        dist.all_gather(grads, part.grad)
        outs = [torch.zeros_like(out) for _ in range(world)]
        dist.all_gather(outs, out.detach())
        if rank == 0:
            torch.save({"out": torch.cat(outs), "grad": torch.cat(grads), "mean": norm.running_mean,
                        "var": norm.running_var}, result_file)
    except BaseException:
        distributed.shutdown(clean=False)
        raise
    distributed.shutdown()


def test_global_batchnorm_is_batchnorm_of_the_whole_batch(tmp_path):
    x = torch.randn(8, 3, 5, 5) * 3 + 1
    mp.start_processes(_batchnorm_worker, args=(2, free_port(), x, str(tmp_path / "bn.pt")), nprocs=2,
                       start_method="spawn")
    got = torch.load(tmp_path / "bn.pt", weights_only=True)
    reference = nn.BatchNorm2d(3)
    whole = x.clone().requires_grad_(True)
    out = reference(whole)
    weights = torch.cat([torch.arange(4 * 75).view(4, 3, 5, 5).float()] * 2)  # each rank's own weighting
    (out * weights).sum().backward()
    torch.testing.assert_close(got["out"], out.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["grad"], whole.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got["mean"], reference.running_mean)
    torch.testing.assert_close(got["var"], reference.running_var)


def test_one_process_needs_no_process_group():
    assert distributed.current() == distributed.Ranks() and not distributed.current().parallel
    x = torch.arange(6.0)
    assert distributed.shard(x, distributed.Ranks()) is x
    assert distributed.shard(x, distributed.Ranks(rank=1, world=3)).tolist() == [2.0, 3.0]
    with pytest.raises(ValueError, match="cannot be split over 4 processes"):
        distributed.check_batch(6, distributed.Ranks(world=4), "stage1.batch_size")
    assert distributed.mean_over_ranks({"a": 1.5}, distributed.Ranks()) == {"a": 1.5}


def test_the_zoo_driver_runs_under_torchrun(tmp_path):
    """The README's command, at a toy size: two processes train one stage 1 and two models
    together, and rank 0 alone exports them and writes the manifest."""
    import subprocess
    import sys

    from PIL import Image

    from asbsr.lab.zoo import read_manifest

    for folder, count in (("train", 3), ("val", 2)):
        (tmp_path / folder).mkdir()
        for i in range(count):
            pixels = torch.rand(110, 120, 3, generator=torch.Generator().manual_seed(10 * count + i))
            Image.fromarray((pixels * 255).byte().numpy()).save(tmp_path / folder / f"{i}.png")
    settings = [f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in OVERRIDES.items()]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "asbsr.lab.zoo_train", "--preset", "smoke", "--seeds", "0", "--methods", "ours", "lte",
               "--variants", "--work", str(tmp_path / "work"), "--zoo", str(tmp_path / "zoo"),
               "--set", *settings, f"data.train={tmp_path / 'train'}", f"data.val={tmp_path / 'val'}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = read_manifest(tmp_path / "zoo")
    assert sorted(manifest["models"]) == ["lte-smoke-s0", "ours-smoke-s0"] and len(manifest["stage1"]) == 1
    assert manifest["models"]["ours-smoke-s0"]["command"].startswith("torchrun --nproc_per_node=2 -m")
    assert done.stdout.count("ours-smoke-s0: x2/x3/x4 PSNR") == 1  # rank 0 alone scores and reports
