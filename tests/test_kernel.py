"""The "kernel" strategy (one Pallas program per seed, sagin_jax/kernels) in Pallas interpret mode
on the CPU: the same decisions, values, metrics and final residuals as the "sequential" strategy
on the paper config (NRMVNE, GRC, random, DDRL-NRA and RLVNE greedy), the same as the networkx
reference on hand-worked substrates, and a module that lowers for CUDA to one Triton kernel
call."""
from __future__ import annotations

import functools
import math

import jax
import numpy as np
import pytest

from sagin_jax.config import ScenarioConfig
from sagin_jax.kernels.cost import cuda_cost
from sagin_jax.kernels.layout import Dims, next_pow2
from sagin_jax.kernels.simulate import simulate_kernel
from sagin_jax.policies.baselines import GRC, NRMVNE, RANDOM
from sagin_jax.reference.simulate import simulate as ref_simulate
from sagin_jax.scenario.io import requests_from_dict, substrate_from_dict
from sagin_jax.scenario.plan import scenario_bounds
from sagin_jax.scenario.types import stack
from sagin_jax.simulation.batch import (make_requests, make_substrates, seed_keys,
                                        simulate_batch, table_size)
from sagin_jax.simulation.online import simulate
from sagin_jax.training.config import TrainConfig
from sagin_jax.training.reinforce import policies_for
from tests import test_reference_handworked as hw

PAPER = ScenarioConfig(n_test=100)  # the paper's substrate, 100 test requests per seed
SEEDS = (0, 1, 2)


@functools.lru_cache(maxsize=None)
def paper_runs():
    subs, reqs = make_substrates(PAPER, SEEDS), make_requests(PAPER, SEEDS, "test")
    a = table_size(reqs)
    seq = simulate_batch(NRMVNE, None, seed_keys(SEEDS), subs, reqs, max_active=a,
                         strategy="sequential")
    # the strategy as the simulator chooses it (interpret mode on a CPU)
    ker = simulate_batch(NRMVNE, None, seed_keys(SEEDS), subs, reqs, max_active=a,
                         strategy="kernel")
    return subs, reqs, seq, ker



def _assert_same_decisions(o_ker, o_seq) -> None:
    """The kernel's outcome rows are the sequential step's: some but not all requests accepted,
    the same acceptances, hosts, revenue, cost and running metrics, bit for bit."""
    acc = np.asarray(o_seq.accepted)
    assert 0 < acc.sum() < acc.size
    for f in ("accepted", "hosts"):
        np.testing.assert_array_equal(getattr(o_ker, f), getattr(o_seq, f), err_msg=f)
    for f in ("revenue", "cost"):
        np.testing.assert_array_equal(getattr(o_ker.value, f), getattr(o_seq.value, f))
    for f in ("ar", "acr", "rc", "rc_link"):
        np.testing.assert_array_equal(getattr(o_ker.metrics, f), getattr(o_seq.metrics, f))

def test_paper_config_pads_to_the_powers_of_two_of_its_bounds():
    """Triton blocks are powers of two: the paper's bounds (``scenario_bounds``: 466 links,
    degree 28) and 100 nodes, 10 request nodes, 45 request links pad to 512, 32, 128, 16, 64;
    a generated seed set (links padded to its own largest count) pads within them."""
    assert [next_pow2(n) for n in (0, 1, 2, 3, 64, 65)] == [1, 1, 2, 4, 64, 128]
    bounds = scenario_bounds(PAPER)
    assert (bounds.max_edges, bounds.max_degree) == (466, 28)
    assert (next_pow2(bounds.max_edges), next_pow2(bounds.max_degree)) == (512, 32)
    subs, reqs = make_substrates(PAPER, SEEDS[:1]), make_requests(PAPER, SEEDS[:1], "test")
    one = lambda t: jax.tree_util.tree_map(lambda x: x[0], t)  # noqa: E731
    d = Dims.of(one(subs), one(reqs), 40)
    assert (d.n_nodes, d.max_nodes, d.max_links) == (100, 10, 45)
    assert (d.NP, d.MP, d.LP, d.AP) == (128, 16, 64, 64)
    assert d.EP <= 512 and d.KP <= 32


def test_kernel_matches_sequential_on_paper_config():
    _, _, (s_seq, o_seq), (s_ker, o_ker) = paper_runs()
    acc = np.asarray(o_seq.accepted)
    assert 0 < acc.sum() < acc.size  # both outcomes occur
    for f in ("accepted", "hosts", "overflow"):
        np.testing.assert_array_equal(getattr(o_ker, f), getattr(o_seq, f), err_msg=f)
    for f in ("revenue", "cost", "link_revenue", "link_cost"):
        np.testing.assert_array_equal(getattr(o_ker.value, f), getattr(o_seq.value, f),
                                      err_msg=f)
    for f in ("time", "ar", "acr", "rc", "rc_link"):
        np.testing.assert_array_equal(getattr(o_ker.metrics, f), getattr(o_seq.metrics, f),
                                      err_msg=f)
    for f in ("res_cpu", "res_sto", "res_bw"):
        np.testing.assert_array_equal(getattr(s_ker, f), getattr(s_seq, f), err_msg=f)


HANDWORKED = {
    "bfs-min-id-parent": lambda: hw.bfs_scenario(5, 0),
    "storage-rejection": hw.storage_scenario,
    "second-link-fails": hw.second_link_failure_scenario,
    "departure-first": hw.departure_scenario,
}
"""Each scenario compiles its own program (~8 s in interpret mode), so four that cover the
BFS parent rule, both rejection stages and departures before arrivals."""


def test_kernel_matches_reference_on_handworked_substrates():
    """Every hand-worked scenario against the networkx reference: acceptance, hosts, revenue,
    cost, the running metrics and the residuals after the last request."""
    for name, make in HANDWORKED.items():
        doc = make()
        sub = substrate_from_dict(doc)
        req = requests_from_dict(doc, sub.n_domains, max_nodes=5)
        subs, reqs = stack([sub]), stack([req])
        a = table_size(reqs)
        state, out = jax.jit(lambda s, r, a=a: simulate_kernel(NRMVNE, None, None, s, r, a,
                                                               interpret=True))(subs, reqs)
        ref = ref_simulate(doc, "nrmvne")
        mask = np.asarray(req.node_mask)
        for k, theirs in enumerate(ref["trace"]):
            where = f"{name} request {k}"
            assert bool(out.accepted[0, k]) == theirs["accepted"], where
            if theirs["accepted"]:
                assert np.asarray(out.hosts[0, k])[mask[k]].tolist() == theirs["node_map"], where
            assert float(out.value.revenue[0, k]) == theirs["revenue"], where
            assert float(out.value.cost[0, k]) == theirs["cost"], where
        for k, theirs in enumerate(ref["metrics"]):
            for mine, key in ((out.metrics.ar, "AR"), (out.metrics.acr, "ACR"),
                              (out.metrics.rc, "RC"), (out.metrics.rc_link, "RC_link")):
                assert math.isclose(float(mine[0, k]), theirs[key], rel_tol=1e-6,
                                    abs_tol=1e-9), (name, k, key)
        assert np.asarray(state.res_cpu[0]).tolist() == ref["residual"]["cpu"], name
        assert np.asarray(state.res_sto[0]).tolist() == ref["residual"]["sto"], name
        real = np.flatnonzero(np.asarray(sub.edge_mask))
        bw = [ref["residual"]["bw"][(int(sub.edge_u[e]), int(sub.edge_v[e]))] for e in real]
        assert np.asarray(state.res_bw[0])[real].tolist() == bw, name


@pytest.mark.parametrize("algo", ["ddrl-nra", pytest.param("rlvne", marks=pytest.mark.slow)])
def test_kernel_greedy_agents_match_sequential(algo):
    """The learning agents' test mode (argmax of the linear score on the normalised features)
    with each seed's own freshly drawn parameters: identical decisions, values and metrics; the
    log-probability of the choices equal up to float rounding (the kernel sums the score feature
    by feature, XLA by a dot product): |Δ| <= 1e-6 · |logp| + 1e-5 per request."""
    subs, reqs = make_substrates(PAPER, SEEDS), make_requests(PAPER, SEEDS, "test")
    a, keys = table_size(reqs), seed_keys(SEEDS)
    _, greedy, init = policies_for(TrainConfig(algo=algo))
    params = jax.vmap(init)(keys, subs)
    _, o_seq = jax.jit(jax.vmap(lambda p, k, s, r: simulate(greedy, p, k, s, r, a)))(
        params, keys, subs, reqs)
    _, o_ker = jax.jit(lambda p, k, s, r: simulate_kernel(
        greedy, p, k, s, r, a, interpret=True, params_per_seed=True))(params, keys, subs, reqs)
    _assert_same_decisions(o_ker, o_seq)
    np.testing.assert_allclose(o_ker.logp, o_seq.logp, rtol=1e-6, atol=1e-5)
    assert np.abs(np.asarray(o_seq.logp)).max() > 1.0  # the log-probabilities are compared


@pytest.mark.parametrize("policy", ["nrmvne"] + [
    pytest.param(p, marks=pytest.mark.slow)
    for p in ("grc", "random", "ddrl-nra-greedy", "rlvne-greedy")])
def test_kernel_lowers_for_cuda_as_one_triton_call(policy):
    """Lowered for CUDA on this CPU machine (Triton rejects any primitive it cannot lower):
    one Triton kernel call, and one XLA loop outside it (the scan over the outcome rows)."""
    seeds = SEEDS[:2]
    subs, reqs = make_substrates(PAPER, seeds), make_requests(PAPER, seeds, "test")
    if policy in ("nrmvne", "grc", "random"):
        pol, params = {"nrmvne": NRMVNE, "grc": GRC, "random": RANDOM}[policy], None
    else:
        algo = policy.removesuffix("-greedy")
        _, pol, init = policies_for(TrainConfig(algo=algo))
        params = init(seed_keys(seeds[:1])[0], jax.tree_util.tree_map(lambda x: x[0], subs))
    cost = cuda_cost(lambda p, k, s, r: simulate_kernel(pol, p, k, s, r, table_size(reqs)),
                     params, seed_keys(seeds), subs, reqs)
    # GRC's request ranks (one power iteration over all requests, vmapped) run in XLA before
    # the kernel: a second loop
    assert cost == {"pallas_calls": 1, "while_loops": 2 if policy == "grc" else 1}, cost
    print(policy, "lowered cuda module:", cost)


@pytest.mark.parametrize("policy,same_state,same_logp", [
    # GRC: the substrate rank vector iterated in the kernel (same stopping rule, same per-node
    # summation order) ranks like the XLA path
    pytest.param(GRC, True, False, marks=pytest.mark.slow, id="grc"),
    # random: uniforms drawn outside the kernel from the XLA path's keys, so identical draws
    pytest.param(RANDOM, False, True, id="random"),
])
def test_kernel_heuristic_matches_sequential(policy, same_state, same_logp):
    """Identical decisions, values and metrics to the sequential step on the paper config."""
    subs, reqs = make_substrates(PAPER, SEEDS), make_requests(PAPER, SEEDS, "test")
    a, keys = table_size(reqs), seed_keys(SEEDS)
    s_seq, o_seq = simulate_batch(policy, None, keys, subs, reqs, max_active=a,
                                  strategy="sequential")
    s_ker, o_ker = simulate_batch(policy, None, keys, subs, reqs, max_active=a,
                                  strategy="kernel")
    _assert_same_decisions(o_ker, o_seq)
    if same_state:
        for f in ("res_cpu", "res_sto", "res_bw"):
            np.testing.assert_array_equal(getattr(s_ker, f), getattr(s_seq, f), err_msg=f)
    if same_logp:
        np.testing.assert_array_equal(o_ker.logp, o_seq.logp)


def test_kernel_refuses_policies_it_does_not_express():
    subs, reqs = make_substrates(PAPER, SEEDS[:1]), make_requests(PAPER, SEEDS[:1], "test")
    training = policies_for(TrainConfig(algo="ddrl-nra"))[0]  # sampled: not in the kernel
    with pytest.raises(NotImplementedError, match="ddrl-nra"):
        simulate_kernel(training, None, seed_keys(SEEDS[:1]), subs, reqs, 16, interpret=True)
