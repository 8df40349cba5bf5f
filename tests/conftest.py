import pytest
import torch


@pytest.fixture(autouse=True)
def _reset_torch_state():
    """Tests must not leak a changed default dtype or a live process group into the next test."""
    dtype = torch.get_default_dtype()
    yield
    torch.set_default_dtype(dtype)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
