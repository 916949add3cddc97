"""Statistics that do not overclaim (issue 12, class 7): the claims verdict says "inconclusive"
when the interval is wider than the paper's effect, and intervals of bounded metrics stay in the
metric's range. Hand-worked values only (no simulation)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sagin_jax.experiments.report import gain_verdict
from sagin_jax.experiments.stats import clip_to_range, interval_bounds, mean_ci


@pytest.mark.parametrize("mean,ci,claim,verdict", [
    # the example: +14.6% ± 31.2% on 4 seeds would agree with anything
    (0.146, 0.312, 0.1815, "inconclusive (interval wider than the paper's effect)"),
    # wide but excluding 0: the direction holds, the size does not
    (0.50, 0.20, 0.1815, "same direction; size inconclusive"),
    (-0.50, 0.20, 0.1815, "opposite: DDRL-NRA is worse"),
    # narrow intervals (2 * ci <= claim): the old verdicts
    (0.17, 0.05, 0.1815, "agrees (paper's value inside our interval)"),
    (0.05, 0.02, 0.1815, "same direction, smaller effect"),
    (0.40, 0.05, 0.1815, "same direction, larger effect"),
    (-0.10, 0.05, 0.1815, "opposite: DDRL-NRA is worse"),
    (0.01, 0.05, 0.1815, "no significant difference"),
    (0.10, math.nan, 0.1815, "too few seeds for an interval"),
])
def test_gain_verdict(mean, ci, claim, verdict):
    assert gain_verdict({"mean": mean, "ci": ci}, claim).startswith(verdict)


def test_wide_interval_never_agrees():
    """Whatever the mean, an interval wider than the effect never reads 'agrees'."""
    for mean in np.linspace(-0.5, 0.5, 41):
        assert not gain_verdict({"mean": float(mean), "ci": 0.1}, 0.0835).startswith("agrees")


def test_interval_bounds_clip_to_metric_range():
    # acceptance 0.95 ± 0.1 -> [0.85, 1.0]; 0.02 ± 0.1 -> [0.0, 0.12]
    lo, hi = interval_bounds("ACR", np.array([0.95, 0.02]), np.array([0.1, 0.1]))
    np.testing.assert_allclose(lo, [0.85, 0.0])
    np.testing.assert_allclose(hi, [1.0, 0.12])
    # AR, R/C, O: never negative, no upper bound
    for metric in ("AR", "RC", "RC_link", "O"):
        lo, hi = interval_bounds(metric, np.array([5.0]), np.array([9.0]))
        assert lo[0] == 0.0 and hi[0] == 14.0
    # a relative gain may be negative: untouched
    lo, hi = clip_to_range("gain", np.array([-0.3]), np.array([0.2]))
    assert lo[0] == -0.3 and hi[0] == 0.2
    # NaN (one seed) stays NaN
    lo, hi = interval_bounds("ACR", np.array([0.5]), np.array([math.nan]))
    assert math.isnan(lo[0]) and math.isnan(hi[0])


def test_mean_ci_hand_worked():
    """Seeds 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.303 -> half-width 4.303 / sqrt(3)."""
    mean, half = mean_ci(np.array([1.0, 2.0, 3.0]))
    assert mean == 2.0 and half == pytest.approx(4.303 / math.sqrt(3))


def test_sweep_claim_rows_come_from_each_sweep_with_a_comparison(tmp_path):
    import json

    from sagin_jax.experiments.report import sweep_claim_rows
    gain = {"AR": {"mean": 0.02, "ci95": 0.01, "n_seeds": 32},
            "ACR": {"mean": 0.30, "ci95": 0.01, "n_seeds": 32}}
    (tmp_path / "sweeps" / "a").mkdir(parents=True)
    (tmp_path / "sweeps" / "a" / "summary.json").write_text(json.dumps(
        {"name": "a", "n_trials": {"ddrl-nra": 7},
         "comparison": {"gain_vs": {"ddrl-nra": {"nrmvne": gain}}}}))
    (tmp_path / "sweeps" / "b").mkdir()
    (tmp_path / "sweeps" / "b" / "summary.json").write_text(json.dumps({"name": "b"}))
    rows = sweep_claim_rows(tmp_path)
    assert len(rows) == 2  # sweep b has no test comparison
    # AR: [+1%, +3%] excludes 0 and lies below the paper's +18.15%; ACR: [+29%, +31%] above +8.35%
    assert "+2.0% ± 1.0%" in rows[0] and "7 trials" in rows[0] and "| 32 |" in rows[0]
    assert rows[0].endswith("same direction, smaller effect |")
    assert rows[1].endswith("same direction, larger effect |")
    assert "| +18.15% |" in rows[0] and "| +8.35% |" in rows[1]  # the paper's section V gains
    # the sweep's own README row: the same claims and verdict rule
    from sagin_jax.experiments.sweep.report import claims_row
    row = claims_row({"n_trials": {"ddrl-nra": 7},
                      "comparison": {"gain_vs": {"ddrl-nra": {"nrmvne": gain}}}})
    assert row.startswith("| DDRL-NRA, best found configuration vs NRMVNE | +18.15% AR, +8.35% "
                          "ACR | AR +2.00% ± 1.00%, ACR +30.00% ± 1.00% (32 test seeds")
    assert row.endswith("| AR: same direction, smaller effect; ACR: same direction, larger "
                        "effect |")
