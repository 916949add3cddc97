"""Requests stored narrow where they are generated (``plan.request_storage_dtypes``): the dtype
chosen from the config's bounds, one compiled program for every config under the same thresholds,
the numbers the generator gave when it stored them in ``REQUEST_DTYPES``, and every consumer
giving the same results on the narrow storage as on ``widen`` of it."""
from __future__ import annotations

import hashlib

import jax
import numpy as np
import pytest

from sagin_jax.compilation import CompileCounter
from sagin_jax.config import PAPER
from sagin_jax.policies.baselines import NRMVNE
from sagin_jax.policies.ddrl import init_ddrl_params, make_ddrl_policy
from sagin_jax.scenario import generate as G
from sagin_jax.scenario.draw_requests import draw_requests
from sagin_jax.scenario.plan import make_plan, plan_params, request_storage_dtypes
from sagin_jax.scenario.types import REQUEST_DTYPES, widen
from sagin_jax.simulation.batch import seed_keys, simulate_batch, table_size
from tests.conftest import small

FIELDS = tuple(REQUEST_DTYPES)
NARROW = {"cpu": "uint8", "sto": "uint8", "link_bw": "uint8", "domain": "int8",
          "link_a": "int8", "link_b": "int8", "arrival": "float32", "lifetime": "float32",
          "node_mask": "bool", "link_mask": "bool"}


def _names(cfg) -> dict:
    return {k: t.name for k, t in request_storage_dtypes(cfg).items()}


def test_default_config_stores_uint8_demands_and_int8_indices():
    assert _names(PAPER) == NARROW
    assert _names(small()) == NARROW
    # 4 + 4 bytes of times, 10 node-mask bytes, 3 x 10 node bytes, 4 x 45 link bytes
    reqs = G.make_requests(small(n_test=7), [0, 1], "test")
    assert {k: getattr(reqs, k).dtype.name for k in FIELDS} == NARROW
    assert sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(reqs)) == 2 * 7 * 228


@pytest.mark.parametrize("change, want", [
    (dict(req_cpu=(1, 255)), {}),  # the upper bound decides, not the span
    (dict(req_cpu=(250, 256)), {"cpu": "uint16"}),
    (dict(req_cpu=(1, 300)), {"cpu": "uint16"}),
    (dict(req_sto=(1, 65535)), {"sto": "uint16"}),
    (dict(req_sto=(1, 65536)), {"sto": "float32"}),
    (dict(req_bw=(1, 10 ** 9)), {"link_bw": "float32"}),
    (dict(n_ground=200, domains_per_segment=(1, 1, 126)), {}),  # domain ids 0..127
    (dict(n_ground=200, domains_per_segment=(1, 1, 127)), {"domain": "int16"}),  # 0..128
    (dict(max_req_nodes=128), {}),  # link ends 0..127
    (dict(max_req_nodes=129), {"link_a": "int16", "link_b": "int16"}),
])
def test_dtype_follows_each_fields_bound(change, want):
    assert _names(small(**change)) == {**NARROW, **want}


def test_configs_under_the_same_thresholds_share_one_program():
    """Ranges below 256 share the uint8 program; an upper bound of 256 makes a uint16 one (a
    span of 7 draws the same digits per word, so only the storage dtype differs)."""
    base = small(n_test=11)
    G.make_requests(base, [0, 1], "test")
    with CompileCounter() as cc:
        other = G.make_requests(base.replace(req_cpu=(5, 200), req_sto=(1, 255),
                                             req_bw=(3, 9)), [2, 3], "test")
    assert cc.stats.compiled + cc.stats.cache_hits == 0
    assert other.cpu.dtype == np.uint8 and int(np.asarray(other.sto).max()) > 200
    with CompileCounter() as cc:
        wide = G.make_requests(base.replace(req_cpu=(250, 256)), [2, 3], "test")
    assert cc.stats.compiled + cc.stats.cache_hits == 1
    cpu = np.asarray(wide.cpu)[np.asarray(wide.node_mask)]
    assert wide.cpu.dtype == np.uint16 and cpu.min() == 250 and cpu.max() == 256


# sha256 of the widened arrays (``FIELDS`` in order) of seeds 0..7: the values the generator
# gave when it stored requests in REQUEST_DTYPES (float32 demands, int32 indices)
WIDE_DIGESTS = [
    (small(domains_per_segment=(1, 2, 2), n_train=30, n_test=40), {
        "train": "9f676d906038dfd2a5bf01c331fb259e605d9e4786a4d8fe5fa1adbfbc617477",
        "test": "86aac19cadb82cc16e63ee4a851728e0819112ea25246b96d68d866ab14038f9"}),
    (small(req_cpu=(1, 300), req_sto=(2, 70000), req_bw=(250, 255), n_train=30, n_test=40), {
        "train": "d38396790de51531f53f5275c96aca13f9867ef010d5fdf8b9d35ef063d2c28b",
        "test": "7f706af090d498976b0d50f0ebe66866ebb712198c8a7a11ebd03fad4771df73"}),
]


def _digest(reqs) -> str:
    h = hashlib.sha256()
    for k in FIELDS:
        x = np.asarray(getattr(reqs, k))
        assert x.dtype == np.dtype(REQUEST_DTYPES[k]), k
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("case", range(len(WIDE_DIGESTS)))
def test_widened_requests_are_the_wide_generators_numbers(case):
    """uint8 (first config) and uint16, float32 and uint8 demands (second) widen to the very
    arrays the wide storage gave, and to the same program run with ``REQUEST_DTYPES`` storage."""
    cfg, digests = WIDE_DIGESTS[case]
    for split, want in digests.items():
        assert _digest(widen(G.make_requests(cfg, range(8), split))) == want
    plan, prm = make_plan(cfg), plan_params(cfg)
    wide_plan = plan._replace(req_storage=tuple((k, np.dtype(t).name)
                                                for k, t in REQUEST_DTYPES.items()))
    key = G.seed_key(5)
    narrow = jax.jit(lambda k: draw_requests(k, plan, prm, 40))(key)
    wide = jax.jit(lambda k: draw_requests(k, wide_plan, prm, 40))(key)
    for k in FIELDS:
        np.testing.assert_array_equal(np.asarray(getattr(widen(narrow), k)),
                                      np.asarray(getattr(wide, k)), err_msg=k)


# demands near uint8's top: a request's CPU + storage (up to 500) overflows uint8, so a consumer
# that computed in the storage dtype would differ; capacities large enough to accept some
HEAVY = small(req_cpu=(100, 250), req_sto=(100, 250), req_bw=(100, 250),
              cpu_range=((400, 900),) * 3, sto_range=((400, 900),) * 3,
              bw_range=((400, 900),) * 3, inter_bw_range=(400, 900), n_test=50)
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def heavy():
    scen = G.make_scenarios(HEAVY, SEEDS)
    assert scen.test.cpu.dtype == np.uint8
    return scen.sub, scen.test


def _assert_outcomes_equal(a, b) -> None:
    (sa, oa), (sb, ob) = a, b
    acc = np.asarray(oa.accepted)
    assert 0 < acc.sum() < acc.size
    la, ta = jax.tree_util.tree_flatten((sa, oa))
    lb, tb = jax.tree_util.tree_flatten((sb, ob))
    assert ta == tb
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


POLICIES = {"nrmvne": (NRMVNE, False), "ddrl-greedy": (make_ddrl_policy(greedy=True), True),
            "ddrl-sampled": (make_ddrl_policy(greedy=False), True)}


@pytest.mark.parametrize("name, strategy", [
    ("nrmvne", "sequential"), ("ddrl-greedy", "sequential"), ("ddrl-sampled", "sequential"),
    ("nrmvne", "batched")])  # both steps read the request run_online widened
def test_narrow_requests_simulate_as_their_widened_copy(heavy, name, strategy):
    """Accepted requests, hosts, revenue, cost, metrics and final states, bit for bit (a
    DDRL-NRA agent with non-trivial parameters, greedy and sampling)."""
    sub, reqs = heavy
    policy, learns = POLICIES[name]
    params = init_ddrl_params(jax.random.key(3), HEAVY.n_domains, 1.0) if learns else None
    table, keys = table_size(reqs), seed_keys(SEEDS)
    narrow = simulate_batch(policy, params, keys, sub, reqs, table, strategy=strategy)
    wide = simulate_batch(policy, params, keys, sub, widen(reqs), table, strategy=strategy)
    _assert_outcomes_equal(narrow, wide)


def test_narrow_requests_give_the_kernel_the_same_numbers(heavy):
    """The "kernel" strategy (Pallas interpret mode on a CPU) with NRMVNE, whose node order is
    computed from the request's demands before the kernel runs."""
    from sagin_jax.kernels.simulate import simulate_kernel
    sub, reqs = jax.tree_util.tree_map(lambda x: x[:1], heavy)
    table, keys = table_size(reqs), seed_keys(SEEDS[:1])
    run = jax.jit(lambda r: simulate_kernel(NRMVNE, None, keys, sub, r, table, interpret=True))
    _assert_outcomes_equal(run(reqs), run(widen(reqs)))
