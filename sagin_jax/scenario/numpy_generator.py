"""The original host-side (numpy) generator of the SAGIN substrate and of train/test request
sets (DESIGN section 2), kept as the baseline that ``scenario.generate`` (the JAX generator the
package uses) is benchmarked against. Python loops, ~0.3 s per paper seed.

Same distributions, different draws: a seed gives different scenarios here and in JAX.
"""
from __future__ import annotations

import numpy as np

from sagin_jax.config import ScenarioConfig
from sagin_jax.scenario.build import build_requests, build_substrate
from sagin_jax.scenario.types import Requests, Substrate

SPACE, AIR, GROUND = 0, 1, 2


def _seed_streams(seed: int) -> tuple[np.random.Generator, ...]:
    """Independent streams for substrate, training requests and test requests of one seed."""
    ss = np.random.SeedSequence([int(seed), 0x5A61])
    return tuple(np.random.default_rng(s) for s in ss.spawn(3))


def _uniform_int(rng: np.random.Generator, lo_hi, size=None):
    lo, hi = lo_hi
    return rng.integers(lo, hi + 1, size=size)


def _nearest(src: np.ndarray, dst: np.ndarray, k: int, exclude_self: bool) -> np.ndarray:
    """Indices of the k nearest dst points of each src point (ties by index)."""
    d = np.linalg.norm(src[:, None, :] - dst[None, :, :], axis=-1)
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    k = min(k, dst.shape[0] - (1 if exclude_self else 0))
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def substrate_arrays(cfg: ScenarioConfig, rng: np.random.Generator) -> dict:
    """The substrate as numpy arrays (before validation/packing): positions, capacities, links."""
    ns, na, ng = cfg.n_space, cfg.n_air, cfg.n_ground
    n = ns + na + ng
    segment = np.array([SPACE] * ns + [AIR] * na + [GROUND] * ng)
    base = {SPACE: 0, AIR: ns, GROUND: ns + na}
    # positions in the unit square (satellites on a plane x slot grid above it)
    per_plane = ns // cfg.space_planes
    sat = np.array([((s + 0.5) / per_plane, (p + 0.5) / cfg.space_planes)
                    for p in range(cfg.space_planes) for s in range(per_plane)])
    pos = np.concatenate([sat, rng.random((na, 2)), rng.random((ng, 2))])

    cpu = np.concatenate([_uniform_int(rng, cfg.cpu_range[s], size=c)
                          for s, c in ((SPACE, ns), (AIR, na), (GROUND, ng))])
    sto = np.concatenate([_uniform_int(rng, cfg.sto_range[s], size=c)
                          for s, c in ((SPACE, ns), (AIR, na), (GROUND, ng))])

    links: set[tuple[int, int]] = set()

    def add(u: int, v: int) -> None:
        if u != v:
            links.add((min(u, v), max(u, v)))

    # space: +Grid — ring within each orbital plane, same slot across neighbouring planes
    for p in range(cfg.space_planes):
        for s in range(per_plane):
            u = p * per_plane + s
            if per_plane > 1:
                add(u, p * per_plane + (s + 1) % per_plane)
            if p + 1 < cfg.space_planes:
                add(u, (p + 1) * per_plane + s)
    # air: each UAV to its k nearest UAVs
    air_pos = pos[base[AIR]: base[AIR] + na]
    if na > 1:
        for i, nbrs in enumerate(_nearest(air_pos, air_pos, cfg.air_k_nearest, True)):
            for j in nbrs:
                add(base[AIR] + i, base[AIR] + int(j))
    # ground: Waxman, p(u,v) = alpha * exp(-d / (beta * L))
    gp = pos[base[GROUND]:]
    d = np.linalg.norm(gp[:, None] - gp[None], axis=-1)
    big_l = max(d.max(), 1e-9)
    prob = cfg.waxman_alpha * np.exp(-d / (cfg.waxman_beta * big_l))
    draw = rng.random((ng, ng))
    iu, ju = np.triu_indices(ng, k=1)
    for i, j in zip(iu, ju):
        if draw[i, j] < prob[i, j]:
            add(base[GROUND] + int(i), base[GROUND] + int(j))
    # inter-segment
    for i, nbrs in enumerate(_nearest(air_pos, gp, cfg.uav_to_ground, False)):
        for j in nbrs:
            add(base[AIR] + i, base[GROUND] + int(j))
    for i, nbrs in enumerate(_nearest(pos[:ns], air_pos, cfg.sat_to_uav, False)):
        for j in nbrs:
            add(i, base[AIR] + int(j))
    # repair: join components by the shortest missing link until connected
    _connect(n, pos, links)

    edges = np.array(sorted(links), dtype=np.int64).reshape(-1, 2)
    seg_u, seg_v = segment[edges[:, 0]], segment[edges[:, 1]]
    bw = np.empty(len(edges), dtype=np.int64)
    for e in range(len(edges)):
        rng_range = cfg.bw_range[seg_u[e]] if seg_u[e] == seg_v[e] else cfg.inter_bw_range
        bw[e] = _uniform_int(rng, rng_range)
    domain = _split_domains(cfg, segment, pos)
    return dict(pos=pos, cpu=cpu, sto=sto, segment=segment, domain=domain,
                edge_u=edges[:, 0], edge_v=edges[:, 1], edge_bw=bw)


def _connect(n: int, pos: np.ndarray, links: set) -> None:
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for u, v in links:
        parent[find(u)] = find(v)
    while True:
        roots = np.array([find(i) for i in range(n)])
        if (roots == roots[0]).all():
            return
        a = np.flatnonzero(roots == roots[0])
        b = np.flatnonzero(roots != roots[0])
        d = np.linalg.norm(pos[a][:, None] - pos[b][None], axis=-1)
        i, j = np.unravel_index(np.argmin(d), d.shape)
        u, v = int(a[i]), int(b[j])
        links.add((min(u, v), max(u, v)))
        parent[find(u)] = find(v)


def _split_domains(cfg: ScenarioConfig, segment: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Split each segment into ``domains_per_segment`` domains by x position (equal sizes)."""
    domain = np.zeros(segment.shape[0], dtype=np.int64)
    next_id = 0
    for seg, k in enumerate(cfg.domains_per_segment):
        members = np.flatnonzero(segment == seg)
        order = members[np.argsort(pos[members, 0], kind="stable")]
        for chunk in np.array_split(order, k):
            domain[chunk] = next_id
            next_id += 1
    return domain


def request_dicts(cfg: ScenarioConfig, rng: np.random.Generator, count: int,
                  n_domains: int) -> list[dict]:
    """``count`` requests in arrival order (scenario.json schema, integer times and demands)."""
    gaps = rng.exponential(1.0 / cfg.arrival_rate, size=count)
    arrival = np.round(np.cumsum(gaps)).astype(np.int64)
    lifetime = np.maximum(1, np.round(rng.exponential(cfg.mean_lifetime, size=count))).astype(np.int64)
    out = []
    for k in range(count):
        n = int(_uniform_int(rng, cfg.req_nodes))
        nodes = [{"cpu": int(_uniform_int(rng, cfg.req_cpu)),
                  "sto": int(_uniform_int(rng, cfg.req_sto)),
                  "domain": int(rng.integers(0, n_domains))} for _ in range(n)]
        pairs = [(a, b) for a in range(n) for b in range(a + 1, n)
                 if rng.random() < cfg.req_link_prob]
        pairs = _connect_request(n, pairs, rng)
        links = [{"a": a, "b": b, "bw": int(_uniform_int(rng, cfg.req_bw))} for a, b in pairs]
        out.append({"id": k, "arrival": int(arrival[k]), "lifetime": int(lifetime[k]),
                    "nodes": nodes, "links": links})
    return out


def _connect_request(n: int, pairs: list, rng: np.random.Generator) -> list:
    """Make the request graph connected: link each further component to a random earlier node."""
    comp = list(range(n))

    def find(x):
        while comp[x] != x:
            x = comp[x]
        return x

    for a, b in pairs:
        comp[find(a)] = find(b)
    pairs = set(pairs)
    for v in range(1, n):
        if find(v) != find(0):
            u = int(rng.choice([w for w in range(n) if find(w) == find(0)]))
            pairs.add((min(u, v), max(u, v)))
            comp[find(v)] = find(0)
    return sorted(pairs)


def numpy_scenario(cfg: ScenarioConfig, seed: int) -> tuple[Substrate, Requests, Requests]:
    """(substrate, train requests, test requests) of ``seed``, drawn with numpy."""
    return (generate_substrate(cfg, seed), generate_requests(cfg, seed, "train"),
            generate_requests(cfg, seed, "test"))


def generate_substrate(cfg: ScenarioConfig, seed: int, pad_edges_to: int | None = None,
                       pad_degree_to: int | None = None) -> Substrate:
    cfg.validate()
    rng = _seed_streams(seed)[0]
    a = substrate_arrays(cfg, rng)
    return build_substrate(a["cpu"], a["sto"], a["segment"], a["domain"], a["edge_u"],
                           a["edge_v"], a["edge_bw"], pad_edges_to=pad_edges_to,
                           pad_degree_to=pad_degree_to)


def generate_request_dicts(cfg: ScenarioConfig, seed: int, split: str) -> list[dict]:
    """The ``split`` ('train' or 'test') request set of ``seed`` as dicts."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    cfg.validate()
    stream = _seed_streams(seed)[1 if split == "train" else 2]
    count = cfg.n_train if split == "train" else cfg.n_test
    return request_dicts(cfg, stream, count, cfg.n_domains)


def generate_requests(cfg: ScenarioConfig, seed: int, split: str) -> Requests:
    return build_requests(generate_request_dicts(cfg, seed, split), cfg.n_domains,
                          cfg.max_req_nodes)
