from pathlib import Path

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


# Folders of tiny models, op-overhead bound: there one torch thread is faster than two and immune to other jobs
# on the shared cores. A test module elsewhere opts in with `pytestmark = pytest.mark.one_thread`. Module-scoped,
# so the module's own fixtures (trained models, features) run under the same thread count as its tests.
ONE_THREAD_FOLDERS = ("models", "flow", "vae", "generation")


@pytest.fixture(scope="module", autouse=True)
def _one_thread(request):
    if Path(request.node.path).parent.name not in ONE_THREAD_FOLDERS and not request.node.get_closest_marker(
        "one_thread"
    ):
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def demo_shards(tmp_path_factory):
    """The quickstart's demo corpus, made and sharded by the real commands once per test session."""
    from data_prep.config import ShardConfig
    from data_prep.demo_corpus import build_corpus
    from data_prep.shard import run
    from moda_train.core.config_loader import CONFIGS_ROOT, load_config

    root = tmp_path_factory.mktemp("demo")
    build_corpus(root / "videos", num_videos=24, seed=0, workers=2, progress=False)
    overrides = [
        f"input.root={root / 'videos'}",
        f"input.annotations={root / 'videos' / 'labels.csv'}",
        f"output.dir={root / 'shards'}",
    ]
    cfg, _ = load_config(CONFIGS_ROOT / "data_prep" / "demo.yaml", overrides, schema=ShardConfig)
    run(cfg, progress=False)
    return root / "shards"
