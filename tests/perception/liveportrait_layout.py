"""LivePortrait renderer files in the released layout with random tensors, at a reduced size for tests."""

from __future__ import annotations

from pathlib import Path

import torch

from moda_train.perception.liveportrait import RendererNetworks, RendererSizes

LAYOUT = Path(__file__).resolve().parents[2] / "docs" / "liveportrait_renderer_layout.tsv"

# Every width cut down (the 3-D feature volume keeps its 64 x 64 maps, so crops stay 256 px and faces 512 px);
# max_features = reshape_channel x reshape_depth, as in the released sizes.
SMALL = RendererSizes(
    block_expansion=4,
    max_features=8,
    reshape_channel=4,
    reshape_depth=2,
    num_resblocks=1,
    dense_block_expansion=2,
    dense_max_features=8,
    dense_num_blocks=2,
    compress=1,
    spade_hidden=8,
    generator_channels=8,
)


def documented_layout() -> dict[str, dict[str, tuple[int, ...]]]:
    """{file: {key: shape}} of the released renderer files as docs/liveportrait_renderer_layout.tsv lists them
    (stitching keys as `<sub-dict>/<key>`)."""
    layout: dict[str, dict[str, tuple[int, ...]]] = {}
    for line in LAYOUT.read_text().splitlines()[1:]:
        name, key, shape = line.split("\t")
        layout.setdefault(name, {})[key] = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
    return layout


def write_released_renderer(folder: Path, sizes: RendererSizes = SMALL, seed: int = 0) -> RendererNetworks:
    """Random networks of `sizes` saved as the four released files in `folder`; returns the networks. BatchNorm
    statistics are randomised too, so the files hold no identity transforms a wrong loader could get away with."""
    torch.manual_seed(seed)
    networks = RendererNetworks(sizes)
    with torch.no_grad():
        for module in networks.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(std=0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.8, 1.2)
                module.bias.normal_(std=0.1)
    folder.mkdir(parents=True, exist_ok=True)
    for name, state in networks.released_state_dicts().items():
        torch.save(state, folder / name)
    return networks
