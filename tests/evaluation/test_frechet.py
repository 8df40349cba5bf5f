"""The one Fréchet distance (FID and FVD) against closed forms on known Gaussians."""

import numpy as np
import pytest
import scipy.linalg

from evaluation.frechet import frechet_distance, frechet_distance_from_features, gaussian_stats
from evaluation.fvd import fvd_from_features


def _closed_form_commuting(mu1, d1, mu2, d2):
    # Covariances Q diag(d) Q^T with a shared Q commute, so tr((S1 S2)^1/2) = sum sqrt(d1 d2) and
    # d^2 = |mu1 - mu2|^2 + sum (sqrt(d1) - sqrt(d2))^2.
    return float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2))


def test_matches_closed_form_for_commuting_covariances():
    rng = np.random.default_rng(0)
    dim = 16
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    d1, d2 = rng.uniform(0.1, 3.0, dim), rng.uniform(0.1, 3.0, dim)
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    s1, s2 = q @ np.diag(d1) @ q.T, q @ np.diag(d2) @ q.T
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_closed_form_commuting(mu1, d1, mu2, d2), rel=1e-9)


def test_matches_closed_form_for_general_2x2_covariances():
    # For 2x2 SPD A: sqrt(A) = (A + sqrt(det A) I) / sqrt(tr A + 2 sqrt(det A)); tr((S1 S2)^1/2) of a product
    # with real positive eigenvalues l1, l2 is sqrt(l1) + sqrt(l2) = sqrt(tr(S1 S2) + 2 sqrt(det(S1 S2))).
    s1 = np.array([[2.0, 0.7], [0.7, 1.0]])
    s2 = np.array([[0.5, -0.2], [-0.2, 1.5]])
    mu1, mu2 = np.array([1.0, -2.0]), np.array([0.5, 0.5])
    product = s1 @ s2
    tr_sqrt = np.sqrt(np.trace(product) + 2 * np.sqrt(np.linalg.det(product)))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)


def test_one_dimensional_is_the_wasserstein_formula():
    assert frechet_distance(
        np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])
    ) == pytest.approx((1 - 3) ** 2 + (2 - 3) ** 2)


def test_sample_estimate_converges_and_same_set_is_zero():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(20000, 4))
    b = rng.normal(loc=1.0, scale=2.0, size=(20000, 4))
    # N(0, I) vs N(1, 4 I) in 4-d: 4 * 1 + 4 * (1 - 2)^2 = 8
    assert frechet_distance_from_features(a, b) == pytest.approx(8.0, rel=0.03)
    assert frechet_distance_from_features(a, a) == pytest.approx(0.0, abs=1e-8)


def test_covariance_is_unbiased_and_float64():
    x = np.array([[0.0, 0.0], [2.0, 2.0]], dtype=np.float32)
    mu, sigma = gaussian_stats(x)
    assert sigma.dtype == np.float64 and mu.dtype == np.float64
    assert sigma[0, 0] == pytest.approx(2.0)  # divided by N - 1 = 1


def test_singular_covariances_still_give_a_finite_number():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(5, 32)), rng.normal(size=(5, 32)) + 0.5  # fewer samples than dimensions
    value = frechet_distance_from_features(a, b)
    assert np.isfinite(value) and value > 0


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="shape mismatch"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match=r"\[N >= 2, D\]"):
        gaussian_stats(np.zeros((1, 4)))


@pytest.mark.parametrize("sizes", [(10, 12, 64), (30, 7, 100), (300, 200, 16)])
def test_sample_route_equals_covariance_route(sizes):
    # Few samples in many dimensions take the N1 x N2 singular-value route; it must give the same number.
    n1, n2, dim = sizes
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(n1, dim)), rng.normal(size=(n2, dim)) * 1.3 + 0.2
    expected = frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
    assert frechet_distance_from_features(a, b) == pytest.approx(expected, rel=1e-7)


def test_non_finite_features_are_rejected():
    bad = np.ones((4, 3))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        frechet_distance_from_features(bad, np.ones((4, 3)))


def _stylegan_v_fvd(real: np.ndarray, fake: np.ndarray) -> float:
    # StyleGAN-V's FeatureStats (raw sums, covariance = sum x x^T / N - mu mu^T) and compute_fvd's formula.
    def mean_cov(x):
        x = x.astype(np.float64)
        mean = x.sum(0) / len(x)
        return mean, x.T @ x / len(x) - np.outer(mean, mean)

    mu_r, sigma_r = mean_cov(real)
    mu_g, sigma_g = mean_cov(fake)
    s, _ = scipy.linalg.sqrtm(sigma_g @ sigma_r, disp=False)
    return float(np.real(np.square(mu_g - mu_r).sum() + np.trace(sigma_g + sigma_r - s * 2)))


@pytest.mark.parametrize("n_real,n_fake", [(16, 16), (40, 25), (300, 300)])
def test_fvd_equals_stylegan_v_formula_on_given_features(n_real, n_fake):
    rng = np.random.default_rng(n_real)
    real = rng.normal(size=(n_real, 24)).astype(np.float32)
    fake = (rng.normal(size=(n_fake, 24)) * 1.3 + 0.4).astype(np.float32)
    expected = _stylegan_v_fvd(real, fake)
    assert fvd_from_features(real, fake) == pytest.approx(expected, rel=1e-6)
    # N - 1 would differ by about 1/N in the covariance terms: the test can tell the normalisers apart.
    assert frechet_distance_from_features(real, fake, ddof=1) != pytest.approx(expected, rel=1e-3)
