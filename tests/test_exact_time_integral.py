"""AR's time integral (eq. 9) is exact: bit-identical to the float64 reference's value rounded to
float32, on a horizon where the integral passes float32's 2^24 many times over.

The oracle is docs/rules.md's AR formula in Python integers (the reference sums the same integer
terms in float64, exactly below 2^53, and divides in float64), independent of the limb code.
"""
from __future__ import annotations

import heapq
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np

from sagin_jax.policies.baselines import NRMVNE
from sagin_jax.scenario.types import widen
from sagin_jax.simulation import exact
from sagin_jax.simulation.batch import make_requests, make_substrates, table_size
from sagin_jax.simulation.online import simulate
from tests.conftest import small, unstack


def _wide(v: int) -> np.ndarray:
    return np.array([(v >> (exact.LIMB_BITS * i)) & exact.LIMB_MASK
                     for i in range(exact.N_LIMBS)], np.uint32)


def _value(w) -> int:
    return sum(int(x) << (exact.LIMB_BITS * i) for i, x in enumerate(np.asarray(w)))


def _nearest_f32(f: Fraction) -> np.float32:
    """The float32 nearest to f, ties to even, by exact comparison."""
    c = np.float32(float(f))
    cands = [np.nextafter(c, np.float32(-np.inf)), c, np.nextafter(c, np.float32(np.inf))]
    return min(cands, key=lambda x: (abs(Fraction(float(x)) - f), int(x.view(np.uint32)) & 1))


def test_limb_arithmetic_and_rounded_division_are_exact():
    rng = np.random.default_rng(0)
    ns, ds = [], []
    for _ in range(3000):
        bits = int(rng.integers(0, 62))
        ns.append(int(rng.integers(0, 2 ** 62)) >> (62 - bits))
        ds.append(int(rng.integers(1, 2 ** int(rng.integers(1, 25)))))
    for _ in range(500):  # exact midpoints between two float32s: ties go to even
        m, e = int(rng.integers(2 ** 23, 2 ** 24)), int(rng.integers(0, 30))
        ns.append((2 * m + 1) << e)
        ds.append(2)
    got = np.asarray(jax.jit(jax.vmap(exact.divide_to_f32))(
        jnp.asarray(np.stack([_wide(n) for n in ns])), jnp.asarray(np.array(ds, np.uint32))))
    for n, d, g in zip(ns, ds, got):
        assert g == (np.float32(0) if n == 0 else _nearest_f32(Fraction(n, d))), (n, d)

    a = rng.integers(0, 2 ** 24, 600)
    b = rng.integers(0, 2 ** 24, 600)
    p = np.asarray(jax.jit(exact.product)(jnp.asarray(a, jnp.uint32), jnp.asarray(b, jnp.uint32)))
    assert [_value(row) for row in p] == [int(x) * int(y) for x, y in zip(a, b)]
    mask = a % 3 == 0
    s = exact.masked_sum(jnp.asarray(p), jnp.asarray(mask))
    total = sum(int(x) * int(y) for x, y, k in zip(a, b, mask) if k)
    assert _value(s) == total
    assert _value(exact.multiply_small(s, jnp.uint32(12_345_678))) == total * 12_345_678 % 2 ** 64
    assert _value(exact.subtract(s, jnp.asarray(p[0]))) == total - _value(p[0])
    assert _value(exact.add(s, jnp.asarray(p[1]))) == total + _value(p[1])


def test_average_revenue_is_exact_over_a_20000_request_horizon():
    n = 20_000
    cfg = small(n_test=n)
    sub = unstack(make_substrates(cfg, (0,)), 0)
    reqs = unstack(make_requests(cfg, (0,), "test"), 0)
    _, out = jax.jit(lambda k: simulate(NRMVNE, None, k, sub, reqs, table_size(reqs)))(
        jax.random.key(0))
    ar, rc = np.asarray(out.metrics.ar), np.asarray(out.metrics.rc)
    acc = np.asarray(out.accepted)
    rev = np.asarray(out.value.revenue).astype(np.int64)
    cost = np.asarray(out.value.cost).astype(np.int64)
    arr = np.asarray(reqs.arrival).astype(np.int64)
    dep = arr + np.asarray(reqs.lifetime).astype(np.int64)
    assert np.all(rev == np.asarray(out.value.revenue)) and np.all(arr == np.asarray(reqs.arrival))

    held_departed = revenue_active = revenue_arrival = rev_sum = cost_sum = 0
    active: list[tuple[int, int]] = []
    want_ar, want_rc, held_max = np.zeros(n, np.float32), np.zeros(n, np.float32), 0
    for k in range(n):
        t = int(arr[k])
        while active and active[0][0] <= t:
            d, r = heapq.heappop(active)
            held_departed += r * d
            revenue_active -= r
        if acc[k]:
            heapq.heappush(active, (int(dep[k]), int(rev[k])))
            revenue_active += int(rev[k])
            revenue_arrival += int(rev[k]) * t
            rev_sum, cost_sum = rev_sum + int(rev[k]), cost_sum + int(cost[k])
        held = held_departed + t * revenue_active - revenue_arrival  # Σ rev · (min(dep, t) − arr)
        held_max = max(held_max, held)
        want_ar[k] = np.float32(held / t) if t > 0 else 0.0  # float64 division, then float32
        want_rc[k] = np.float32(rev_sum / cost_sum) if cost_sum else 0.0
    assert held_max > 2 ** 28, "the horizon must take the integral far past float32's 2^24"
    mismatches = np.flatnonzero(ar != want_ar)
    assert mismatches.size == 0, (mismatches[:5], ar[mismatches[:5]], want_ar[mismatches[:5]])
    # revenue and cost sums stay below 2^24 here, so their float32 sums are exact too
    assert cost_sum < 2 ** 24
    assert np.array_equal(rc, want_rc)


def test_fractional_inputs_fall_back_to_float32_sums():
    cfg = small(n_test=40)
    sub = unstack(make_substrates(cfg, (1,)), 0)
    reqs = widen(unstack(make_requests(cfg, (1,), "test"), 0))  # float32 demands
    reqs = reqs.replace(cpu=reqs.cpu.at[0, 0].add(0.5))  # one non-integer demand
    state, out = jax.jit(lambda k: simulate(NRMVNE, None, k, sub, reqs, table_size(reqs)))(
        jax.random.key(0))
    assert bool(out.accepted[0]) and not bool(state.totals.integer_valued)
    acc, rev = np.asarray(out.accepted), np.asarray(out.value.revenue, np.float64)
    arr = np.asarray(reqs.arrival, np.float64)
    dep = arr + np.asarray(reqs.lifetime, np.float64)
    for k in range(1, 40):
        t = arr[k]
        held = sum(rev[j] * (min(dep[j], t) - arr[j]) for j in range(k + 1) if acc[j])
        assert np.isclose(float(out.metrics.ar[k]), held / t, rtol=1e-5)
