"""Per-seed entry points (CLI, tests), backed by the JAX generator (``scenario.generate``).

``generate_substrate`` returns the substrate exactly as ``build_substrate`` packs the generated
link list: unpadded (or padded to ``pad_edges_to`` / ``pad_degree_to``), so it round-trips
through scenario.json bit for bit.
"""
from __future__ import annotations

import jax
import numpy as np

from sagin_jax.config import ScenarioConfig
from sagin_jax.scenario.build import build_substrate
from sagin_jax.scenario.generate import make_requests, make_substrates
from sagin_jax.scenario.io import requests_to_dicts
from sagin_jax.scenario.types import Requests, Substrate


def _one(tree):
    return jax.tree_util.tree_map(lambda x: x[0], tree)


def generate_substrate(cfg: ScenarioConfig, seed: int, pad_edges_to: int | None = None,
                       pad_degree_to: int | None = None) -> Substrate:
    """The substrate of ``seed``, packed by ``build_substrate`` (links padded to
    ``pad_edges_to``, neighbour lists to ``pad_degree_to`` if given)."""
    sub = _one(make_substrates(cfg, [seed]))
    m = np.asarray(sub.edge_mask)
    return build_substrate(np.asarray(sub.cpu), np.asarray(sub.sto), np.asarray(sub.segment),
                           np.asarray(sub.domain), np.asarray(sub.edge_u)[m],
                           np.asarray(sub.edge_v)[m], np.asarray(sub.edge_bw)[m],
                           pad_edges_to=pad_edges_to, pad_degree_to=pad_degree_to)


def generate_requests(cfg: ScenarioConfig, seed: int, split: str) -> Requests:
    """The ``split`` ('train' or 'test') request set of ``seed``."""
    return _one(make_requests(cfg, [seed], split))


def generate_request_dicts(cfg: ScenarioConfig, seed: int, split: str) -> list[dict]:
    """The ``split`` request set of ``seed`` as scenario.json dicts."""
    return requests_to_dicts(generate_requests(cfg, seed, split))
