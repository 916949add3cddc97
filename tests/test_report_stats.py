"""Statistics that do not overclaim: exact Student-t quantiles, paired intervals of relative gains,
the claims verdict says "inconclusive" when the interval is wider than the paper's effect, and
intervals of bounded metrics stay in the metric's range. Hand-worked values only (no
simulation)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sagin_jax.experiments.report import best_verdict, gain_verdict
from sagin_jax.experiments.stats import (clip_to_range, interval_bounds, mean_ci, relative_gain,
                                         t975)
from sagin_jax.experiments.sweep.compare import paired_gain

# t_{0.975, df} from a published Student-t table, to 4 decimals
T975_TABLE = {1: 12.7062, 2: 4.3027, 3: 3.1824, 5: 2.5706, 30: 2.0423, 31: 2.0395, 100: 1.9840,
              1000: 1.9623}


@pytest.mark.parametrize("df", sorted(T975_TABLE))
def test_t975_matches_published_table(df):
    assert round(t975(df), 4) == T975_TABLE[df]


def test_t975_needs_one_degree_of_freedom():
    assert math.isnan(t975(0))


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
    """Seeds 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.3027 -> half-width 4.3027 / sqrt(3)."""
    mean, half = mean_ci(np.array([1.0, 2.0, 3.0]))
    assert mean == 2.0 and half == pytest.approx(4.3027 / math.sqrt(3), abs=1e-4)


def test_mean_ci_32_seeds_uses_t_not_normal():
    """32 seeds (every committed result): half-width = t(0.975, 31) = 2.0395 times sd / sqrt(32),
    about 4% wider than the normal 1.96."""
    x = np.arange(32.0)  # sd = sqrt(32 * 33 / 12) = sqrt(88)
    _, half = mean_ci(x)
    assert half == pytest.approx(2.0395 * math.sqrt(88.0) / math.sqrt(32.0), abs=1e-4)


def test_mean_ci_one_seed_has_no_interval():
    mean, half = mean_ci(np.array([[0.3, 0.4]]), axis=0)
    np.testing.assert_array_equal(mean, [0.3, 0.4])
    assert np.isnan(half).all()


# per-seed ratios a / b: 1.1, 1.3, 0.9, 1.2 -> differences 0.1, 0.3, -0.1, 0.2; mean 0.125;
# squared deviations sum 0.0875, sd sqrt(0.0875 / 3); t(0.975, 3) = 3.1824
PAIRED_A = np.array([2.2, 6.5, 0.9, 3.6])
PAIRED_B = np.array([2.0, 5.0, 1.0, 3.0])
PAIRED_HALF = 3.1824 * math.sqrt(0.0875 / 3) / math.sqrt(4)


def test_paired_gain_hand_worked():
    """The sweep's test comparison: the mean and 95% t-interval of the per-seed a / b - 1."""
    g = paired_gain(PAIRED_A, PAIRED_B)
    assert g["n_seeds"] == 4
    assert g["mean"] == pytest.approx(0.125, abs=1e-12)
    assert g["ci95"] == pytest.approx(PAIRED_HALF, abs=1e-4)


def test_reproduction_gain_is_paired_per_seed():
    """reproduce's gain (``relative_gain`` then ``mean_ci``): the same hand-worked interval."""
    np.testing.assert_allclose(relative_gain(PAIRED_A, PAIRED_B), [0.1, 0.3, -0.1, 0.2])
    mean, half = mean_ci(relative_gain(PAIRED_A, PAIRED_B))
    assert mean == pytest.approx(0.125) and half == pytest.approx(PAIRED_HALF, abs=1e-4)


def test_paired_gain_ignores_what_seeds_share():
    """Pairing: a constant +10% on every seed has a zero-width interval however much the seeds
    differ (an unpaired ratio of means would carry the seeds' spread)."""
    b = np.array([1.0, 7.0, 30.0, 2.5, 11.0])
    g = paired_gain(1.1 * b, b)
    assert g["mean"] == pytest.approx(0.1) and g["ci95"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("mean,ci,verdict", [
    # claim +50% (dyadic values: the sums are exact). Width: inconclusive only when 2 * ci > 0.5
    (0.5, 0.25, "agrees (paper's value inside our interval)"),  # 2 * ci == claim
    (0.5, 0.2500001, "same direction; size inconclusive"),
    (0.0, 0.2500001, "inconclusive (interval wider than the paper's effect)"),
    (-0.5, 0.2500001, "opposite: DDRL-NRA is worse"),
    # the interval is closed: hi == claim agrees
    (0.25, 0.25, "agrees (paper's value inside our interval)"),
    (0.25, 0.125, "same direction, smaller effect"),  # [0.125, 0.375]
    (0.875, 0.125, "same direction, larger effect"),  # [0.75, 1.0]
    # "same direction" needs lo > 0: an interval touching 0 is no significant difference
    (0.125, 0.125, "no significant difference"),
    (-0.125, 0.0625, "opposite: DDRL-NRA is worse"),
])
def test_gain_verdict_boundaries(mean, ci, verdict):
    assert gain_verdict({"mean": mean, "ci": ci}, 0.5).startswith(verdict)


def test_best_verdict_ties_when_intervals_overlap():
    """The best configuration's lead counts only when its interval lies above the runner-up's."""
    fin = lambda a, b: {"U[1,10]": {"ACR": a}, "U[1,20]": {"ACR": b}}  # noqa: E731
    assert best_verdict(fin({"mean": 0.43, "ci": 0.005}, {"mean": 0.42, "ci": 0.004}),
                        "ACR") == "agrees"
    # 0.43 - 0.005 = 0.425 <= 0.42 + 0.005: touching intervals tie
    assert best_verdict(fin({"mean": 0.43, "ci": 0.005}, {"mean": 0.42, "ci": 0.005}),
                        "ACR") == "agrees, but ties U[1,20] within the intervals"
    assert best_verdict(fin({"mean": 0.41, "ci": 0.001}, {"mean": 0.42, "ci": 0.001}),
                        "ACR") == "differs (best: U[1,20])"


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


def test_ppo_claim_rows_say_higher_or_lower_only_when_the_interval_excludes_zero(tmp_path):
    """One row per (PPO vs NRMVNE / DDRL-NRA, metric); the verdict read off the interval by hand:
    [-3, -1] lies below 0, [-1, 2] and [0, 2] hold 0, [0.5, 1] lies above 0; other pairs are left out."""
    from sagin_jax.experiments.report import ppo_claim_rows
    assert ppo_claim_rows(tmp_path) == []  # no PPO results: no rows
    paired = [
        {"a": "ppo", "b": "nrmvne", "metric": "AR", "mean_diff": -2.0, "ci_low": -3.0,
         "ci_high": -1.0, "n_seeds": 32},
        {"a": "ppo", "b": "nrmvne", "metric": "ACR", "mean_diff": 0.5, "ci_low": -1.0,
         "ci_high": 2.0, "n_seeds": 32},
        {"a": "ppo", "b": "ddrl-nra", "metric": "AR", "mean_diff": 0.75, "ci_low": 0.5,
         "ci_high": 1.0, "n_seeds": 32},
        {"a": "ppo", "b": "ddrl-nra", "metric": "ACR", "mean_diff": 1.0, "ci_low": 0.0,
         "ci_high": 2.0, "n_seeds": 32},  # touches 0: not excluded
        {"a": "ddrl-nra", "b": "nrmvne", "metric": "AR", "mean_diff": 1.0, "ci_low": 0.5,
         "ci_high": 1.5, "n_seeds": 32},
    ]
    (tmp_path / "ppo").mkdir()
    (tmp_path / "ppo" / "summary.json").write_text(json.dumps({"paired": paired}))
    rows = ppo_claim_rows(tmp_path)
    assert len(rows) == 4
    assert rows[0].startswith("| PPO vs NRMVNE, AR") and rows[0].endswith("| 32 | PPO lower |")
    assert "-2 [-3, -1]" in rows[0]
    assert rows[1].endswith("| no significant difference |")
    assert rows[2].startswith("| PPO vs DDRL-NRA") and rows[2].endswith("| PPO higher |")
    assert rows[3].endswith("| no significant difference |")
