"""The "batched" request-step strategy (few loop trips, for accelerators) on the CPU: against the
networkx reference like tests/test_equivalence.py, and equal to the "sequential" strategy in
every output, gradients of the training policy included."""
from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from sagin_jax.audit_trail import metrics_rows, trace_records
from sagin_jax.policies.base import with_gradients
from sagin_jax.policies.baselines import NRMVNE
from sagin_jax.policies.ddrl import init_ddrl_params, make_ddrl_policy
from sagin_jax.reference import simulate as ref_simulate
from sagin_jax.scenario.io import scenario_document
from sagin_jax.simulation.batch import make_requests, make_substrates, table_size
from sagin_jax.simulation.online import (request_step_strategy, run_online, simulate,
                                         trips_per_request)
from sagin_jax.simulation.state import init_state, release_expired_batched
from tests.conftest import unstack
from tests.test_equivalence import FAMILIES, _compare

SEEDS = (0, 1, 2)


@functools.lru_cache(maxsize=None)
def run(family: str, policy, strategy: str):
    cfg = FAMILIES[family]
    subs, reqs = make_substrates(cfg, SEEDS), make_requests(cfg, SEEDS, "test")
    keys = jax.vmap(jax.random.key)(np.asarray(SEEDS, np.uint32))
    fn = jax.jit(jax.vmap(lambda k, s, r: simulate(policy, None, k, s, r, table_size(reqs),
                                                   record_paths=True, strategy=strategy)))
    state, out = fn(keys, subs, reqs)
    return subs, reqs, state, out


def test_strategy_choice():
    assert request_step_strategy() == "sequential"  # the tests run on the CPU
    assert request_step_strategy("batched") == "batched"
    with pytest.raises(ValueError, match="SAGIN_JAX_REQUEST_STEP"):
        request_step_strategy("fast")


# saturated: many link-stage rejections and candidates spoilt within a request; light: many
# departures released at once (each compile costs ~10 s, so two families, not all four)
@pytest.mark.parametrize("family", ["saturated"])  # rejections and acceptances both
def test_batched_matches_reference(family):
    subs, reqs, state, out = run(family, NRMVNE, "batched")
    for i, seed in enumerate(SEEDS):
        sub_i, req_i, out_i = unstack(subs, i), unstack(reqs, i), unstack(out, i)
        doc = scenario_document(sub_i, req_i)
        ref = ref_simulate(doc, "nrmvne")
        _compare(doc, trace_records(req_i, out_i), metrics_rows(out_i), ref,
                 f"{family}/batched/seed {seed}")
        real = np.flatnonzero(np.asarray(sub_i.edge_mask))
        ref_bw = [ref["residual"]["bw"][(int(sub_i.edge_u[e]), int(sub_i.edge_v[e]))] for e in real]
        np.testing.assert_array_equal(np.asarray(state.res_bw[i])[real], ref_bw)
        np.testing.assert_array_equal(np.asarray(state.res_cpu[i]), ref["residual"]["cpu"])
    # the masked-reduction release of everything restores every capacity exactly
    for i in range(len(SEEDS)):
        drained = release_expired_batched(unstack(state, i), np.float32(np.inf))
        sub_i = unstack(subs, i)
        np.testing.assert_array_equal(np.asarray(drained.res_cpu), np.asarray(sub_i.cpu))
        np.testing.assert_array_equal(np.asarray(drained.res_sto), np.asarray(sub_i.sto))
        np.testing.assert_array_equal(np.asarray(drained.res_bw),
                                      np.where(sub_i.edge_mask, sub_i.edge_bw, 0.0))


def test_batched_equals_sequential():
    _, _, state, out = run("saturated", NRMVNE, "batched")
    _, _, state_seq, out_seq = run("saturated", NRMVNE, "sequential")
    # every output but the trip count and the paths of rejected requests is bit-identical
    acc = np.asarray(out.accepted)
    for name in ("accepted", "hosts", "value", "metrics", "extra", "overflow"):
        for a, b in zip(jax.tree_util.tree_leaves(getattr(out, name)),
                        jax.tree_util.tree_leaves(getattr(out_seq, name))):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)
    np.testing.assert_array_equal(np.asarray(out.paths)[acc], np.asarray(out_seq.paths)[acc])
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(state_seq)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # fewer sequential trips than the sequential strategy, whose trips grow with the links
    assert trips_per_request(out)[0] < trips_per_request(out_seq)[0]


def test_link_windows_smaller_than_the_requests_give_the_same_result(monkeypatch):
    """A round looks at ``LINK_WINDOW`` links; with a window of 2 most requests take several
    windows, and every output still equals the sequential rule's."""
    import sagin_jax.embedding.batched as batched
    monkeypatch.setattr(batched, "LINK_WINDOW", 2)
    subs, reqs, state, out = run.__wrapped__("saturated", NRMVNE, "batched")
    _, _, state_seq, out_seq = run("saturated", NRMVNE, "sequential")
    # the test means something only if accepted requests spanned several windows (an accepted
    # request with more than 2 links took at least 2 rounds)
    live = np.asarray(reqs.link_mask.sum(-1))
    acc = np.asarray(out_seq.accepted)
    assert (acc & (live > 2)).sum() >= 5
    for a, b in zip(jax.tree_util.tree_leaves((out.accepted, out.hosts, out.value, out.metrics,
                                               state)),
                    jax.tree_util.tree_leaves((out_seq.accepted, out_seq.hosts, out_seq.value,
                                               out_seq.metrics, state_seq))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(out.paths)[acc], np.asarray(out_seq.paths)[acc])


def test_batched_training_policy_gives_the_same_log_probs_and_gradients():
    cfg = FAMILIES["ordinary"]
    sub = unstack(make_substrates(cfg, (4,)), 0)
    reqs = unstack(make_requests(cfg, (4,), "train"), 0)
    params = init_ddrl_params(jax.random.key(1), sub.n_domains, 0.5)
    policy = with_gradients(make_ddrl_policy(False, 0.5))
    outs = {}
    for strategy in ("sequential", "batched"):
        state = init_state(sub, table_size(reqs), reqs.max_nodes)
        outs[strategy] = jax.jit(lambda p, k: run_online(policy, p, k, sub, reqs, state,
                                                         strategy=strategy))(
            params, jax.random.key(2))[1]
    seq, bat = outs["sequential"], outs["batched"]
    assert 0 < int(seq.accepted.sum()) < reqs.n_requests
    for a, b in zip(jax.tree_util.tree_leaves((seq.hosts, seq.extra, seq.metrics)),
                    jax.tree_util.tree_leaves((bat.hosts, bat.extra, bat.metrics))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
