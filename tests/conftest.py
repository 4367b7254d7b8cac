import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Every test runs torch on one thread: the tensors are tiny, and on a shared 2-core machine
    several threads made them up to 100x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# A model small enough to train both stages in a second or two.
TINY_OVERRIDES = {
    "stage1.steps": 2, "stage1.batch_size": 4, "stage1.patch_size": 24, "encoder.dim": 16,
    "stage2.steps": 2, "stage2.batch_size": 2, "stage2.patch_size": 24, "stage2.queries": 64,
    "model.n_resblocks": 1, "model.n_feats": 8, "model.width": 16, "model.mlp": (16,),
    "stage1.checkpoint_every": 1, "stage2.checkpoint_every": 1,
}


@pytest.fixture(scope="session")
def tiny_overrides():
    return dict(TINY_OVERRIDES)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A tiny stage-1 + stage-2 run of "ours" on random images: ``(config, stage1, stage2)``."""
    from asbsr.config import make_config, method_config
    from asbsr.train import train_stage1, train_stage2

    folder = tmp_path_factory.mktemp("checkpoints")
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 100, 104, generator=generator) for _ in range(2)]
    config = method_config(make_config("smoke", TINY_OVERRIDES), "ours")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    stage1 = train_stage1(config, folder, progress=False, images=images)
    stage2 = train_stage2(config, stage1, folder, progress=False, images=images)
    torch.set_num_threads(previous)
    return config, stage1, stage2
