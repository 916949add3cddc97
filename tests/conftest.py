"""Shared fixtures: small scenario families and a helper that runs the JAX simulator on many seeds
in one compiled call and converts each seed's result to the audit-trail form."""
from __future__ import annotations

import functools
import os
import tempfile

import jax
import numpy as np
import pytest

from sagin_jax.audit_trail import metrics_rows, trace_records
from sagin_jax.compilation import enable_persistent_cache
from sagin_jax.config import ScenarioConfig
from sagin_jax.scenario.io import scenario_document
from sagin_jax.devices.seed_axis import seed_keys
from sagin_jax.simulation.batch import make_requests, make_substrates, simulate_batch, table_size


# CLI tests call main(), which turns on JAX's persistent compilation cache: keep it in a
# throw-away folder for the test run, never in the user's ~/.cache.
os.environ.setdefault("SAGIN_JAX_CACHE_DIR", tempfile.mkdtemp(prefix="sagin-jax-test-xla-"))
# ... and turn it on for every test, shared by the xdist workers (the folder is made before they
# start): many tests build fresh closures of the same programs, which the in-memory cache misses
# and this one serves (the compile counters count such hits as programs too).
enable_persistent_cache(os.environ["SAGIN_JAX_CACHE_DIR"])


def small(**kw) -> ScenarioConfig:
    base = dict(n_space=4, n_air=6, n_ground=10, n_train=60, n_test=60)
    base.update(kw)
    return ScenarioConfig(**base)


def unstack(tree, i):
    return jax.tree_util.tree_map(lambda x: x[i], tree)


@functools.lru_cache(maxsize=None)
def run_jax(cfg: ScenarioConfig, seeds: tuple, policy, split: str = "test"):
    """-> list per seed of (scenario document, trace, metrics, hosts[R, M], jax final state)."""
    subs = make_substrates(cfg, seeds)
    reqs = make_requests(cfg, seeds, split)
    state, out = simulate_batch(policy, None, seed_keys(seeds), subs, reqs,
                                max_active=table_size(reqs), record_paths=True)
    results = []
    for i in range(len(seeds)):
        sub_i, req_i, out_i = unstack(subs, i), unstack(reqs, i), unstack(out, i)
        doc = scenario_document(sub_i, req_i)
        results.append((doc, trace_records(req_i, out_i), metrics_rows(out_i),
                        np.asarray(out_i.hosts), unstack(state, i), out_i))
    return results


@pytest.fixture
def small_cfg():
    return small()


def pytest_collection_modifyitems(config, items):
    """Run the tests marked ``slow`` first: xdist hands each worker a block of the collection
    and lets an idle worker take from the other's, so a long test left for last keeps one
    worker busy while the other waits; started first, the short ones fill in around it."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
