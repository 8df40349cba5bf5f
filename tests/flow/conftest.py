import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models are op-overhead bound: one thread is faster and immune to other jobs on the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
