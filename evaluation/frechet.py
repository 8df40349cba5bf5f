"""The Fréchet distance between two Gaussians, shared by FID and FVD.

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

Route: everything in float64; the trace term by the symmetric eigen route,
tr((S1 S2)^(1/2)) = tr((S1^(1/2) S2 S1^(1/2))^(1/2)) = sum of sqrt(eigenvalues of S1^(1/2) S2 S1^(1/2)),
with S1^(1/2) from `numpy.linalg.eigh` and eigenvalues below zero (round-off of a singular matrix) clipped to 0.
It is the same quantity pytorch-fid computes with `scipy.linalg.sqrtm(S1 @ S2)`, but symmetric matrices keep it
real and stable when there are fewer samples than feature dimensions, and it is fast: for 2048-d features
scipy 1.17's sqrtm took about two minutes on a busy CPU, the eigen route a few seconds. Covariances are divided by
N - ddof: ddof=1 (unbiased) as pytorch-fid and clean-fid for FID, ddof=0 as StyleGAN-V's FVD.
"""

from __future__ import annotations

import numpy as np


def _checked(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need features of shape [N >= 2, D], got {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or infinity")
    return features


def gaussian_stats(features: np.ndarray, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] (divided by N - ddof) of features [N, D], in float64."""
    features = _checked(features)
    return features.mean(axis=0), np.cov(features, rowvar=False, ddof=ddof).reshape(features.shape[1], -1)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative round-off eigenvalues clipped)."""
    eigenvalues, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (see the module docstring)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"shape mismatch: mu1 {mu1.shape}, mu2 {mu2.shape}, sigma1 {sigma1.shape}, sigma2 {sigma2.shape}"
        )
    root1 = _sqrt_psd((sigma1 + sigma1.T) / 2)
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_covmean = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_covmean
    # Round-off can leave a tiny negative number for identical sets; a distance is never negative.
    return float(max(value, 0.0))


def frechet_distance_from_features(features1: np.ndarray, features2: np.ndarray, ddof: int = 1) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets [N1, D] and [N2, D] (covariances
    divided by N - ddof).

    With few samples (N1 * N2 <= D^2, e.g. a few hundred frames of 2048-d features) the same number comes from
    the samples directly: with centred features A1, A2 and S_i = A_i^T A_i / (N_i - ddof), the non-zero
    eigenvalues of S1 S2 are those of (A1 A2^T)(A1 A2^T)^T / ((N1 - ddof)(N2 - ddof)), so tr((S1 S2)^(1/2)) is
    the sum of singular values of A1 A2^T / sqrt((N1 - ddof)(N2 - ddof)): an N1 x N2 problem, not a D x D one.
    """
    f1, f2 = _checked(features1), _checked(features2)
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature sizes differ: {f1.shape[1]} and {f2.shape[1]}")
    if len(f1) * len(f2) > f1.shape[1] ** 2:
        return frechet_distance(*gaussian_stats(f1, ddof), *gaussian_stats(f2, ddof))
    mean1, mean2 = f1.mean(axis=0), f2.mean(axis=0)
    a1, a2 = f1 - mean1, f2 - mean2
    scale1, scale2 = len(f1) - ddof, len(f2) - ddof
    trace_covmean = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum() / np.sqrt(scale1 * scale2)
    diff = mean1 - mean2
    value = diff @ diff + (a1**2).sum() / scale1 + (a2**2).sum() / scale2 - 2.0 * trace_covmean
    return float(max(value, 0.0))
