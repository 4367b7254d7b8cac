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
