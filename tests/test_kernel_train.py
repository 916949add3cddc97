"""The training kernel (one Pallas call per REINFORCE batch, sagin_jax/kernels/train.py) in Pallas
interpret mode on the CPU against the sequential XLA training pass on the paper's substrate: the
same sampled decisions from a carried state, the same per-request ∇ log π up to float rounding,
the same trained parameters after an epoch up to float rounding, and a CUDA module with one
Triton call per batch."""
from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from sagin_jax.config import ScenarioConfig
from sagin_jax.kernels.cost import cuda_cost
from sagin_jax.kernels.train import batch_dims, init_carry, kernel_batch
from sagin_jax.simulation.batch import make_requests, make_substrates, seed_keys, table_size
from sagin_jax.simulation.online import run_online
from sagin_jax.simulation.state import init_state
from sagin_jax.training.config import Hyper, TrainConfig
from sagin_jax.training.reinforce import make_train, policies_for, with_score_terms

PAPER = ScenarioConfig(n_train=24)  # the paper's substrate, two batches of 12 requests
BATCH = 12
GRAD_TOL = dict(rtol=1e-5, atol=2e-6)
"""∇ log π: the kernel sums the score and the softmax feature by feature in its own reduction
order, XLA by dot products and autodiff, so each term differs by a few float32 ulps (seen:
<= 2.6e-6 absolute on entries up to 2.8, and ~4e-7 on the bias terms that are exactly 0
analytically)."""
PARAM_TOL = dict(rtol=1e-6, atol=1e-7)
"""Parameters after an epoch: the update sums those gradients with learning rate 0.01, so the
rounding above shrinks by the step size (seen: <= 1.5e-8 absolute on parameters up to 0.2, for
both agents)."""


def one(tree):
    return jax.tree_util.tree_map(lambda x: x[0], tree)


@functools.lru_cache(maxsize=None)
def scenario(seeds=(0,)):
    subs, reqs = make_substrates(PAPER, seeds), make_requests(PAPER, seeds, "train")
    return subs, reqs, table_size(reqs)


def test_training_batches_match_sequential(algo="ddrl-nra"):
    """Two batches from a carried state with the same key: identical sampled decisions (accepted,
    hosts), values and running metrics; log-probability and Σ ∇ log π, Σ -log π ∇ log π per
    request equal within ``GRAD_TOL``. DDRL-NRA: per-domain weight rows, the layout RLVNE's one
    row is a case of (RLVNE's ReLU derivative is checked by the epoch test; each test compiles
    both paths, ~25-50 s)."""
    subs, reqs, a = scenario()
    sub, req = one(subs), one(reqs)
    policy, _, init = policies_for(TrainConfig(algo=algo))
    params = init(jax.random.PRNGKey(3), sub)
    batches = jax.tree_util.tree_map(lambda x: x.reshape((2, BATCH) + x.shape[1:]), req)
    key = jax.random.PRNGKey(7)
    first = jax.tree_util.tree_map(lambda x: x[0], batches)

    @jax.jit
    def sequential(params):
        return jax.lax.scan(lambda s, b: run_online(with_score_terms(policy), params, key, sub,
                                                    b, s, strategy="sequential"),
                            init_state(sub, a, req.max_nodes), batches)[1]

    @jax.jit
    def kernel(params):
        return jax.lax.scan(lambda c, b: kernel_batch(policy, params, key, sub, b, c, a,
                                                      interpret=True),
                            init_carry(sub, batch_dims(sub, first, a)), batches)[1]

    accepted = []
    for i in range(2):
        o_seq, o_ker = (jax.tree_util.tree_map(lambda x: x[i], o)
                        for o in (sequential(params), kernel(params)))
        accepted.append(np.asarray(o_seq.accepted))
        for f in ("accepted", "hosts"):
            np.testing.assert_array_equal(getattr(o_ker, f), getattr(o_seq, f), err_msg=f)
        for f in ("revenue", "cost"):
            np.testing.assert_array_equal(getattr(o_ker.value, f), getattr(o_seq.value, f))
        for f in ("ar", "acr", "rc"):
            np.testing.assert_array_equal(getattr(o_ker.metrics, f), getattr(o_seq.metrics, f))
        np.testing.assert_allclose(o_ker.logp, o_seq.logp, **GRAD_TOL)
        for name in ("grad", "entropy_grad"):
            mine, theirs = o_ker.extra[name], o_seq.extra[name]
            assert (jax.tree_util.tree_structure(mine)
                    == jax.tree_util.tree_structure(theirs)), name
            for x, y in zip(jax.tree_util.tree_leaves(mine), jax.tree_util.tree_leaves(theirs)):
                assert x.shape == y.shape, name
                np.testing.assert_allclose(x, y, err_msg=name, **GRAD_TOL)
    accepted = np.concatenate(accepted)
    assert 0 < accepted.sum() < accepted.size  # both outcomes occur
    grads = jax.tree_util.tree_leaves(o_seq.extra["grad"])
    assert max(np.abs(np.asarray(g)).max() for g in grads) > 0.1  # non-trivial gradients


def test_training_epoch_matches_sequential(algo="rlvne"):
    """One epoch (two updates) on two seeds, with the entropy bonus, the running baseline and
    reward normalisation switched on so that every term of the update is exercised: the same
    running metrics at the end of every batch (so the same decisions) and the same parameters
    within ``PARAM_TOL``."""
    seeds = (0, 1)
    subs, reqs, a = scenario(seeds)
    tcfg = TrainConfig(algo=algo, epochs=1, batch_size=BATCH)
    hyper = Hyper.from_config(tcfg, lr=0.01, entropy_coef=0.01, baseline_weight=1.0,
                              reward_norm=1.0)
    keys = seed_keys(seeds)
    results = {}
    for strategy in ("sequential", "kernel"):
        trainer = make_train(tcfg, PAPER.n_train, a, strategy=strategy)

        @jax.jit
        def run(keys, subs, reqs, trainer=trainer):
            carry = jax.vmap(lambda k, s: trainer.init(k, hyper, s))(keys, subs)
            return jax.vmap(trainer.epoch)(carry, subs, reqs)

        results[strategy] = run(keys, subs, reqs)
    (c_seq, curve_seq), (c_ker, curve_ker) = results["sequential"], results["kernel"]
    for f in ("ar", "acr", "rc", "objective"):
        np.testing.assert_array_equal(getattr(curve_ker, f), getattr(curve_seq, f), err_msg=f)
    moved = 0.0
    init = jax.vmap(lambda k, s: make_train(tcfg, PAPER.n_train, a).init(k, hyper, s))(keys,
                                                                                        subs)
    for x, y, x0 in zip(*(jax.tree_util.tree_leaves(c.params) for c in (c_ker, c_seq, init))):
        np.testing.assert_allclose(x, y, **PARAM_TOL)
        moved = max(moved, float(np.abs(np.asarray(y) - np.asarray(x0)).max()))
    assert moved > 1e-4  # the updates are compared, not just the initial parameters


@pytest.mark.parametrize("algo", ["ddrl-nra", "rlvne"])
def test_training_batch_lowers_for_cuda_as_one_triton_call(algo):
    """One training epoch of two batches over two seeds lowered for CUDA on this CPU machine
    (Triton rejects any primitive it cannot lower): one Triton call, in the scan over the
    batches (one launch per batch), and besides that scan one XLA loop, the fixed-length scan
    over a batch's outcome rows."""
    seeds = (0, 1)
    subs, reqs, a = scenario(seeds)
    tcfg = TrainConfig(algo=algo, epochs=1, batch_size=BATCH)
    trainer = make_train(tcfg, PAPER.n_train, a, strategy="kernel", interpret=False)

    def epoch(keys, subs, reqs):
        carry = jax.vmap(lambda k, s: trainer.init(k, 0.01, s))(keys, subs)
        return jax.vmap(trainer.epoch)(carry, subs, reqs)

    cost = cuda_cost(epoch, seed_keys(seeds), subs, reqs)
    assert cost == {"pallas_calls": 1, "while_loops": 2}, cost
