"""Compilation discipline: the counter counts what XLA compiles, host-side batch
preparation compiles nothing, grids of any size share one program, and compiling ahead compiles
each distinct program once (the bound on a whole small reproduction's programs is in
test_experiments.py)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagin_jax.compilation import CompileCounter
from sagin_jax.devices.seed_axis import run_index, seed_keys, take, take_runs, unpad

def _programs(cc) -> int:
    """Programs a block needed: compiled by XLA or loaded from the persistent cache (CLI tests in
    the same test process turn that cache on)."""
    return cc.stats.compiled + cc.stats.cache_hits


def test_counter_counts_a_new_program_once_and_a_cached_one_never():
    f = jax.jit(lambda x: jnp.cos(x) * 3.0 + x.sum())
    x, y = jnp.arange(7.0), jnp.arange(9.0)
    with CompileCounter() as first:
        f(x).block_until_ready()
    with CompileCounter() as again:
        f(x).block_until_ready()
    with CompileCounter() as new_shape:
        f(y).block_until_ready()
    assert _programs(first) == 1
    assert _programs(again) == 0
    assert _programs(new_shape) == 1


def test_seed_keys_equal_jax_random_key():
    seeds = [0, 1, 7, 123456789, 2 ** 32 - 1]
    ours = jax.random.key_data(seed_keys(seeds))
    theirs = jnp.stack([jax.random.key_data(jax.random.key(s)) for s in seeds])
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


@pytest.mark.parametrize("bad", [-1, 2 ** 32])
def test_seed_keys_refuse_seeds_outside_uint32(bad):
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        seed_keys([0, bad])


def test_preparing_a_run_axis_compiles_nothing():
    tree = {"a": np.arange(12.0).reshape(6, 2).astype(np.float32), "b": np.arange(6)}
    idx = run_index(5)
    with CompileCounter() as cc:
        keys = seed_keys(range(6))
        out = take_runs((keys, tree), idx)
        back = unpad(out[1], 5)
    assert _programs(cc) == 0
    np.testing.assert_array_equal(back["a"], tree["a"][:5])
    kd = np.asarray(jax.random.key_data(take(keys, np.array([3, 1]))))
    np.testing.assert_array_equal(kd, np.asarray(jax.random.key_data(seed_keys([3, 1]))))


def test_run_index_pads_to_the_mesh_by_repeating_the_last_run():
    class FakeMesh:
        class devices:  # noqa: N801 - mimics Mesh.devices.size
            size = 4
    np.testing.assert_array_equal(run_index(6, FakeMesh), [0, 1, 2, 3, 4, 5, 5, 5])
    np.testing.assert_array_equal(run_index(3), [0, 1, 2])


def test_training_grids_of_any_size_share_one_program_and_blocks_change_no_bit():
    """A grid is cut into fixed blocks of runs, one call each, so grids of different sizes run
    the same compiled program; how a grid is cut changes no number (every run is independent)."""
    from sagin_jax.config import ScenarioConfig
    from sagin_jax.simulation.batch import make_requests, make_substrates
    from sagin_jax.training.config import Hyper, TrainConfig
    from sagin_jax.training.run import run_block, train_population
    cfg = ScenarioConfig(n_space=4, n_air=6, n_ground=10, n_train=40, n_test=40)
    tcfg = TrainConfig(epochs=2, batch_size=20)
    hypers = Hyper.stack([Hyper.from_config(tcfg, lr=lr, xp=np) for lr in (0.005, 0.05)])
    table = 48  # active-table rows: more than the 40 requests, so enough for any seed
    subs, reqs = make_substrates(cfg, [0, 1, 2]), make_requests(cfg, [0, 1, 2], "train")
    kw = dict(progress=False, subs=subs, train_reqs=reqs, max_active=table)
    whole = train_population(cfg, tcfg, [0, 1, 2], hypers, **kw)  # 6 runs in one block of 8
    cut = train_population(cfg, tcfg, [0, 1, 2], hypers, max_block=2, **kw)  # 3 blocks of 2
    for x, y in zip(jax.tree_util.tree_leaves((whole.params, whole.curves)),
                    jax.tree_util.tree_leaves((cut.params, cut.curves))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert np.asarray(cut.curves.ar).shape[:2] == (3, 2)
    assert not np.array_equal(np.asarray(cut.curves.ar)[0], np.asarray(cut.curves.ar)[1])
    two = jax.tree_util.tree_map(lambda x: np.asarray(x)[1:], (subs, reqs))
    with CompileCounter() as cc:  # 2 seeds x 2 rates: two blocks of the program just compiled
        train_population(cfg, tcfg, [1, 2], hypers, progress=False, max_block=2, subs=two[0],
                         train_reqs=two[1], max_active=table)
    assert _programs(cc) == 0, cc.stats
    assert [run_block(n, None, 32) for n in (1, 3, 4, 5, 32, 33, 128)] == [1, 4, 4, 8, 32, 32, 32]


def test_compile_ahead_compiles_each_distinct_program_once_and_calls_then_compile_nothing():
    import jax.numpy as jnp

    from sagin_jax.compilation import Job, compile_ahead

    @jax.jit
    def f(x, y):
        return jnp.sin(x) * y + jnp.cumsum(x)

    a, b = jnp.arange(7.0), jnp.float32(2.0)
    wide = jnp.arange(9.0)
    jobs = (Job(f, (x, b)) for x in (a, a + 1.0, wide))  # a generator: same shape twice
    with CompileCounter() as ahead:
        n = compile_ahead(jobs, workers=2)
    assert n == 2 and _programs(ahead) == 2
    with CompileCounter() as run:
        out = [f(a, b), f(wide, b)]
    assert _programs(run) == 0
    np.testing.assert_allclose(np.asarray(out[0]), np.sin(np.arange(7.0)) * 2
                               + np.cumsum(np.arange(7.0)), rtol=1e-6)
