"""I3D and SyncNet accept their published weight layouts (key names and shapes) and run with random init.

Layouts checked here (and documented in evaluation/i3d.py, evaluation/syncnet.py):
- pytorch-i3d `rgb_imagenet.pt`: 'Conv3d_1a_7x7.conv3d.weight' [64, 3, 7, 7, 7], 'Conv3d_2c_3x3.conv3d.weight'
  [192, 64, 3, 3, 3], 'Mixed_3b.b1b.conv3d.weight' [128, 96, 3, 3, 3], 'Mixed_5c.b3b.conv3d.weight'
  [128, 832, 1, 1, 1], BatchNorm 'bn.{weight,bias,running_mean,running_var}' per unit, 'logits.conv3d.weight'
  [400, 1024, 1, 1, 1] + 'logits.conv3d.bias' [400]; 12,697,264 parameters.
- StyleGAN-V `i3d_torchscript.pt`: a TorchScript module called as net(x, rescale=False, resize=False,
  return_features=True) -> [B, 400].
- syncnet_python `syncnet_v2.model`: keys and shapes in SYNCNET_LAYOUT below (BatchNorm running stats beside each
  'weight'/'bias' of indices 1, 5, 9, 12, 15, 19 and the fc BatchNorm1d at index 1; no num_batches_tracked).
"""

import numpy as np
import pytest
import torch

from evaluation.fvd import I3DFeatures, fvd_clips, load_i3d
from evaluation.i3d import InceptionI3d
from evaluation.syncnet import SyncNet, load_syncnet
from moda_train.core.weights import WeightsMissing, resolve_weights

I3D_LAYOUT = {
    "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
    "Conv3d_1a_7x7.bn.running_var": (64,),
    "Conv3d_2b_1x1.conv3d.weight": (64, 64, 1, 1, 1),
    "Conv3d_2c_3x3.conv3d.weight": (192, 64, 3, 3, 3),
    "Mixed_3b.b0.conv3d.weight": (64, 192, 1, 1, 1),
    "Mixed_3b.b1b.conv3d.weight": (128, 96, 3, 3, 3),
    "Mixed_4b.b2b.conv3d.weight": (48, 16, 3, 3, 3),
    "Mixed_5c.b3b.conv3d.weight": (128, 832, 1, 1, 1),
    "logits.conv3d.weight": (400, 1024, 1, 1, 1),
    "logits.conv3d.bias": (400,),
}

SYNCNET_LAYOUT = {
    "netcnnaud.0.weight": (64, 1, 3, 3),
    "netcnnaud.1.running_mean": (64,),
    "netcnnaud.4.weight": (192, 64, 3, 3),
    "netcnnaud.8.weight": (384, 192, 3, 3),
    "netcnnaud.11.weight": (256, 384, 3, 3),
    "netcnnaud.14.weight": (256, 256, 3, 3),
    "netcnnaud.18.weight": (512, 256, 5, 4),
    "netcnnaud.19.running_var": (512,),
    "netfcaud.0.weight": (512, 512),
    "netfcaud.1.weight": (512,),
    "netfcaud.3.weight": (1024, 512),
    "netfclip.3.bias": (1024,),
    "netcnnlip.0.weight": (96, 3, 5, 7, 7),
    "netcnnlip.4.weight": (256, 96, 1, 5, 5),
    "netcnnlip.8.weight": (256, 256, 1, 3, 3),
    "netcnnlip.11.weight": (256, 256, 1, 3, 3),
    "netcnnlip.14.weight": (256, 256, 1, 3, 3),
    "netcnnlip.18.weight": (512, 256, 1, 6, 6),
}


def _published_style(net: torch.nn.Module) -> dict:
    # Published checkpoints predate BatchNorm step counters; the loaders must accept them without.
    return {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def test_i3d_has_the_pytorch_i3d_layout():
    net = InceptionI3d()
    state = net.state_dict()
    for key, shape in I3D_LAYOUT.items():
        assert tuple(state[key].shape) == shape, key
    assert sum(p.numel() for p in net.parameters()) == 12_697_264


@pytest.mark.slow
def test_i3d_state_dict_loads_and_gives_400_logits(tmp_path):
    torch.manual_seed(0)
    net = InceptionI3d().eval()
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(_published_style(net), path)
    loaded = load_i3d(path)
    for key, value in _published_style(net).items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    clips = np.random.default_rng(0).integers(0, 256, (2, 10, 32, 32, 3), dtype=np.uint8)
    features = I3DFeatures(loaded, resolution=224, batch_size=2)(clips)
    assert features.shape == (2, 400) and np.isfinite(features).all()
    assert not np.allclose(features[0], features[1])  # different clips, different logits


class _StyleGANVLike(torch.nn.Module):
    """Same call signature as StyleGAN-V's i3d_torchscript.pt: rescale maps 0..255 to [-1, 1] inside; softmax
    unless return_features is set; the flags StyleGAN-V's FVD passes are required here."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False):
        if not (rescale and resize and x.dtype == torch.uint8):
            raise RuntimeError("called unlike StyleGAN-V's FVD")
        logits = self.proj((x.float() / 127.5 - 1).mean(dim=(2, 3, 4)))
        return logits if return_features else logits.softmax(dim=-1)


def test_i3d_torchscript_gets_uint8_clips_with_stylegan_v_flags(tmp_path):
    path = tmp_path / "i3d_torchscript.pt"
    scripted = torch.jit.script(_StyleGANVLike())
    scripted.save(str(path))
    clips = np.random.default_rng(0).integers(0, 256, (3, 16, 20, 24, 3), dtype=np.uint8)
    features = I3DFeatures(load_i3d(path), batch_size=2)(clips)
    expected = scripted(
        torch.from_numpy(clips).permute(0, 4, 1, 2, 3), rescale=True, resize=True, return_features=True
    )
    np.testing.assert_allclose(features, expected.detach().numpy(), rtol=1e-6)


def test_wrong_i3d_file_names_the_bad_keys(tmp_path):
    state = _published_style(InceptionI3d())
    state["Mixed_3b.b0.conv.weight"] = state.pop("Mixed_3b.b0.conv3d.weight")
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"missing \['Mixed_3b.b0.conv3d.weight'\].*unexpected"):
        load_i3d(path)


def test_fvd_clips_random_in_real_video_first_in_generated_and_reproducible():
    starts = {fvd_clips(f"clip{i}", 100, 16, seed=0) for i in range(20)}
    assert all(fake == 0 and 0 <= real <= 84 for real, fake in starts)
    assert len({real for real, _ in starts}) > 5  # random per clip, not one fixed place
    assert fvd_clips("clip3", 100, 16, seed=0) == fvd_clips("clip3", 100, 16, seed=0)
    assert fvd_clips("short", 15, 16, seed=0) is None  # discard_short_videos
    assert fvd_clips("exact", 16, 16, seed=0) == (0, 0)


def test_syncnet_has_the_syncnet_python_layout(tmp_path):
    net = SyncNet()
    state = net.state_dict()
    for key, shape in SYNCNET_LAYOUT.items():
        assert tuple(state[key].shape) == shape, key
    path = tmp_path / "syncnet_v2.model"
    torch.save(_published_style(net), path)
    loaded = load_syncnet(path)
    with torch.inference_mode():
        audio = loaded.forward_audio(torch.zeros(3, 1, 13, 20))
        video = loaded.forward_video(torch.zeros(3, 3, 5, 224, 224))
    assert audio.shape == video.shape == (3, 1024)


def test_missing_weights_are_reported_with_the_path(tmp_path, monkeypatch):
    monkeypatch.delenv("MODA_SYNCNET_PATH", raising=False)
    monkeypatch.setenv("MODA_I3D_PATH", str(tmp_path / "from_env.pt"))
    assert resolve_weights("i3d", "") == tmp_path / "from_env.pt"
    assert resolve_weights("i3d", "given.pt").name == "given.pt"  # the config wins over the environment
    with pytest.raises(WeightsMissing, match=r"weights not found at .*from_env\.pt.*MODA_I3D_PATH"):
        load_i3d(resolve_weights("i3d", ""))
    with pytest.raises(WeightsMissing, match=r"weights not found at weights/syncnet_v2\.model"):
        load_syncnet(resolve_weights("syncnet", ""))


def test_unreadable_weights_file_is_an_error_not_a_skip(tmp_path):
    path = tmp_path / "syncnet_v2.model"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        load_syncnet(path)
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        load_i3d(path)
