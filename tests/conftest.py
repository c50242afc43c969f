import pytest
import torch

from helpers import tiny_model_config


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_config():
    return tiny_model_config()


@pytest.fixture
def one_thread():
    """Tiny models: one thread is faster than two on a shared CPU (no OpenMP contention)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
