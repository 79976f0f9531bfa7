"""The std-scale diagnostic (benchmarks/std_scale.py, ``uncertainty_components.py scale``;
docs/uncertainty.md, "How far one rule can go")."""

import numpy as np
from scipy.stats import norm

from benchmarks.std_scale import scale_factors


def _case(std_over_error: float, n: int = 200_000, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(n // 400, 400))
    err = rng.normal(scale=0.2, size=truth.shape)
    ok = np.ones(truth.shape, bool)
    ok[::5] = False  # excluded pixels (a fifth, with ten times the error) must not count
    err[::5] *= 10
    std = np.full(truth.shape, 0.2 * std_over_error)
    std[1::10] = np.nan  # undefined std (a tenth of the pixels) is not scored
    return {"ok": ok, "mean_product": truth + err, "truth": truth, "std_product": std}


def test_a_std_half_the_error_needs_twice_its_scale() -> None:
    cov, c80, c85, c90, c95 = scale_factors(_case(0.5))
    assert abs(cov - (2 * norm.cdf(1.645 * 0.5) - 1)) < 0.01
    assert abs(c90 - 2.0) < 0.05
    # the band of the target: factors at which a right-sized std would cover 0.85 and 0.95
    assert abs(c85 - 2 * norm.ppf(0.925) / 1.645) < 0.05
    assert abs(c95 - 2 * norm.ppf(0.975) / 1.645) < 0.05
    assert c80 < c85 < c90 < c95


def test_a_right_std_is_in_range() -> None:
    cov, _, c85, c90, c95 = scale_factors(_case(1.0, seed=1))
    assert 0.89 < cov < 0.91
    assert c85 <= 1.0 <= c95 and abs(c90 - 1.0) < 0.03
