"""The streaming seed runner (``simulation.stream``) and ``evaluate --seeds``: the same numbers
as ``simulate_seeds`` on ``make_scenarios``' output, whatever the chunking; resumable; memory
that does not grow with the seed count."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from sagin_jax.experiments.stats import mean_ci, on_time_grid
from sagin_jax.policies.baselines import BASELINES
from sagin_jax.scenario.generate import make_scenarios
from sagin_jax.simulation.batch import simulate_seeds, table_size
from sagin_jax.simulation.stream import default_time_grid, stream_seeds, stream_table_size
from sagin_jax.training.config import TrainConfig
from sagin_jax.training.reinforce import policies_for
from tests.conftest import small

CFG = small(n_test=40)
MEMORY_CFG = small(n_test=300)
SEEDS = [3, 4, 5, 6, 7]
POINTS = 7
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _agent(algo: str):
    """(test policy, params) of a learning agent with parameters drawn at random (a trained
    agent is no different to the runner, and random weights exercise every feature)."""
    tcfg = TrainConfig(algo=algo)
    _, policy, init = policies_for(tcfg)
    sub = make_scenarios(CFG, [0]).sub
    params = init(jax.random.key(11), jax.tree_util.tree_map(lambda x: x[0], sub), 1.0)
    return policy, params


def _policy(algo: str):
    return (BASELINES[algo], None) if algo in BASELINES else _agent(algo)


@pytest.mark.parametrize("algo", ["nrmvne", "random", "ddrl-nra"])
def test_stream_equals_simulate_seeds(algo):
    """Per seed: final AR, ACR, R/C, link R/C, accepted count and every grid sample are the
    bits of ``simulate_seeds`` on ``make_scenarios`` (sampled by ``stats.on_time_grid``). The
    runner hands a policy, its parameters and the seed keys to ``simulate`` and never looks
    inside: a heuristic, the keyed random draw and a parameterised agent cover what it passes
    (GRC and RLVNE are the same calls; ``test_equivalence`` holds every policy to the
    reference)."""
    policy, params = _policy(algo)
    grid = default_time_grid(CFG, POINTS)
    got = stream_seeds(CFG, policy, params, SEEDS, grid, chunk=5, mesh=None)
    scen = make_scenarios(CFG, SEEDS, mesh=None)
    _, out = simulate_seeds(policy, params, SEEDS, scen.sub, scen.test)
    m = out.metrics
    for name in ("time", "ar", "acr", "rc", "rc_link"):
        ref = np.asarray(getattr(m, name))
        np.testing.assert_array_equal(getattr(got.final, name), ref[:, -1], err_msg=name)
        np.testing.assert_array_equal(getattr(got.curves, name).astype(np.float64),
                                      on_time_grid(ref_t := np.asarray(m.time), ref,
                                                   grid.astype(np.float64)), err_msg=name)
        assert ref_t.shape[1] == CFG.n_test
    np.testing.assert_array_equal(got.accepted, np.asarray(out.accepted).sum(axis=1))
    assert (got.arrived == CFG.n_test).all() and not got.overflow.any()


def test_chunking_and_table_change_no_number(monkeypatch):
    """Chunk size, a resumed start and a table too small (run again with a row for every request
    alive at once) change nothing; per-chunk delivery gives the same rows in seed order."""
    from sagin_jax.simulation import stream
    policy = BASELINES["nrmvne"]
    grid = default_time_grid(CFG, POINTS)
    table = stream_table_size(CFG)
    assert table >= 1 and table % 16 == 0
    whole = stream_seeds(CFG, policy, None, SEEDS, grid, chunk=5, mesh=None)
    rows, real = [], stream.evaluate_chunk
    monkeypatch.setattr(stream, "evaluate_chunk",
                        lambda *a, **kw: rows.append(kw["max_active"]) or real(*a, **kw))
    # seeds 6 and 7 hold 8 accepted requests at once (NRMVNE on CFG): 6 rows are too few, and
    # the chunk runs again with rows for every request its seeds have alive at once
    parts = []
    stream_seeds(CFG, policy, None, SEEDS, grid, chunk=2, mesh=None, first_chunk=1,
                 max_active=6, on_chunk=lambda c, s: parts.append((c, s)))
    need = table_size(make_scenarios(CFG, SEEDS[2:], mesh=None).test)
    assert [c for c, _ in parts] == [1, 2] and rows[0] == 6 and max(rows) == need > 6, rows
    tail = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *[s for _, s in parts])
    halves = stream_seeds(CFG, policy, None, SEEDS, grid, chunk=2, mesh=None, max_active=need)
    assert not tail.overflow.any() and not halves.overflow.any()
    for a, b in ((whole, halves), (jax.tree_util.tree_map(lambda x: x[2:], whole), tail)):
        jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def test_generation_overflow_names_the_seed(monkeypatch):
    """A chunk whose scenario overflowed a static bound stops the run with ``make_scenarios``'
    error, naming the seed (the generator's flags are faked here: no program is compiled)."""
    from sagin_jax.simulation import stream

    def fake_generation(prm, key_data, **kw):
        over = np.zeros((key_data.shape[0], 2), bool)
        over[1, 1] = True  # the chunk's second seed: too many links at a node
        n = key_data.shape[0]
        return SimpleNamespace(sub=None, test=None, overflow=over, need=np.ones(n, np.int32),
                               used=np.ones((n, 2), np.int32))
    monkeypatch.setattr(stream, "generate_chunk", fake_generation)
    monkeypatch.setattr(stream, "evaluate_chunk", lambda *a, **kw: None)
    with pytest.raises(ValueError, match=r"seed 4: .*max_degree"):
        stream_seeds(CFG, BASELINES["nrmvne"], None, SEEDS, default_time_grid(CFG, POINTS),
                     chunk=5, mesh=None)


def test_evaluate_resume_gives_the_same_files(tmp_path, monkeypatch):
    """An interrupted ``evaluate_seeds`` (after its first chunk, with a half-written row
    appended) resumed with ``resume=True`` writes the same per_seed.csv and curves.csv as one
    uninterrupted run; the summary's intervals are ``mean_ci`` of the per-seed rows."""
    from sagin_jax.experiments import evaluate as ev
    from sagin_jax.simulation import stream
    seeds = range(2, 9)
    policy = BASELINES["nrmvne"]
    ev.evaluate_seeds(CFG, "nrmvne", policy, None, seeds, tmp_path / "one", points=POINTS,
                      chunk=5, progress=False)
    real = stream.stream_seeds

    def interrupted(*a, on_chunk, **kw):
        def first_then_stop(c, s):
            on_chunk(c, s)
            with open(tmp_path / "two" / "per_seed.csv", "a") as fh:
                fh.write("9,123.0,0.5")  # a row cut short by the interruption
            raise KeyboardInterrupt
        return real(*a, on_chunk=first_then_stop, **kw)
    monkeypatch.setattr(stream, "stream_seeds", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ev.evaluate_seeds(CFG, "nrmvne", policy, None, seeds, tmp_path / "two", points=POINTS,
                          chunk=5, progress=False)
    monkeypatch.setattr(stream, "stream_seeds", real)
    with pytest.raises(ValueError, match="--resume"):
        ev.evaluate_seeds(CFG, "nrmvne", policy, None, seeds, tmp_path / "two", points=POINTS,
                          chunk=5, progress=False)
    with pytest.raises(ValueError, match="different evaluation"):
        ev.evaluate_seeds(CFG, "nrmvne", policy, None, seeds, tmp_path / "two", points=6,
                          chunk=2, resume=True, progress=False)
    ev.evaluate_seeds(CFG, "nrmvne", policy, None, seeds, tmp_path / "two", points=POINTS,
                      chunk=5, resume=True, progress=False)
    for name in ("per_seed.csv", "curves.csv"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    rows = np.genfromtxt(tmp_path / "one" / "per_seed.csv", delimiter=",", names=True)
    assert list(rows["seed"]) == list(seeds)
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    mean, half = mean_ci(rows["ACR"])
    assert summary["metrics"]["ACR"]["mean"] == pytest.approx(mean, rel=1e-12)
    assert summary["metrics"]["ACR"]["half_width"] == pytest.approx(half, rel=1e-12)
    assert (tmp_path / "one" / "per_seed.png").stat().st_size > 0


def test_grid_moments_match_two_pass_statistics():
    """The running sums give ``mean_ci``'s mean and half-width (to float64 rounding), and the
    same bits whatever the chunking."""
    from sagin_jax.experiments.evaluate import GridMoments
    rng = np.random.default_rng(0)
    x = (5000 + 100 * rng.standard_normal((37, 4))).astype(np.float32)
    a, b = GridMoments(), GridMoments()
    a.add({"AR": x})
    for lo in range(0, 37, 5):
        b.add({"AR": x[lo:lo + 5]})
    b = GridMoments(json.loads(json.dumps(b.to_json())))  # survives a resume
    mean, half = mean_ci(x)
    np.testing.assert_allclose(a.mean_ci("AR")[0], mean, rtol=1e-13)
    np.testing.assert_allclose(a.mean_ci("AR")[1], half, rtol=1e-9)
    for u, v in zip(a.mean_ci("AR"), b.mean_ci("AR")):
        np.testing.assert_array_equal(u, v)


_MEMORY_RUN = """
import json, os, sys
from sagin_jax.cli import set_host_devices
from sagin_jax.host_memory import peak_rss_mib
set_host_devices(int(sys.argv[3]))
from sagin_jax.compilation import enable_persistent_cache
enable_persistent_cache(os.environ["SAGIN_JAX_CACHE_DIR"])
from sagin_jax.experiments.evaluate import evaluate_seeds
from sagin_jax.policies.baselines import BASELINES
from tests.test_stream import MEMORY_CFG
n, out = int(sys.argv[1]), sys.argv[2]
evaluate_seeds(MEMORY_CFG, "nrmvne", BASELINES["nrmvne"], None, range(n), out, points=5,
               chunk=32, progress=False)
print(json.dumps({"rss_mib": peak_rss_mib()}))
"""


@pytest.mark.slow
def test_memory_does_not_grow_with_seeds_and_devices_change_no_number(tmp_path):
    """256 seeds on 1 host device and 1,024 on 2, through ``evaluate_seeds`` in fresh
    processes, 32 seeds per chunk: peak RSS differs by less than 150 MB (``make_scenarios`` and
    ``simulate_seeds`` of the same seeds grow by ~1.2 GB from 256 to 2,048 seeds of this
    config), and the first 256 rows are the same."""
    rss = {}
    for n, devices in ((256, 1), (1024, 2)):
        res = subprocess.run([sys.executable, "-c", textwrap.dedent(_MEMORY_RUN), str(n),
                              str(tmp_path / str(n)), str(devices)], cwd=ROOT,
                             capture_output=True, text=True,
                             env={**os.environ, "JAX_PLATFORMS": "cpu"})
        assert res.returncode == 0, res.stderr[-2000:]
        rss[n] = json.loads(res.stdout.strip().splitlines()[-1])["rss_mib"] * 2 ** 20
    assert abs(rss[1024] - rss[256]) < 150e6, rss
    one = (tmp_path / "256" / "per_seed.csv").read_text().splitlines()
    two = (tmp_path / "1024" / "per_seed.csv").read_text().splitlines()
    assert len(two) == 1025 and one == two[:257]


def test_train_seeds_equals_train_population_then_evaluate_grid():
    """Agents trained and tested per seed through the runner, two settings per seed (a
    population axis, as ``train_population`` takes it): the parameters, every epoch's training
    curve and the test pass are the bits of ``train_population`` followed by ``evaluate_grid``
    on ``make_scenarios``' output; 2 seeds per call, so the chunks (the last one padded) are
    put back in seed order."""
    from sagin_jax.training.config import Hyper
    from sagin_jax.training.run import evaluate_grid, train_population
    from sagin_jax.training.stream import train_seeds
    cfg = small(n_train=40, n_test=40)
    tcfg = TrainConfig(algo="ddrl-nra", epochs=2, batch_size=20)
    hypers = Hyper.stack([Hyper.from_config(tcfg, lr=0.01, xp=np),
                          Hyper.from_config(tcfg, lr=0.05, entropy_coef=0.01, xp=np)])
    seeds, grid = [1, 2, 3], default_time_grid(cfg, POINTS)
    params, curves, summary = train_seeds(cfg, tcfg, seeds, grid, hypers=hypers, chunk=2,
                                          mesh=None)
    scen = make_scenarios(cfg, seeds, mesh=None)
    res = train_population(cfg, tcfg, seeds, hypers, progress=False, subs=scen.sub,
                           train_reqs=scen.train)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a, np.asarray(b)),
                           params, res.params)
    assert np.asarray(curves.ar).shape == (3, 2, 2, 2)  # seeds, settings, epochs, batches
    for name in ("ar", "acr", "rc", "objective"):
        np.testing.assert_array_equal(getattr(curves, name),
                                      np.asarray(getattr(res.curves, name)))
    first = np.asarray(jax.tree_util.tree_leaves(params)[0])
    assert not np.array_equal(first[:, 0], first[:, 1])  # the settings differ
    m = evaluate_grid(tcfg, res.params, scen.sub, scen.test, seeds).metrics
    for name in ("ar", "acr", "rc", "rc_link"):
        ref = np.asarray(getattr(m, name))  # [S, H, R]
        np.testing.assert_array_equal(getattr(summary.final, name), ref[..., -1])
        for j in range(2):
            np.testing.assert_array_equal(
                getattr(summary.curves, name)[:, j].astype(np.float64),
                on_time_grid(np.asarray(m.time)[:, j], ref[:, j], grid.astype(np.float64)))
    one = train_seeds(cfg, tcfg, seeds, grid, lr=0.01, chunk=2, mesh=None)  # one setting
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a, b[:, :1]),
                           one, (params, curves, summary))


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--algo", "nrmvne", "--seeds", "5:2", "--out", "{d}"], "A < B"),
    (["evaluate", "--algo", "nrmvne", "--seeds", "ten", "--out", "{d}"], "N or A:B"),
    (["evaluate", "--algo", "nrmvne", "--seeds", "4"], "--out"),
    (["evaluate", "--algo", "ddrl-nra", "--seeds", "4", "--out", "{d}"], "--checkpoint"),
    (["evaluate", "--algo", "nrmvne", "--out", "{d}"], "--seeds"),
    (["evaluate", "--algo", "nrmvne", "--seeds", "4", "--out", "{d}", "--chunk", "0"],
     "--chunk"),
    (["train", "--algo", "ddrl-nra", "--seeds", "4", "--seed", "3", "--out", "{d}"],
     "leave them out"),
    (["train", "--algo", "ddrl-nra", "--resume", "--out", "{d}/a.ckpt"], "--seeds"),
])
def test_seed_sweep_flags_fail_in_one_line(tmp_path, capsys, argv, message):
    from sagin_jax.cli import main
    assert main([a.replace("{d}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_chunk_program_lowers_for_cuda_with_the_kernel():
    """On a GPU the runner's test pass is the Pallas kernel: the chunk program, lowered for CUDA
    on this CPU machine, holds one Triton call (and raises if any primitive cannot lower)."""
    import jax.numpy as jnp
    from sagin_jax.devices.seed_axis import seed_key_data
    from sagin_jax.kernels.cost import cuda_cost
    from sagin_jax.scenario.plan import make_plan, plan_params
    from sagin_jax.simulation.stream import evaluate_chunk, generate_chunk
    plan, prm = make_plan(CFG), jax.tree_util.tree_map(jnp.asarray, plan_params(CFG))
    keys = jnp.asarray(seed_key_data(SEEDS))
    scen = jax.eval_shape(lambda p, k: generate_chunk(p, k, plan=plan, n_train=0,
                                                      n_test=CFG.n_test), prm, keys)
    cost = cuda_cost(lambda k, s, r, g: evaluate_chunk(
        k, s, r, None, g, policy=BASELINES["nrmvne"], max_active=16, strategy="kernel",
        interpret=False),
        keys, scen.sub, scen.test, jnp.asarray(default_time_grid(CFG, POINTS)))
    assert cost["pallas_calls"] == 1, cost


def test_per_seed_rows_read_back_exactly_one_row_or_many(tmp_path):
    """``read_per_seed`` gives each column by its header name, the written decimals exactly,
    for one row (no 1-D collapse) and for several."""
    from sagin_jax.experiments.evaluate import read_per_seed
    f = tmp_path / "per_seed.csv"
    f.write_text("seed,AR,accepted\n7,5313.1435546875,426\n")
    got = read_per_seed(f)
    assert list(got) == ["seed", "AR", "accepted"]
    assert got["seed"].tolist() == [7.0] and got["AR"].tolist() == [5313.1435546875]
    f.write_text("seed,AR,accepted\n7,0.1,1\n8,0.30000000000000004,2\n4294967295,1e-07,3\n")
    got = read_per_seed(f)
    assert got["seed"].tolist() == [7.0, 8.0, 4294967295.0]
    assert got["AR"].tolist() == [0.1, 0.30000000000000004, 1e-07]
    assert got["accepted"].tolist() == [1.0, 2.0, 3.0]


def test_padding_caps_and_resize_follow_what_the_seeds_use():
    """Hand-worked sizes: caps round the links used up to 32 and the neighbour-list width up to
    4, never past the static bounds; a chunk dispatched with caps or a table its seeds outgrow
    must run again (caps and table grow to hold it, and never shrink), and one that fits must
    not."""
    from sagin_jax.scenario.generate import Bounds, padding_caps
    from sagin_jax.simulation.stream import ChunkedRun
    assert padding_caps(384, 16, Bounds(466, 28)) == (384, 16)
    assert padding_caps(385, 17, Bounds(466, 28)) == (416, 20)
    assert padding_caps(460, 27, Bounds(466, 28)) == (466, 28)
    assert padding_caps(0, 0, Bounds(466, 28)) == (32, 4)
    run = ChunkedRun.__new__(ChunkedRun)  # the sizing state alone, no program
    run.table, run.caps, run.bounds = 32, (64, 8), Bounds(466, 28)

    def chunk(edges, degree, need):  # two real seeds and a padding one that uses more
        return SimpleNamespace(used=np.array([[edges, degree], [1, 1], [999, 99]]),
                               need=np.array([need, 1, 999]))
    assert not run.resize(chunk(64, 8, 32), 2, run.sizes())
    assert (run.table, run.caps) == (32, (64, 8))
    assert run.resize(chunk(64, 8, 33), 2, (32, (64, 8)))
    assert (run.table, run.caps) == (48, (64, 8))
    assert run.resize(chunk(65, 8, 1), 2, (48, (64, 8)))
    assert (run.table, run.caps) == (48, (96, 8))
    assert run.resize(chunk(64, 9, 1), 2, (48, (64, 8)))  # dispatched before the growth
    assert (run.table, run.caps) == (48, (96, 12))
    assert not run.resize(chunk(96, 12, 48), 2, run.sizes())
    run.caps = None  # the static bounds: anything fits
    assert not run.resize(chunk(400, 28, 40), 2, run.sizes())


def test_cut_padding_keeps_every_number_and_a_cut_below_the_links_used_does_not():
    """``simulate`` on substrates cut to exactly the links and neighbour-list width their seeds
    use (the tightest cut ``padding_caps`` can give) has the uncut substrates' outcome bit for
    bit; cutting one real link more changes it (the check is not vacuous)."""
    from sagin_jax.scenario.generate import cut_padding
    scen = make_scenarios(CFG, SEEDS[:2], mesh=None)
    sub = scen.sub
    used_e = int(np.asarray(sub.edge_mask).sum(-1).max())
    used_k = int((np.asarray(sub.nbr_node) >= 0).sum(-1).max())
    assert used_e < sub.n_edges and used_k < sub.nbr_node.shape[-1]  # there is padding to cut

    def run(s):
        _, out = simulate_seeds(BASELINES["nrmvne"], None, SEEDS[:2], s, scen.test)
        return np.asarray(out.accepted), np.asarray(out.hosts)
    full = run(sub)
    for a, b in zip(full, run(cut_padding(sub, used_e, used_k))):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b)
                   for a, b in zip(full, run(cut_padding(sub, used_e - 1, used_k))))
