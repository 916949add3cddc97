"""The learning agents (DDRL-NRA and RLVNE) against hand-derived formulas.

* The per-request log-probability gradients of both policies, the per-request rewards and the
  REINFORCE ascent direction are compared with closed forms computed in plain numpy on a tiny
  hand-built substrate (features rebuilt from the rules, not read back from the code).
* The stacked domain axis of DDRL-NRA equals running each domain's agent on its own, and a
  request node only ever moves its own domain's agent.
* A briefly trained agent's greedy test pass passes the independent constraint checker and is
  replayed exactly by the networkx reference.
"""
from __future__ import annotations

import collections
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagin_jax.audit_trail import trace_records, write_audit
from sagin_jax.policies.ddrl import (NodeScorer, domain_feature_matrices, init_ddrl_params,
                                     make_ddrl_policy)
from sagin_jax.policies.rlvne import make_rlvne_policy
from sagin_jax.policies.base import (NodeContext, inverse_cdf, masked_log_softmax, sample_masked,
                                     with_gradients)
from sagin_jax.reference import check_audit, load_audit_dir
from sagin_jax.reference import simulate as ref_simulate
from sagin_jax.scenario.build import build_requests, build_substrate
from sagin_jax.scenario.io import scenario_document
from sagin_jax.simulation.batch import make_requests, make_substrates, table_size
from sagin_jax.simulation.online import map_nodes, run_online
from sagin_jax.simulation.state import init_state
from sagin_jax.training.config import TrainConfig
from sagin_jax.training.reinforce import (make_evaluate, make_train, reinforce_gradient,
                                          request_rewards)
from tests.conftest import small, unstack

# ---------------------------------------------------------------------------------------------
# A tiny hand-built substrate: domain 0 = nodes 0..3 (air), domain 1 = nodes 4, 5 (ground).
# Node 3 is too small for the request nodes below, so it is never feasible; domain 1 is padded
# (2 real members out of 4 slots) in the stacked feature matrices.
# ---------------------------------------------------------------------------------------------
CPU = [10.0, 20.0, 40.0, 2.0, 30.0, 15.0]
STO = [30.0, 10.0, 20.0, 2.0, 25.0, 50.0]
SEG = [1, 1, 1, 1, 2, 2]
DOM = [0, 0, 0, 0, 1, 1]
LINKS = [(0, 1, 5.0), (0, 2, 3.0), (1, 2, 7.0), (2, 3, 4.0), (2, 4, 6.0), (3, 5, 2.0),
         (4, 5, 8.0)]  # already in canonical (min id, max id) order
N = len(CPU)

# A request: two nodes in domain 0 (the second needs more storage), one in domain 1.
REQ = {"arrival": 1.0, "lifetime": 5.0,
       "nodes": [{"cpu": 5, "sto": 5, "domain": 0}, {"cpu": 5, "sto": 8, "domain": 0},
                 {"cpu": 3, "sto": 3, "domain": 1}],
       "links": [{"a": 0, "b": 1, "bw": 1}, {"a": 1, "b": 2, "bw": 1}]}

# The working state the request arrives to: partly used, so the features are residual ones.
RES_CPU = np.array([8.0, 20.0, 30.0, 2.0, 25.0, 15.0])
RES_STO = np.array([30.0, 9.0, 20.0, 2.0, 25.0, 41.0])
RES_BW = np.array([5.0, 1.0, 7.0, 4.0, 2.0, 2.0, 8.0])  # per LINKS entry


def tiny_substrate():
    u, v, bw = zip(*LINKS)
    return build_substrate(CPU, STO, SEG, DOM, u, v, bw)


def tiny_state(sub, max_nodes):
    state = init_state(sub, 4, max_nodes)
    return state.replace(res_cpu=jnp.asarray(RES_CPU, jnp.float32),
                         res_sto=jnp.asarray(RES_STO, jnp.float32),
                         res_bw=jnp.asarray(RES_BW, jnp.float32))


def np_hops():
    adj = collections.defaultdict(list)
    for u, v, _ in LINKS:
        adj[u].append(v)
        adj[v].append(u)
    hops = np.zeros((N, N))
    for s in range(N):
        dist = {s: 0}
        queue = collections.deque([s])
        while queue:
            x = queue.popleft()
            for y in adj[x]:
                if y not in dist:
                    dist[y] = dist[x] + 1
                    queue.append(y)
        hops[s] = [dist[t] for t in range(N)]
    return hops


def np_incident_bw(res_bw):
    out = np.zeros(N)
    for (u, v, _), b in zip(LINKS, res_bw):
        out[u] += b
        out[v] += b
    return out


def np_softmax(z, mask):
    z = np.where(mask, z, -np.inf)
    e = np.exp(z - z[mask].max())
    return e / e.sum()


def set_ddrl_params(params, w, b):
    """Stacked DDRL params with kernel rows ``w`` [U, 4] and biases ``b`` [U]."""
    conv = params["params"]["conv1x1"]
    kernel = jnp.asarray(w, jnp.float32).reshape(conv["kernel"].shape)
    bias = jnp.asarray(b, jnp.float32).reshape(conv["bias"].shape)
    return {"params": {"conv1x1": {"kernel": kernel, "bias": bias}}}


def ddrl_rows(params):
    """(w [U, 4], b [U]) of stacked DDRL params (or of their gradients)."""
    conv = params["params"]["conv1x1"]
    u = conv["bias"].shape[0]
    return np.asarray(conv["kernel"]).reshape(u, 4), np.asarray(conv["bias"]).reshape(u)


def ddrl_closed_form(req, hosts, w, b):
    """Eqs. 17-20 by hand: per step the domain's features [CPU, STO, BW, AD], each column divided
    by its max over the domain, logits z = v·w_d + b_d, softmax over the feasible nodes, and
    ∂ log p(a)/∂w_d = v_a − Σ_k p_k v_k, ∂/∂b_d = 1 − Σ_k p_k = 0. -> (Σ logp, grad w, grad b)."""
    hops = np_hops()
    inc_bw = np_incident_bw(RES_BW)  # the node stage sees the bandwidth at arrival
    cpu, sto = RES_CPU.copy(), RES_STO.copy()
    used = set()
    gw, gb, logp = np.zeros_like(w), np.zeros_like(b), 0.0
    for i, (node, a) in enumerate(zip(req["nodes"], hosts)):
        d = node["domain"]
        members = [n for n in range(N) if DOM[n] == d]
        ad = np.array([hops[n, members].sum() / len(members) for n in members])  # eq. 16
        fm = np.stack([cpu[members], sto[members], inc_bw[members], ad], axis=1)
        fm = fm / np.where(fm.max(axis=0) > 0, fm.max(axis=0), 1.0)
        feas = np.array([cpu[n] >= node["cpu"] and sto[n] >= node["sto"] and n not in used
                         for n in members])
        assert a in members and feas[members.index(a)], (i, a, "chosen host is not feasible")
        p = np_softmax(fm @ w[d] + b[d], feas)
        k = members.index(a)
        gw[d] += fm[k] - p @ fm
        gb[d] += 1.0 - p.sum()
        logp += math.log(p[k])
        cpu[a] -= node["cpu"]
        sto[a] -= node["sto"]
        used.add(a)
    return logp, gw, gb


def rlvne_closed_form(req, hosts, w, b):
    """RLVNE by hand: features [res CPU, degree, Σ residual incident BW, Σ hops to the request's
    used nodes / (count + 1)], min-max normalised over all substrate nodes; logits
    relu(x·w + b), softmax over the feasible nodes. With s_k = 1[x_k·w + b > 0]:
    ∂ log p(a)/∂w = Σ_k (δ_ka − p_k) s_k x_k and ∂/∂b = Σ_k (δ_ka − p_k) s_k.
    -> (Σ logp, grad w, grad b, set of ReLU branches seen on feasible nodes)."""
    hops = np_hops()
    deg = np.zeros(N)
    for u, v, _ in LINKS:
        deg[u] += 1
        deg[v] += 1
    inc_bw = np_incident_bw(RES_BW)
    cpu, sto = RES_CPU.copy(), RES_STO.copy()
    used = []
    gw, gb, logp = np.zeros(4), 0.0, 0.0
    branches = set()
    for node, a in zip(req["nodes"], hosts):
        dst = hops[:, used].sum(axis=1) / (len(used) + 1)
        x = np.stack([cpu, deg, inc_bw, dst], axis=1)
        lo, hi = x.min(axis=0), x.max(axis=0)
        x = (x - lo) / np.where(hi > lo, hi - lo, 1.0)
        feas = np.array([DOM[n] == node["domain"] and cpu[n] >= node["cpu"]
                         and sto[n] >= node["sto"] and n not in used for n in range(N)])
        assert feas[a], (a, "chosen host is not feasible")
        pre = x @ w + b
        assert np.all(np.abs(pre) > 1e-4), "keep away from the ReLU kink"
        active = (pre > 0).astype(float)
        branches |= set(active[feas].tolist())
        p = np_softmax(np.maximum(pre, 0.0), feas)
        coef = (np.arange(N) == a) - p
        gw += (coef * active) @ x
        gb += (coef * active).sum()
        logp += math.log(p[a])
        cpu[a] -= node["cpu"]
        sto[a] -= node["sto"]
        used.append(a)
    return logp, gw, gb, branches


W_DDRL = np.array([[0.7, -0.3, 0.5, -0.9], [-0.4, 0.8, 0.2, 0.3]], np.float32)
B_DDRL = np.array([0.25, -0.1], np.float32)
W_RLVNE = np.array([0.9, -0.6, 0.7, -0.8], np.float32)
B_RLVNE = np.float32(0.05)
KEYS = range(12)


def test_ddrl_log_prob_gradient_matches_closed_form():
    sub = tiny_substrate()
    req = build_requests([REQ], 2, 3).at(0)
    state = tiny_state(sub, 3)
    params = set_ddrl_params(init_ddrl_params(jax.random.key(0), 2), W_DDRL, B_DDRL)
    run = jax.jit(lambda k: map_nodes(with_gradients(make_ddrl_policy(False)), params, k, sub,
                                      state, req))
    seen = set()
    for s in KEYS:
        stage = run(jax.random.key(s))
        assert bool(stage.ok)
        hosts = [int(h) for h in stage.hosts]
        seen.add(tuple(hosts))
        logp, gw, gb = ddrl_closed_form(REQ, hosts, W_DDRL.astype(float), B_DDRL.astype(float))
        got_w, got_b = ddrl_rows(stage.extra["grad"])
        np.testing.assert_allclose(got_w, gw, rtol=1e-5, atol=1e-6, err_msg=str(hosts))
        np.testing.assert_allclose(got_b, gb, atol=1e-6)  # shared bias: 1 − Σ p = 0
        assert float(stage.logp) == pytest.approx(logp, rel=1e-5, abs=1e-6)
    assert len(seen) >= 3, "the keys should explore several placements"

    # greedy (Algorithm 2): the argmax of the same logits, no sampling
    stage = map_nodes(make_ddrl_policy(True), params, jax.random.key(0), sub, state, req)
    hosts = [int(h) for h in stage.hosts]
    cpu, sto, used, expect = RES_CPU.copy(), RES_STO.copy(), set(), []
    hops, inc = np_hops(), np_incident_bw(RES_BW)
    for node in REQ["nodes"]:
        d = node["domain"]
        mem = [n for n in range(N) if DOM[n] == d]
        fm = np.stack([cpu[mem], sto[mem], inc[mem],
                       [hops[n, mem].sum() / len(mem) for n in mem]], axis=1)
        fm = fm / fm.max(axis=0)
        z = [fm[j] @ W_DDRL[d] + B_DDRL[d] if (cpu[n] >= node["cpu"] and sto[n] >= node["sto"]
                                                and n not in used) else -np.inf
             for j, n in enumerate(mem)]
        a = mem[int(np.argmax(z))]
        expect.append(a)
        cpu[a] -= node["cpu"]
        sto[a] -= node["sto"]
        used.add(a)
    assert hosts == expect


def test_rlvne_log_prob_gradient_matches_closed_form():
    sub = tiny_substrate()
    req = build_requests([REQ], 2, 3).at(0)
    state = tiny_state(sub, 3)
    params = {"w": jnp.asarray(W_RLVNE), "b": jnp.asarray(B_RLVNE)}
    run = jax.jit(lambda k: map_nodes(with_gradients(make_rlvne_policy(False)), params, k, sub,
                                      state, req))
    seen, branches = set(), set()
    for s in KEYS:
        stage = run(jax.random.key(s))
        assert bool(stage.ok)
        hosts = [int(h) for h in stage.hosts]
        seen.add(tuple(hosts))
        logp, gw, gb, br = rlvne_closed_form(REQ, hosts, W_RLVNE.astype(float), float(B_RLVNE))
        branches |= br
        np.testing.assert_allclose(np.asarray(stage.extra["grad"]["w"]), gw, rtol=1e-5, atol=1e-6,
                                   err_msg=str(hosts))
        assert float(stage.extra["grad"]["b"]) == pytest.approx(gb, rel=1e-5, abs=1e-6)
        assert float(stage.logp) == pytest.approx(logp, rel=1e-5, abs=1e-6)
    assert len(seen) >= 3
    # the case exercises both sides of the ReLU among feasible nodes, so ∂/∂b ≠ 0 is tested
    assert branches == {0.0, 1.0}


# ---------------------------------------------------------------------------------------------
# Rewards and the REINFORCE direction on a short online pass (accepted and rejected requests)
# ---------------------------------------------------------------------------------------------
def online_requests():
    def req(t, life, nodes, links):
        return {"arrival": t, "lifetime": life,
                "nodes": [{"cpu": c, "sto": s, "domain": d} for c, s, d in nodes],
                "links": [{"a": a, "b": b, "bw": w} for a, b, w in links]}
    return [
        req(0.0, 4.0, [(4, 4, 0), (3, 2, 1)], [(0, 1, 2)]),
        req(1.0, 2.0, [(3, 3, 0), (2, 5, 0)], [(0, 1, 1)]),
        req(2.0, 9.0, [(2, 2, 0), (2, 2, 1)], [(0, 1, 50)]),  # no link carries 50: link stage fails
        req(3.0, 3.0, [(60, 1, 0)], []),  # no node has 60 CPU: node stage fails
        req(5.0, 2.0, [(5, 5, 1), (1, 1, 0), (1, 1, 0)], [(0, 1, 1), (1, 2, 2)]),
        req(8.0, 1.0, [(2, 2, 0), (2, 2, 0), (1, 1, 1)], [(0, 2, 1)]),
    ]


@pytest.mark.parametrize("algo", ["ddrl-nra", "rlvne"])
def test_rewards_and_reinforce_gradient(algo):
    sub = tiny_substrate()
    dicts = online_requests()
    reqs = build_requests(dicts, 2, 3)
    if algo == "ddrl-nra":
        policy = make_ddrl_policy(False)
        params = set_ddrl_params(init_ddrl_params(jax.random.key(0), 2), W_DDRL, B_DDRL)
    else:
        policy = make_rlvne_policy(False)
        params = {"w": jnp.asarray(W_RLVNE), "b": jnp.asarray(B_RLVNE)}
    _, out = run_online(with_gradients(policy), params, jax.random.key(3), sub, reqs,
                        init_state(sub, 8, 3))
    acc = np.asarray(out.accepted)
    assert acc.any() and not acc.all()
    assert not acc[2] and not acc[3]
    assert int(np.asarray(out.hosts)[3, 0]) == -1  # the node stage failed at its first node

    # the reference replays the choices and gives revenue, cost and the running metrics
    doc = scenario_document(sub, reqs)
    choices = [[int(h) for h in np.asarray(out.hosts)[k][: len(r["nodes"])]]
               for k, r in enumerate(dicts)]
    ref = ref_simulate(doc, "replay", choices=choices)
    assert [t["accepted"] for t in ref["trace"]] == acc.tolist()
    ar = np.array([m["AR"] for m in ref["metrics"]])
    rc = np.array([m["RC"] for m in ref["metrics"]])
    acr = np.array([m["ACR"] for m in ref["metrics"]])
    rev = np.array([t["revenue"] for t in ref["trace"]])
    cost = np.array([t["cost"] for t in ref["trace"]])
    grads = jax.tree_util.tree_map(np.asarray, out.extra["grad"])
    assert sum(np.abs(g[2]).sum() for g in jax.tree_util.tree_leaves(grads)) > 0, \
        "a request failing at the link stage still has node-choice gradients (to be discarded)"

    cases = [
        (TrainConfig(algo=algo, reward="objective", ar_scale=7.0),
         np.where(acc, ar / 7.0 + rc + acr, 0.0)),
        (TrainConfig(algo=algo, reward="objective", ar_scale=7.0, failed_reward=-0.5),
         np.where(acc, ar / 7.0 + rc + acr, -0.5)),
        (TrainConfig(algo=algo, reward="rc"), np.where(acc, rev / np.maximum(cost, 1e-9), 0.0)),
        (TrainConfig(algo=algo, reward="rc", batch_reduce="mean"),
         np.where(acc, rev / np.maximum(cost, 1e-9), 0.0)),
    ]
    default = TrainConfig(algo=algo)
    assert default.reward_kind == ("objective" if algo == "ddrl-nra" else "rc")
    for cfg, expect in cases:
        r = np.asarray(request_rewards(cfg, out))
        np.testing.assert_allclose(r, expect, rtol=1e-5, atol=1e-6, err_msg=str(cfg))
        assert np.all(r[~acc] == (0.0 if cfg.failed_reward is None else cfg.failed_reward))
        got = reinforce_gradient(cfg, jnp.asarray(r), out.extra["grad"])
        scale = 1.0 / len(dicts) if cfg.batch_reduce == "mean" else 1.0
        want = jax.tree_util.tree_map(lambda g: scale * np.tensordot(r, g, axes=1), grads)
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5, atol=1e-6)


def test_training_step_is_params_plus_lr_times_reinforce_direction():
    """One batch of Algorithm 1: θ' = θ + α Σ_k r_k ∇ log π(a_k) (SGD on the negated direction).
    The node choices are reproduced with the trainer's documented key schedule: init splits the
    key into (init, run), run into one key per epoch, each epoch key into one key per batch."""
    sub = tiny_substrate()
    dicts = online_requests()
    reqs = build_requests(dicts, 2, 3)
    lr = 0.3
    for algo in ("ddrl-nra", "rlvne"):
        cfg = TrainConfig(algo=algo, epochs=1, batch_size=len(dicts), init_scale=0.5)
        trainer = make_train(cfg, len(dicts), 8)
        key = jax.random.key(11)
        carry = trainer.init(key, jnp.float32(lr), sub)
        params, _ = jax.jit(trainer.train)(key, jnp.float32(lr), sub, reqs)
        batch_key = jax.random.split(carry.epoch_keys[0], 1)[0]
        policy = make_ddrl_policy(False, 0.5) if algo == "ddrl-nra" else make_rlvne_policy(False)
        _, out = run_online(with_gradients(policy), carry.params, batch_key, sub, reqs,
                            init_state(sub, 8, 3))
        r = np.asarray(request_rewards(cfg, out))
        assert (r > 0).any()
        for p0, p1, g in zip(jax.tree_util.tree_leaves(carry.params),
                             jax.tree_util.tree_leaves(params),
                             jax.tree_util.tree_leaves(out.extra["grad"])):
            want = np.asarray(p0) + lr * np.tensordot(r, np.asarray(g), axes=1)
            np.testing.assert_allclose(np.asarray(p1), want, rtol=1e-5, atol=1e-6, err_msg=algo)
        moved = sum(float(np.abs(np.asarray(a) - np.asarray(b)).sum())
                    for a, b in zip(jax.tree_util.tree_leaves(carry.params),
                                    jax.tree_util.tree_leaves(params)))
        assert moved > 1e-3, algo


# ---------------------------------------------------------------------------------------------
# The domain axis of DDRL-NRA
# ---------------------------------------------------------------------------------------------
def test_stacked_domain_agents_equal_each_agent_alone():
    cfg = small(domains_per_segment=(1, 2, 2), n_train=10, n_test=10)
    sub = unstack(make_substrates(cfg, (3,)), 0)
    req = unstack(make_requests(cfg, (3,), "train"), 0).at(0)
    n_dom = sub.n_domains
    assert n_dom == 5
    rng = np.random.default_rng(0)
    res_cpu = np.asarray(sub.cpu) * rng.uniform(0.3, 1.0, sub.n_nodes)
    ctx = NodeContext(sub=sub, req=req, res_cpu=jnp.asarray(res_cpu, jnp.float32),
                      res_sto=sub.sto, res_bw=sub.edge_bw * 0.5,
                      used=jnp.zeros(sub.n_nodes, bool), hosts=jnp.full(req.max_nodes, -1),
                      node=jnp.int32(0), feasible=jnp.ones(sub.n_nodes, bool))
    fm, valid = domain_feature_matrices(ctx)
    module = NodeScorer(0.1)
    params = init_ddrl_params(jax.random.key(5), n_dom, 0.1)
    stacked = np.asarray(jax.vmap(module.apply)(params, fm))
    w, b = ddrl_rows(params)
    assert len({tuple(row) for row in w}) == n_dom, "each agent has its own weights"
    dn = np.asarray(sub.domain_nodes)
    for d in range(n_dom):
        params_d = jax.tree_util.tree_map(lambda x: x[d], params)
        alone = np.asarray(NodeScorer(0.1).apply(params_d, fm[d]))
        np.testing.assert_allclose(stacked[d], alone, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(stacked[d], np.asarray(fm[d]) @ w[d] + b[d], rtol=1e-5,
                                   atol=1e-6)
        # a domain's feature rows are its own nodes; padding rows are masked
        members = dn[d][dn[d] >= 0]
        assert np.array_equal(np.asarray(valid[d]), dn[d] >= 0)
        assert set(members.tolist()) == set(np.flatnonzero(np.asarray(sub.domain) == d).tolist())


@pytest.mark.parametrize("domain", [0, 1])
def test_gradient_step_moves_only_the_hosting_domains_agent(domain):
    sub = tiny_substrate()
    dicts = [{"arrival": 0.0, "lifetime": 1.0,
              "nodes": [{"cpu": 1, "sto": 1, "domain": domain}], "links": []}]
    reqs = build_requests(dicts, 2, 2)
    other = 1 - domain
    params = set_ddrl_params(init_ddrl_params(jax.random.key(0), 2), W_DDRL, B_DDRL)
    stage = map_nodes(with_gradients(make_ddrl_policy(False)), params, jax.random.key(1), sub,
                      init_state(sub, 2, 2), reqs.at(0))
    gw, gb = ddrl_rows(stage.extra["grad"])
    assert np.abs(gw[domain]).sum() > 1e-4
    # the other agent gets exactly nothing; the host's shared-bias gradient is 1 - sum(p) = 0
    # up to float rounding
    assert np.all(gw[other] == 0) and gb[other] == 0
    assert abs(gb[domain]) < 1e-6

    cfg = TrainConfig(epochs=1, batch_size=1)
    trainer = make_train(cfg, 1, 2)
    key = jax.random.key(2)
    train = jax.jit(trainer.train)
    p0, _ = train(key, jnp.float32(0.0), sub, reqs)  # lr 0: the initial parameters, same program
    p1, _ = train(key, jnp.float32(0.5), sub, reqs)
    w0, b0 = ddrl_rows(p0)
    w1, b1 = ddrl_rows(p1)
    assert np.abs(w1[domain] - w0[domain]).sum() > 1e-4  # the hosting agent learned
    assert np.array_equal(w1[other], w0[other]) and b1[other] == b0[other]  # bit-identical
    assert b1[domain] == pytest.approx(b0[domain], abs=1e-6)  # shared bias: gradient 1 − Σp = 0


# ---------------------------------------------------------------------------------------------
# Trained agents' test traces are legal allocations and replay exactly in the reference
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["ddrl-nra", "rlvne"])
def test_trained_agent_trace_passes_audit_and_replays(algo, tmp_path):
    scen = small(n_train=40, n_test=40)
    sub = unstack(make_substrates(scen, (1,)), 0)
    train_reqs = unstack(make_requests(scen, (1,), "train"), 0)
    test_set = make_requests(scen, (1,), "test")
    test_reqs = unstack(test_set, 0)
    cfg = TrainConfig(algo=algo, epochs=2, batch_size=20, init_scale=0.5)
    trainer = make_train(cfg, 40, table_size(make_requests(scen, (1,), "train")))
    params, _ = jax.jit(trainer.train)(jax.random.key(0), jnp.float32(0.05), sub, train_reqs)
    evaluate = jax.jit(make_evaluate(cfg, table_size(test_set), record_paths=True))
    _, out = evaluate(params, jax.random.key(1), sub, test_reqs)
    acc = np.asarray(out.accepted)
    assert acc.sum() > 0 and not bool(np.asarray(out.overflow).any())

    # replay the agent's node choices in the reference: same acceptance, hosts, paths, money
    doc = scenario_document(sub, test_reqs)
    hosts = np.asarray(out.hosts)
    choices = [[int(h) for h in hosts[k][: len(r["nodes"])]] for k, r in enumerate(doc["requests"])]
    ref = ref_simulate(doc, "replay", choices=choices)
    mine = trace_records(test_reqs, out)
    for k, (a, b) in enumerate(zip(mine, ref["trace"])):
        assert a["accepted"] == b["accepted"], k
        assert a["node_map"] == b["node_map"], k
        assert a["paths"] == b["paths"], k
        assert a["revenue"] == pytest.approx(b["revenue"], abs=1e-6), k
        assert a["cost"] == pytest.approx(b["cost"], abs=1e-6), k
    out_m = out.metrics
    for k, b in enumerate(ref["metrics"]):
        for key, col in (("AR", out_m.ar), ("ACR", out_m.acr), ("RC", out_m.rc),
                         ("RC_link", out_m.rc_link)):
            assert math.isclose(float(col[k]), b[key], rel_tol=1e-5, abs_tol=1e-6), (k, key)

    # the audit trail written from the JAX run passes the independent constraint checker
    write_audit(tmp_path, sub, test_reqs, out)
    assert check_audit(*load_audit_dir(str(tmp_path))) == []


# ---------------------------------------------------------------------------------------------
# Sampling from eq. 20: the inverse CDF of one uniform
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("u, expected", [(0.0, 1), (0.5, 1), (2 / 3, 3), (0.9, 3), (1.0, 3)])
def test_inverse_cdf_hand_worked(u, expected):
    # weights [0, 2, 0, 1, 0]: cumulative [0, 2, 2, 3, 3]; u·3 in [0, 2) -> 1, [2, 3] -> 3
    # (u = 1 would point past the end: capped at the last positive weight)
    p = jnp.asarray([0.0, 2.0, 0.0, 1.0, 0.0])
    assert int(inverse_cdf(p, jnp.float32(u))) == expected


def test_inverse_cdf_all_zero_weights_gives_last_index():
    assert int(inverse_cdf(jnp.zeros(4), jnp.float32(0.3))) == 3


def test_sample_masked_follows_the_masked_softmax():
    """20,000 draws against numpy's softmax over the mask: masked entries never drawn, and a
    chi-square test of the counts (4 degrees of freedom, critical value 23.5 at p = 1e-4)."""
    logits = np.array([0.3, -1.2, 2.0, 0.0, 5.0, 0.7, -0.4], np.float32)
    mask = np.array([True, True, True, False, False, True, True])
    logp = masked_log_softmax(jnp.asarray(logits), jnp.asarray(mask))
    keys = jax.random.split(jax.random.key(11), 20_000)
    draws = np.asarray(jax.jit(jax.vmap(lambda k: sample_masked(k, logp, jnp.asarray(mask))))(
        keys))
    counts = np.bincount(draws, minlength=len(logits))
    assert counts[~mask].sum() == 0
    expected = np_softmax(logits.astype(np.float64), mask)[mask] * len(draws)
    chi2 = ((counts[mask] - expected) ** 2 / expected).sum()
    assert chi2 < 23.5, (counts, expected)
    # the batch does not change a draw: the first keys one at a time give the same hosts
    alone = [int(sample_masked(k, logp, jnp.asarray(mask))) for k in keys[:5]]
    assert alone == draws[:5].tolist()
