"""The static shape of a generation program (``Bounds``, ``Plan``) and its traced numbers
(``plan_params``), from a ``ScenarioConfig``: one compile per distinct plan; configs that differ only
in ranges, rates and probabilities share it (unless a range crosses a storage-dtype threshold,
``request_storage_dtypes``).

Static bounds. The link list is padded to ``Bounds.max_edges`` and the neighbour lists to
``Bounds.max_degree`` (``scenario_bounds``): deterministic link counts plus Poisson quantiles of
the random ones at tail probability ``_DELTA``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from sagin_jax.config import ScenarioConfig
from sagin_jax.scenario.types import REQUEST_DTYPES

_PACK2 = 256  # spans up to this share a word two digits at a time (span**2 <= 2**16)
_WORD = 1 << 16  # spans up to this take one word each; larger ones use jax.random.randint
_MAX_REQ_NODES = 31  # the request connectivity works on one uint32 bitmask per request node


class Bounds(NamedTuple):
    max_edges: int  # padded length of the link list
    max_degree: int  # padded width of the neighbour lists


def _grid_links(cfg: ScenarioConfig) -> np.ndarray:
    """The +Grid satellite links (ring within each plane, same slot across neighbouring planes)."""
    per_plane = cfg.n_space // cfg.space_planes
    links = set()
    for p in range(cfg.space_planes):
        for s in range(per_plane):
            u = p * per_plane + s
            if per_plane > 1:
                v = p * per_plane + (s + 1) % per_plane
                if u != v:
                    links.add((min(u, v), max(u, v)))
            if p + 1 < cfg.space_planes:
                links.add((u, (p + 1) * per_plane + s))
    return np.array(sorted(links), dtype=np.int64).reshape(-1, 2)


def _square_distance_density(d: np.ndarray) -> np.ndarray:
    """Density of the distance between two uniform points of the unit square."""
    f = np.zeros_like(d)
    a = d <= 1
    f[a] = 2 * d[a] * (np.pi - 4 * d[a] + d[a] ** 2)
    b = (d > 1) & (d <= math.sqrt(2))
    db = d[b]
    f[b] = 2 * db * (4 * np.sqrt(db ** 2 - 1) - (db ** 2 + 2 - np.pi) - 4 * np.arccos(1 / db))
    return f


def _waxman_pair_probability(cfg: ScenarioConfig) -> float:
    """E[p(u, v)] over two uniform ground points with L = sqrt(2), the largest possible L: an
    upper bound on the mean Waxman link probability (p grows with L)."""
    d = (np.arange(200_000) + 0.5) * (math.sqrt(2) / 200_000)
    f = _square_distance_density(d)
    p = cfg.waxman_alpha * np.exp(-d / (cfg.waxman_beta * math.sqrt(2)))
    return float((p * f).sum() * (math.sqrt(2) / 200_000))


def _waxman_centre_probability(cfg: ScenarioConfig) -> float:
    """E[p(c, v)] for c the centre of the square (the node with the largest expected Waxman
    degree), L = sqrt(2)."""
    g = (np.arange(400) + 0.5) / 400 - 0.5
    r = np.hypot(g[:, None], g[None, :])
    return float((cfg.waxman_alpha * np.exp(-r / (cfg.waxman_beta * math.sqrt(2)))).mean())


def _poisson_quantile(mu: float, delta: float) -> int:
    """Smallest q with P(Poisson(mu) > q) <= delta."""
    if mu <= 0:
        return 0
    q, logp = 0, -mu
    tail = 1.0 - math.exp(logp)
    while tail > delta:
        q += 1
        logp += math.log(mu / q)
        tail -= math.exp(logp)
    return q


_DELTA = 1e-6  # tail probability each random part of a bound is sized for


def scenario_bounds(cfg: ScenarioConfig) -> Bounds:
    """Static padding for the link list and the neighbour lists, from the config.

    ``max_edges`` = exact deterministic links + bounds on the random ones:
      * satellites: the +Grid links, counted exactly;
      * air: at most ``n_air * air_k_nearest`` (each UAV adds at most k links);
      * inter-segment: exactly ``n_air * uav_to_ground + n_space * sat_to_uav``;
      * Waxman: the Poisson quantile at 1 - 1e-6 of the mean link count computed with the largest
        possible L (sqrt 2), i.e. with every link probability rounded up (the count given the
        positions is a sum of independent Bernoullis, which is no more spread than a Poisson);
      * repair: ``n_nodes // 10 + 2`` links (one per extra component before the repair).
    ``max_degree`` = the largest, over the segments, of the deterministic degree plus the Poisson
    quantile at 1 - 1e-6 of the mean random degree:
      * satellite: Grid degree + ``sat_to_uav`` + 1 (a repair link);
      * UAV: ``air_k_nearest`` + ``uav_to_ground`` + random in-links (from other UAVs, mean k;
        from satellites, mean ``n_space * sat_to_uav / n_air``);
      * ground: random Waxman degree (mean at the centre of the square, the node with the most
        expected links, L = sqrt 2) + random in-links from UAVs (mean
        ``n_air * uav_to_ground / n_ground``);
    capped at ``n_nodes - 1``. Paper config: 466 links, degree 28 (measured over 4,096 seeds:
    links 321 +- 16, max 386; largest degree 13.4 +- 1.6, max 22; repair links 0 in 89% of
    seeds, at most 3). ``ScenarioConfig.max_edges`` / ``max_degree`` override both; a scenario
    that needs more is reported (``Scenario.overflow``, ``make_scenarios`` raises), never cut.
    """
    cfg.validate()
    ns, na, ng = cfg.n_space, cfg.n_air, cfg.n_ground
    n = cfg.n_nodes
    grid = _grid_links(cfg)
    repair = n // 10 + 2
    k_air = cfg.air_k_nearest if na > 1 else 0
    pairs = ng * (ng - 1) // 2
    waxman = min(pairs, _poisson_quantile(pairs * _waxman_pair_probability(cfg), _DELTA))
    edges = len(grid) + na * k_air + na * cfg.uav_to_ground + ns * cfg.sat_to_uav + waxman + repair
    edges = min(edges, n * (n - 1) // 2)

    grid_deg = int(np.bincount(grid.ravel(), minlength=ns).max()) if len(grid) else 0
    sat = grid_deg + cfg.sat_to_uav + 1
    uav = k_air + cfg.uav_to_ground + _poisson_quantile(k_air + ns * cfg.sat_to_uav / na, _DELTA)
    ground = _poisson_quantile((ng - 1) * _waxman_centre_probability(cfg)
                               + na * cfg.uav_to_ground / ng, _DELTA)
    degree = min(max(sat, uav, ground), n - 1)
    return Bounds(max_edges=int(cfg.max_edges if cfg.max_edges is not None else edges),
                  max_degree=int(cfg.max_degree if cfg.max_degree is not None else degree))


class Plan(NamedTuple):
    """Everything that shapes the program (hashable; one compile per distinct plan)."""

    ns: int
    na: int
    ng: int
    planes: int
    k_air: int
    u2g: int
    s2u: int
    domains_per_segment: tuple
    max_edges: int
    max_degree: int
    cap_big: bool  # some substrate capacity span exceeds 2**16: use randint
    m: int  # max_req_nodes
    req_digits: tuple  # digits per word for (cpu, sto, bw, domain): 2, 1 or 0 (= randint)
    n_domains: int
    bern_bits: int  # bits per Bernoulli draw of a request link
    req_storage: tuple  # ((field, dtype name), ...): the dtypes the requests are stored in


def _demand_dtype(hi: int) -> np.dtype:
    """The narrowest unsigned type holding every integer demand in [0, hi], else float32."""
    for t in (np.uint8, np.uint16):
        if hi <= np.iinfo(t).max:
            return np.dtype(t)
    return np.dtype(np.float32)


def _index_dtype(count: int) -> np.dtype:
    """The narrowest signed type holding the indices 0..count-1."""
    for t in (np.int8, np.int16):
        if count - 1 <= np.iinfo(t).max:
            return np.dtype(t)
    return np.dtype(np.int32)


def request_storage_dtypes(cfg: ScenarioConfig) -> dict:
    """{field: numpy dtype} the generator stores each ``Requests`` field in, chosen from the
    config's bounds alone: a demand (``cpu``, ``sto``, ``link_bw``; integers in its inclusive
    range, lower bound >= 0) as uint8 when the range's upper bound is <= 255, uint16 when <=
    65,535, else float32; ``domain`` (< n_domains) and the link ends ``link_a``/``link_b``
    (< max_req_nodes) as int8, int16 or int32; times float32 and masks bool. Every value fits
    exactly, so ``types.widen`` gives back the numbers of ``REQUEST_DTYPES``. The paper's
    config: uint8 demands and int8 indices, 228 bytes per request (723 in ``REQUEST_DTYPES``)."""
    out = {k: np.dtype(t) for k, t in REQUEST_DTYPES.items()}
    out.update(cpu=_demand_dtype(cfg.req_cpu[1]), sto=_demand_dtype(cfg.req_sto[1]),
               link_bw=_demand_dtype(cfg.req_bw[1]), domain=_index_dtype(cfg.n_domains),
               link_a=_index_dtype(cfg.max_req_nodes), link_b=_index_dtype(cfg.max_req_nodes))
    return out


def _digits(span: int) -> int:
    return 2 if span <= _PACK2 else (1 if span <= _WORD else 0)


def _bern_bits(p: float) -> int:
    for k in range(1, 17):
        if float(p * (1 << k)).is_integer():
            return k
    return 16


def make_plan(cfg: ScenarioConfig) -> Plan:
    b = scenario_bounds(cfg)
    if cfg.max_req_nodes > _MAX_REQ_NODES:
        raise ValueError(f"max_req_nodes={cfg.max_req_nodes} exceeds {_MAX_REQ_NODES}, the "
                         "largest request the JAX generator draws")
    spans = [hi - lo + 1 for r in (cfg.cpu_range, cfg.sto_range, cfg.bw_range) for lo, hi in r]
    spans.append(cfg.inter_bw_range[1] - cfg.inter_bw_range[0] + 1)
    return Plan(
        ns=cfg.n_space, na=cfg.n_air, ng=cfg.n_ground, planes=cfg.space_planes,
        k_air=cfg.air_k_nearest if cfg.n_air > 1 else 0, u2g=cfg.uav_to_ground,
        s2u=cfg.sat_to_uav, domains_per_segment=tuple(cfg.domains_per_segment),
        max_edges=b.max_edges, max_degree=b.max_degree, cap_big=max(spans) > _WORD,
        m=cfg.max_req_nodes,
        req_digits=tuple(_digits(r[1] - r[0] + 1) for r in (cfg.req_cpu, cfg.req_sto,
                                                              cfg.req_bw))
        + (_digits(cfg.n_domains),),
        n_domains=cfg.n_domains, bern_bits=_bern_bits(cfg.req_link_prob),
        req_storage=tuple((k, t.name) for k, t in request_storage_dtypes(cfg).items()),
    )


def plan_params(cfg: ScenarioConfig) -> dict:
    """The numbers of the config as arrays (traced, so they do not trigger compiles)."""
    def lo_span(ranges):
        return (np.array([r[0] for r in ranges], np.int32),
                np.array([r[1] - r[0] + 1 for r in ranges], np.int32))

    cpu_lo, cpu_span = lo_span(cfg.cpu_range)
    sto_lo, sto_span = lo_span(cfg.sto_range)
    bw_lo, bw_span = lo_span(tuple(cfg.bw_range) + (cfg.inter_bw_range,))
    req_lo, req_span = lo_span((cfg.req_cpu, cfg.req_sto, cfg.req_bw, cfg.req_nodes))
    k = _bern_bits(cfg.req_link_prob)
    return dict(
        cpu_lo=cpu_lo, cpu_span=cpu_span, sto_lo=sto_lo, sto_span=sto_span, bw_lo=bw_lo,
        bw_span=bw_span, req_lo=req_lo, req_span=req_span,
        link_threshold=np.uint32(min(round(cfg.req_link_prob * (1 << k)), 1 << k)),
        alpha=np.float32(cfg.waxman_alpha), beta=np.float32(cfg.waxman_beta),
        gap_scale=np.float32(1.0 / cfg.arrival_rate), mean_lifetime=np.float32(cfg.mean_lifetime),
        one=np.int32(1),  # the trip count of ``pin``'s loop: traced, so XLA cannot drop it
    )


def grid_links_plan(plan: Plan) -> np.ndarray:
    return _grid_links(ScenarioConfig(n_space=plan.ns, space_planes=plan.planes))
