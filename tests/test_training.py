"""Algorithm 1 as a compiled function: it learns, it vmaps, it compiles once, the central server
averages what it should, and checkpoints round-trip."""
from __future__ import annotations

import functools
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagin_jax.policies.baselines import RANDOM
from sagin_jax.policies.ddrl import init_ddrl_params
from sagin_jax.policies.rlvne import init_rlvne_params
from sagin_jax.scenario.build import build_requests, build_substrate
from sagin_jax.simulation.batch import make_requests, make_substrates, table_size
from sagin_jax.scenario.types import widen
from sagin_jax.simulation.online import simulate
from sagin_jax.training.checkpoint import load_checkpoint, save_checkpoint
from sagin_jax.training.config import TrainConfig
from sagin_jax.training.reinforce import (central_average, make_evaluate, make_train,
                                          segment_average_matrix)
from tests.conftest import small, unstack


def leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def assert_trees_equal(a, b, rtol=0.0, atol=0.0):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(leaves(a), leaves(b)):
        assert x.shape == y.shape and x.dtype == y.dtype
        if rtol == 0.0 and atol == 0.0:
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def ddrl_rows(params):
    conv = params["params"]["conv1x1"]
    lead = conv["bias"].shape[:-1]
    return (np.asarray(conv["kernel"]).reshape(lead + (4,)),
            np.asarray(conv["bias"]).reshape(lead))


@functools.lru_cache(maxsize=None)
def small_set(seeds=(0, 1, 2), n=40, domains=(1, 1, 1)):
    cfg = small(n_train=n, n_test=n, domains_per_segment=domains)
    subs = make_substrates(cfg, seeds)
    train = make_requests(cfg, seeds, "train")
    test = make_requests(cfg, seeds, "test")
    return cfg, subs, train, test, max(table_size(train), table_size(test))


@functools.lru_cache(maxsize=None)
def trainer_for(tc: TrainConfig, n_train: int, max_active: int):
    """(trainer, jit(train)) shared by the tests, so each configuration compiles once."""
    trainer = make_train(tc, n_train, max_active)
    return trainer, jax.jit(trainer.train)


SHARED = TrainConfig(epochs=2, batch_size=20, init_scale=0.5)  # 2 epochs x 2 batches of 20


# ---------------------------------------------------------------------------------------------
# 2. Learning works
# ---------------------------------------------------------------------------------------------
# Why this scenario rewards learning: every request is [node 0 in domain 0 = the hub H (its only
# node), node 1 in domain 1] joined by one link of 10..20 bandwidth. Domain 1 has three "core"
# nodes C joined to each other and to H by fat (1000) links, and six baits that hang off the
# cores by thin (5) links only: three big leaves (300 CPU/STO, more than the cores' 100), two
# thin hubs (low average distance AD, many thin links) and a small leaf. A request is accepted
# iff its domain-1 node lands on a core (a bait cannot carry the link), so a random placement is
# accepted 1/3 of the time, and a random linear scorer ranks a core first for only ~30% of
# weight directions (the baits win on CPU, STO or AD; only the BW feature favours the cores).
# REINFORCE rewards exactly the accepted (core) placements, which pushes the weight along the
# cores' feature direction (high BW); the greedy policy then always picks a core. Lifetimes
# (1..3) against arrivals every 1 time unit keep the network nearly empty, so capacity is never
# the issue. Any lr in 0.01..3 learns the core placement for all of 20 tried seeds; 0.1 is used.
CORES, HUB = [6, 7, 8], 9


def lure_substrate():
    cpu = [300, 300, 300, 100, 100, 15, 100, 100, 100, 100]
    dom = [1] * 9 + [0]
    seg = [2] * 9 + [1]
    fat, thin = 1000, 5
    links = []
    for i, c in enumerate(CORES):
        links += [(c, d, fat) for d in CORES[i + 1:]] + [(c, HUB, fat)]
    links += [(leaf, c, thin) for leaf, c in zip((0, 1, 2), CORES)]  # big leaves
    links += [(h, c, thin) for h in (3, 4) for c in CORES] + [(3, 4, thin)]  # thin hubs
    links += [(leaf, 3, thin) for leaf in (0, 1, 2)] + [(5, 6, thin)]  # small leaf
    u, v, bw = zip(*links)
    return build_substrate(cpu, cpu, seg, dom, u, v, bw)


def lure_requests(seed, n):
    rng = np.random.default_rng(seed)

    def demand():
        return int(rng.integers(1, 11))
    reqs = [{"arrival": float(k), "lifetime": float(rng.integers(1, 4)),
             "nodes": [{"cpu": demand(), "sto": demand(), "domain": 0},
                       {"cpu": demand(), "sto": demand(), "domain": 1}],
             "links": [{"a": 0, "b": 1, "bw": int(rng.integers(10, 21))}]}
            for k in range(n)]
    return build_requests(reqs, 2, 2)


def test_training_beats_the_untrained_greedy_policy():
    sub = lure_substrate()
    train_reqs, test_reqs = lure_requests(0, 40), lure_requests(1, 40)
    cfg = TrainConfig(algo="ddrl-nra", epochs=3, batch_size=10)
    trainer = make_train(cfg, 40, 8)
    keys = jax.vmap(jax.random.key)(jnp.arange(5))
    lr = jnp.float32(0.1)
    init = jax.jit(jax.vmap(lambda k: trainer.init(k, lr, sub).params))(keys)
    trained, curves = jax.jit(jax.vmap(trainer.train, in_axes=(0, None, None, None)))(
        keys, lr, sub, train_reqs)
    evaluate = jax.jit(jax.vmap(make_evaluate(cfg, 8), in_axes=(0, None, None, None)))
    _, before = evaluate(init, jax.random.key(0), sub, test_reqs)
    _, after = evaluate(trained, jax.random.key(0), sub, test_reqs)
    acc0 = np.asarray(before.accepted).mean(axis=1)
    acc1 = np.asarray(after.accepted).mean(axis=1)
    rev0 = np.asarray(before.value.revenue).sum(axis=1)
    rev1 = np.asarray(after.value.revenue).sum(axis=1)

    # the scenario is what the comment says: random placements are mostly rejected
    _, rnd = simulate(RANDOM, None, jax.random.key(0), sub, test_reqs, 8)
    assert 0.1 < float(np.asarray(rnd.accepted).mean()) < 0.6
    # accepted exactly when the domain-1 node is on a core
    hosts1 = np.asarray(after.hosts)[:, :, 1]
    np.testing.assert_array_equal(np.asarray(after.accepted), np.isin(hosts1, CORES))

    improved = (acc1 > acc0) & (rev1 > rev0)
    assert improved.sum() >= 3, (acc0, acc1)  # a majority of the 5 seeds
    assert np.all(acc1 >= acc0) and np.all(rev1 >= rev0), (acc0, acc1)
    assert acc1.mean() >= 0.9, acc1
    # the sampled (training) acceptance rises too: last epoch above the first
    acr = np.asarray(curves.acr)[:, :, -1]  # [seed, epoch] at the end of each epoch
    assert np.mean(acr[:, -1]) > np.mean(acr[:, 0]) + 0.2, acr


# ---------------------------------------------------------------------------------------------
# 3. vmap over seeds / learning rates equals separate runs
# ---------------------------------------------------------------------------------------------
def test_vmapped_training_equals_separate_runs():
    """jit(vmap(vmap(train))) over seeds x learning rates equals each (seed, rate) trained alone."""
    _, subs, train, _, max_active = small_set()
    trainer, single = trainer_for(SHARED, 40, max_active)
    keys = jax.vmap(jax.random.key)(jnp.arange(2))
    lrs = jnp.asarray([0.0, 0.2], jnp.float32)
    subs2, train2 = (jax.tree_util.tree_map(lambda x: x[:2], t) for t in (subs, train))
    over_lrs = jax.vmap(trainer.train, in_axes=(None, 0, None, None))
    grid = jax.jit(jax.vmap(over_lrs, in_axes=(0, None, 0, 0)))  # seeds: key, scenario, requests
    p_all, c_all = grid(keys, lrs, subs2, train2)
    for i in range(2):
        for j in range(2):
            p, c = single(keys[i], lrs[j], unstack(subs2, i), unstack(train2, i))
            assert_trees_equal(unstack(unstack(p_all, i), j), p, rtol=1e-5, atol=1e-6)
            assert_trees_equal(unstack(unstack(c_all, i), j), c, rtol=1e-5, atol=1e-6)
    last = lambda i, j: leaves(unstack(unstack(p_all, i), j))[-1]  # noqa: E731
    assert not np.allclose(last(0, 1), last(1, 1))  # the seeds really differ
    # lr 0 keeps the initial parameters; a positive rate moves them
    p_init = jax.jit(trainer.init)(keys[0], lrs[0], unstack(subs2, 0)).params
    assert_trees_equal(unstack(unstack(p_all, 0), 0), p_init, rtol=1e-7, atol=1e-7)
    assert not np.allclose(last(0, 1), leaves(p_init)[-1])


def test_init_plus_epochs_equals_train():
    """``init`` + repeated ``epoch`` (the progress-bar path) gives the numbers of ``train``."""
    _, subs, train, _, max_active = small_set()
    sub, reqs = unstack(subs, 1), unstack(train, 1)
    tc = SHARED
    trainer, train_fn = trainer_for(tc, 40, max_active)
    key, lr = jax.random.key(4), jnp.float32(0.05)
    params, curves = train_fn(key, lr, sub, reqs)
    carry = jax.jit(trainer.init)(key, lr, sub)
    epoch = jax.jit(trainer.epoch)
    acr = []
    for _ in range(tc.epochs):
        carry, c = epoch(carry, sub, reqs)
        acr.append(np.asarray(c.acr))
    assert int(carry.epoch) == tc.epochs and int(carry.updates_done) == tc.epochs * 2
    assert_trees_equal(carry.params, params, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.stack(acr), np.asarray(curves.acr), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# 5. One trace per jitted function
# ---------------------------------------------------------------------------------------------
def test_train_and_evaluate_trace_once():
    _, subs, train, test, max_active = small_set()
    sub, reqs = unstack(subs, 0), unstack(train, 0)
    tc = TrainConfig(epochs=1, batch_size=20)
    trainer = make_train(tc, 40, max_active)
    chex.clear_trace_counter()
    train_fn = jax.jit(chex.assert_max_traces(trainer.train, n=1))
    p1, _ = train_fn(jax.random.key(0), jnp.float32(0.01), sub, reqs)
    p2, _ = train_fn(jax.random.key(1), jnp.float32(0.3), sub, reqs)  # other key, other rate
    p3, _ = train_fn(jax.random.key(2), jnp.asarray(0.2, dtype=jnp.float32), sub, reqs)
    train_fn(jax.random.key(3), np.float32(0.1), sub, reqs)  # numpy f32: same signature
    # another scenario of the same shapes (edge lists padded alike)
    train_fn(jax.random.key(4), jnp.float32(0.1), unstack(subs, 1), unstack(train, 1))
    assert not np.allclose(leaves(p1)[-1], leaves(p2)[-1])

    evaluate = jax.jit(chex.assert_max_traces(make_evaluate(tc, max_active), n=1))
    for p in (p1, p2, p3):
        evaluate(p, jax.random.key(0), unstack(subs, 2), unstack(test, 2))

    # the guard is live: a weakly typed Python float is a different signature and retraces
    with pytest.raises(AssertionError, match="traced > 1"):
        train_fn(jax.random.key(0), 0.01, sub, reqs)


# ---------------------------------------------------------------------------------------------
# 6. Central server (section IV-C)
# ---------------------------------------------------------------------------------------------
def test_segment_average_matrix_and_central_average():
    _, subs, *_ = small_set(domains=(1, 1, 2))
    sub = unstack(subs, 0)
    avg = np.asarray(segment_average_matrix(sub))
    np.testing.assert_array_equal(avg, [[1, 0, 0, 0], [0, 1, 0, 0],
                                        [0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5]])
    params = init_ddrl_params(jax.random.key(0), sub.n_domains, init_scale=1.0)
    params = jax.tree_util.tree_map(  # non-zero biases too
        lambda x: x + jax.random.normal(jax.random.key(1), x.shape), params)
    out = central_average(params, jnp.asarray(avg))
    w, b = ddrl_rows(params)
    w2, b2 = ddrl_rows(out)
    np.testing.assert_array_equal(w2[:2], w[:2])  # alone in their segments: bit-identical
    np.testing.assert_array_equal(b2[:2], b[:2])
    np.testing.assert_allclose(w2[2], (w[2] + w[3]) / 2, rtol=1e-6)
    np.testing.assert_array_equal(w2[2], w2[3])
    np.testing.assert_array_equal(b2[2], b2[3])


def test_central_server_syncs_ground_agents():
    _, subs, train, _, max_active = small_set(domains=(1, 1, 2))
    sub, reqs = unstack(subs, 0), unstack(train, 0)
    key, lr = jax.random.key(0), jnp.float32(0.1)

    def run(every):  # 2 epochs x 2 batches = 4 updates
        tc = TrainConfig(epochs=2, batch_size=20, init_scale=0.5, central_server_every=every)
        trainer, train_fn = trainer_for(tc, 40, max_active)
        init = jax.jit(trainer.init)(key, lr, sub).params
        return ddrl_rows(init), ddrl_rows(train_fn(key, lr, sub, reqs)[0])

    (w0, _), (w, b) = run(1)
    assert sub.n_domains == 4
    np.testing.assert_array_equal(w[2], w[3])  # the two ground agents share one model
    np.testing.assert_array_equal(b[2], b[3])
    for d in (0, 1):  # space and air are alone in their segments: trained, not averaged away
        assert np.abs(w[d] - w0[d]).sum() > 1e-4
    assert not np.allclose(w[0], w[1]) and not np.allclose(w[0], w[2])

    _, (w, _) = run(0)  # no central server: each ground agent learns on its own
    assert np.abs(w[2] - w[3]).sum() > 1e-4

    # every K updates, not every update: K = 3 with 2 updates per epoch syncs after updates 3
    # and 6, so the ground agents differ after epochs 1 and 2 and agree after epoch 3
    tc = TrainConfig(epochs=3, batch_size=20, init_scale=0.5, central_server_every=3)
    trainer = make_train(tc, 40, max_active)
    carry = jax.jit(trainer.init)(key, lr, sub)
    epoch = jax.jit(trainer.epoch)
    for e, synced in ((1, False), (2, False), (3, True)):
        carry, _ = epoch(carry, sub, reqs)
        assert int(carry.updates_done) == 2 * e
        w, b = ddrl_rows(carry.params)
        assert np.array_equal(w[2], w[3]) == synced, e
        if synced:
            np.testing.assert_array_equal(b[2], b[3])


# ---------------------------------------------------------------------------------------------
# 7. Checkpoints
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["ddrl-nra", "rlvne"])
def test_checkpoint_round_trip(algo, tmp_path):
    scen = small(domains_per_segment=(1, 2, 2))
    tc = TrainConfig(algo=algo, epochs=3, batch_size=20, central_server_every=3,
                     failed_reward=-0.25, batch_reduce="mean", init_scale=0.3, reward="rc")
    key = jax.random.key(7)
    params = (init_ddrl_params(key, scen.n_domains, 0.3) if algo == "ddrl-nra"
              else init_rlvne_params(key, 0.3))
    path = save_checkpoint(tmp_path / "deep" / "agent.msgpack", params, scen, tc, seed=7,
                           lr=0.05, extra={"note": "test"})
    assert sorted(os.listdir(path.parent)) == ["agent.msgpack"]  # no temporary file left
    loaded, scen2, tc2, meta = load_checkpoint(path)
    assert_trees_equal(loaded, params)  # same structure, shapes, dtypes and bits
    assert scen2 == scen and tc2 == tc
    assert meta["seed"] == 7 and meta["lr"] == pytest.approx(0.05) and meta["note"] == "test"

    blob = path.read_bytes()
    bad = {
        "garbage.msgpack": b"\x00\x01 not a checkpoint \xff" * 10,
        "truncated.msgpack": blob[: len(blob) // 2],
        "empty.msgpack": b"",
        "json.msgpack": json.dumps({"meta": "{}"}).encode(),
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError):
            load_checkpoint(tmp_path / name)
    with pytest.raises(ValueError):
        load_checkpoint(tmp_path / "missing.msgpack")
    # a well-formed file of another format is refused too
    other = save_checkpoint(tmp_path / "other.msgpack", params, scen, tc, 0, 0.1,
                            extra={"format": "something-else"})
    with pytest.raises(ValueError, match="format"):
        load_checkpoint(other)


def test_wide_training_epoch_keeps_no_copy_of_the_requests():
    """A training epoch vmapped over seeds (the accelerator layout) holds each seed's requests
    once, as an argument: its temporaries (XLA's buffer assignment, compiled from shapes alone)
    stay under half the requests' bytes. Scanning over a [batches, batch, ...] reshape of the
    requests made XLA keep a transposed copy of all of them (temporaries > the requests)."""
    from sagin_jax.experiments.bench import train_memory
    cfg = small(n_train=400)
    m = train_memory(cfg, TrainConfig(epochs=1, batch_size=20), 64)
    requests = 64 * m["requests_per_seed"]
    assert m["arguments"] >= requests
    assert m["temporaries"] < 0.5 * requests, (m["temporaries"], requests)


def test_compact_storage_trains_and_simulates_the_same_bits():
    """Requests and substrate tables stored narrow (``compact_requests``, ``compact_substrate``:
    what the training drivers hand the program) give bit for bit the training and the test pass
    of the full-width storage; values that do not fit a narrow type keep theirs."""
    from sagin_jax.policies.baselines import NRMVNE
    from sagin_jax.scenario.types import compact_requests, compact_substrate
    cfg = small(n_train=60, n_test=60)
    sub = unstack(make_substrates(cfg, (4,)), 0)
    reqs = widen(unstack(make_requests(cfg, (4,), "train"), 0))  # the computing dtypes
    c_sub, c_reqs = compact_substrate(sub), compact_requests(reqs)
    assert c_reqs.cpu.dtype == np.uint8 and c_reqs.link_a.dtype == np.int8
    assert c_sub.hops.dtype == np.int16 and c_sub.edge_id.dtype == np.int16
    assert sum(x.nbytes for x in leaves(c_reqs)) * 2.5 < sum(x.nbytes for x in leaves(reqs))
    table = table_size(reqs)
    train = jax.jit(make_train(TrainConfig(epochs=2, batch_size=20), 60, table).train)
    key = jax.random.key(7)
    assert_trees_equal(train(key, jnp.float32(0.05), sub, reqs),
                       train(key, jnp.float32(0.05), c_sub, c_reqs))
    sim = jax.jit(lambda s, r: simulate(NRMVNE, None, jax.random.key(0), s, r, table))
    assert_trees_equal(sim(sub, reqs), sim(c_sub, c_reqs))
    # a fractional demand, a demand above 2**16, an index above 127: kept exact
    odd = reqs.replace(link_bw=reqs.link_bw.at[0, 0].set(2.5),
                       cpu=reqs.cpu.at[0, 0].set(70000.0), domain=reqs.domain.at[0, 0].set(200))
    c_odd = compact_requests(odd)
    assert c_odd.link_bw.dtype == np.float32 and c_odd.cpu.dtype == np.float32
    assert c_odd.sto.dtype == np.uint8 and c_odd.domain.dtype == np.int16
    assert_trees_equal(jax.tree_util.tree_map(np.asarray, odd),
                       jax.tree_util.tree_map(np.asarray, widen(c_odd)))
