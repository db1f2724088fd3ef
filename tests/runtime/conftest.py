"""Runtime test setup: every test runs torch on one thread."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Two busy shared cores make multi-threaded tiny matmuls stall; one thread is 100x faster here."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
