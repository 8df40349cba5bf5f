"""LivePortrait's renderer networks: the released layout, strict loading, shapes, dense motion and stitching."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from moda_train.perception.liveportrait import RELEASED_FILES, RendererNetworks, RendererSizes, stitch
from moda_train.perception.liveportrait.networks import coordinate_grid, infer_sizes

from .liveportrait_layout import SMALL, documented_layout, write_released_renderer


def _flat_layout(networks: RendererNetworks) -> dict[str, dict[str, tuple[int, ...]]]:
    layout = {}
    for name, state in networks.released_state_dicts().items():
        if name == "stitching_retargeting_module.pth":
            state = {f"{part}/{k}": v for part, sub in state.items() for k, v in sub.items()}
        layout[name] = {k: tuple(v.shape) for k, v in state.items()}
    return layout


def test_released_sizes_have_the_documented_layout():
    with torch.device("meta"):
        networks = RendererNetworks()
    assert _flat_layout(networks) == documented_layout()
    assert set(documented_layout()) == set(RELEASED_FILES)
    assert infer_sizes(networks.released_state_dicts()) == RendererSizes()


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    folder = tmp_path_factory.mktemp("liveportrait")
    return folder, write_released_renderer(folder)


def test_files_load_strictly_and_compute_the_saved_networks(released):
    folder, saved = released
    loaded = RendererNetworks.from_folder(folder)
    assert loaded.sizes == SMALL
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 256, 256, generator=g)
    kp_s, kp_d = torch.rand(1, 21, 3, generator=g) - 0.5, torch.rand(1, 21, 3, generator=g) - 0.5
    with torch.no_grad():
        outputs = []
        for nets in (saved.eval(), loaded):
            f_s = nets.appearance(image)
            warped = nets.warping(f_s, kp_d, kp_s)
            outputs.append((f_s, warped, nets.generator(warped)))
    (f_s, warped, face), again = outputs
    assert f_s.shape == (1, SMALL.reshape_channel, SMALL.reshape_depth, 64, 64)
    assert warped.shape == (1, SMALL.feature_channels, 64, 64)
    assert face.shape == (1, 3, 512, 512) and 0 <= face.min() and face.max() <= 1
    for a, b in zip(outputs[0], again):
        torch.testing.assert_close(a, b)


def test_liveportraits_own_folders_load(released, tmp_path):
    """As LivePortrait ships them: base_models/ and, beside it, retargeting_models/ with the stitching file."""
    folder, _ = released
    base, retargeting = tmp_path / "base_models", tmp_path / "retargeting_models"
    base.mkdir()
    retargeting.mkdir()
    for name in RELEASED_FILES:
        target = retargeting if name == "stitching_retargeting_module.pth" else base
        (target / name).write_bytes((folder / name).read_bytes())
    assert RendererNetworks.from_folder(base).sizes == SMALL


def test_a_file_of_another_layout_is_named(released, tmp_path):
    folder, saved = released
    for name in RELEASED_FILES:
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    state = torch.load(tmp_path / "spade_generator.pth")
    state.pop("up_1.conv_1.weight_orig")
    torch.save(state, tmp_path / "spade_generator.pth")
    with pytest.raises(
        ValueError, match=r"spade_generator.pth: not LivePortrait's released layout: .*up_1\.conv_1"
    ):
        RendererNetworks.from_folder(tmp_path)
    (tmp_path / "warping_module.pth").unlink()
    with pytest.raises(FileNotFoundError, match="warping_module.pth not found"):
        RendererNetworks.from_folder(tmp_path)


def test_equal_keypoints_give_the_identity_deformation(released):
    _, nets = released
    feature = nets.appearance(torch.rand(1, 3, 256, 256))
    kp = torch.rand(1, 21, 3) - 0.5
    with torch.no_grad():
        deformation, occlusion = nets.warping.dense_motion_network(feature, kp, kp)
        moved, _ = nets.warping.dense_motion_network(feature, kp + 0.2, kp)
    grid = coordinate_grid(SMALL.reshape_depth, 64, 64, feature)
    torch.testing.assert_close(deformation[0], grid)
    assert occlusion.shape == (1, 1, 64, 64) and (occlusion > 0).all() and (occlusion < 1).all()
    assert (moved - grid).abs().max() > 1e-3  # a driving shift moves the sampling grid
    # The identity deformation is LivePortrait's coordinate grid (linspace(-1, 1, n) per axis), which the warp
    # samples with align_corners=False as LivePortrait does: that grid is not the identity resample (it stretches
    # the volume by n / (n - 1) and half-samples the zero padding at the borders), so even equal keypoints change
    # the features, by 0.25-0.7 relative at depth 16 and 64 x 64 (smooth to white-noise volumes), 0.5 here (depth
    # 2). Sampled with align_corners=True the same grid would give the source features back to 1e-6.
    with torch.no_grad():
        warped = F.grid_sample(feature, deformation, align_corners=False)
        aligned = F.grid_sample(feature, deformation, align_corners=True)
    assert (warped - feature).norm() > 0.1 * feature.norm()
    assert (aligned - feature).norm() < 1e-5 * feature.norm()


def test_stitching_adds_keypoint_offsets_and_a_shift():
    net = RendererNetworks(SMALL).stitching["retarget_shoulder"]
    last = net.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias[:3] = torch.tensor([0.1, 0.2, 0.3])  # keypoint 0's offset
        last.bias[63:] = torch.tensor([1.0, -1.0])  # x, y shift of every keypoint
    kp_s, kp_d = torch.zeros(1, 21, 3), torch.rand(1, 21, 3)
    out = stitch(net, kp_s, kp_d)
    expected = kp_d.clone()
    expected[0, 0] += torch.tensor([0.1, 0.2, 0.3])
    expected[..., 0] += 1.0
    expected[..., 1] -= 1.0
    torch.testing.assert_close(out, expected)
