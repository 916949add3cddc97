"""Multi-device and multi-process sweeps give exactly the single-device results.

Each check runs in a fresh interpreter: the number of CPU devices is fixed when JAX starts
(``XLA_FLAGS=--xla_force_host_platform_device_count``), and ``jax.distributed`` needs one process
per rank.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env(devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("JAX_PLATFORMS", None)
    return env


def _python(code: str, devices: int, timeout: int = 240) -> str:
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=_env(devices),
                         capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


@pytest.mark.slow
def test_four_device_mesh_simulation_and_training_equal_single_device():
    """One interpreter with 4 CPU devices (its scenarios generated once for both checks)."""
    out = _python("""
        import jax, numpy as np
        from sagin_jax.compilation import CompileCounter
        from sagin_jax.config import small_config
        from sagin_jax.policies.baselines import NRMVNE
        from sagin_jax.devices import sharding
        from sagin_jax.simulation.batch import make_requests, make_substrates, simulate_seeds
        from sagin_jax.devices.seed_axis import run_index, seed_keys, take_runs
        from sagin_jax.training.config import TrainConfig
        from sagin_jax.training.run import train_grid
        assert jax.device_count() == 4, jax.devices()
        cfg, mesh = small_config(), sharding.seed_mesh()

        # simulation: per-device seed loops (shard_map + lax.map) and a sharded vmap equal the
        # single-device vmap; 6 seeds are padded to 8 over the 4 devices
        s6 = list(range(6))
        sb, rq = make_substrates(cfg, s6), make_requests(cfg, s6, "test")

        # generation: each of the 4 devices generates its own block of seeds (6 padded to 8),
        # and the scenarios are bit-identical to one device generating all of them
        from sagin_jax.scenario import generate as G
        assert G._generation_mesh("local").devices.size == 4
        four = G.make_scenarios(cfg, s6)
        one = G.make_scenarios(cfg, s6, mesh=None)
        for x, y in zip(jax.tree_util.tree_leaves(four), jax.tree_util.tree_leaves(one)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        t = G.time_generation(cfg, 8, chunk=6)
        assert (t["devices"], t["chunk"], t["n_seeds"]) == (4, 8, 8), t
        # placing generated scenarios (arrays on one device) on the mesh compiles nothing
        with CompileCounter() as cc:
            placed = take_runs((seed_keys(s6), sb, rq), run_index(6, mesh), mesh)
        assert cc.stats.compiled + cc.stats.cache_hits == 0, cc.stats
        assert len(placed[1].cpu.sharding.device_set) == 4
        base = simulate_seeds(NRMVNE, None, s6, sb, rq, seed_loop="vmap")
        for loop in ("map", "vmap"):
            other = simulate_seeds(NRMVNE, None, s6, sb, rq, seed_loop=loop, mesh=mesh)
            for x, y in zip(jax.tree_util.tree_leaves(base), jax.tree_util.tree_leaves(other)):
                np.testing.assert_array_equal(x, y)
        print("accepted", int(np.asarray(base[1].accepted).sum()))

        # training: 3 seeds x 2 rates = 6 runs, padded to 8 over the 4 devices, per-device seed
        # loops (shard_map + lax.map, the CPU default). The learning curves are identical; the
        # trained parameters differ from one device's vmap in the last float bits (<= 3e-8
        # here): XLA CPU compiles the per-device program's small loops as one function each
        # (sagin_jax.SMALL_LOOP_BYTES) and rounds a few gradient sums differently there.
        tcfg = TrainConfig(epochs=2, batch_size=20)
        g1 = train_grid(cfg, tcfg, [0, 1, 2], [0.005, 0.05], progress=False, seed_loop="vmap")
        g4 = train_grid(cfg, tcfg, [0, 1, 2], [0.005, 0.05], progress=False, mesh=mesh,
                        seed_loop="map")
        for x, y in zip(jax.tree_util.tree_leaves(g4.curves),
                        jax.tree_util.tree_leaves(g1.curves)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree_util.tree_leaves(g4.params),
                        jax.tree_util.tree_leaves(g1.params)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
        assert not np.allclose(np.asarray(jax.tree_util.tree_leaves(g1.params)[0][:, 0]),
                               np.asarray(jax.tree_util.tree_leaves(g1.params)[0][:, 1]))
        print("trained", len(jax.tree_util.tree_leaves(g4.params)))
    """, devices=4)
    lines = dict(line.split() for line in out.split("\n") if line.startswith(("accepted",
                                                                             "trained")))
    assert int(lines["accepted"]) > 0 and int(lines["trained"]) > 0


@pytest.mark.slow
def test_two_device_sweep_gives_the_single_device_trials(tmp_path):
    """The sweep's population sharded over 2 devices (``--host-devices 2``) asks, prunes and
    scores the same trials as on one device (this process), a refill included (3 trials in 2
    slots)."""
    from tests.test_sweep import _refill_sweep, _trials
    from sagin_jax.experiments.sweep.population import Population
    from sagin_jax.experiments.sweep.study import run_study
    from sagin_jax.training.config import TrainConfig
    sw = _refill_sweep()  # 2 seeds x 2 slots: 4 runs, 2 per device
    tcfg = TrainConfig.from_dict({**sw["train"], "algo": "ddrl-nra"})
    pop = Population(sw["scenario"], tcfg, sw["train_seeds"], sw["batch"], mesh=None)
    one = _trials(run_study(sw, "ddrl-nra", tmp_path / "one", ("trials", 3), False, False, pop))
    assert len(one) == 3
    out = _python(f"""
        import jax, json
        from tests.test_sweep import _refill_sweep, _trials
        from sagin_jax.experiments.sweep.population import Population
        from sagin_jax.experiments.sweep.study import run_study
        from sagin_jax.training.config import TrainConfig
        assert jax.device_count() == 2, jax.devices()
        sw = _refill_sweep()
        tcfg = TrainConfig.from_dict({{**sw["train"], "algo": "ddrl-nra"}})
        pop = Population(sw["scenario"], tcfg, sw["train_seeds"], sw["batch"])
        assert pop.mesh is not None and pop.mesh.devices.size == 2
        study = run_study(sw, "ddrl-nra", {str(tmp_path / "two")!r}, ("trials", 3), False,
                          False, pop)
        print(json.dumps(_trials(study)))
    """, devices=2)
    assert json.loads(out.strip().splitlines()[-1]) == json.loads(json.dumps(one))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_with_jax_distributed_equal_one(tmp_path):
    port = _free_port()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "sagin_jax.experiments.multihost", "--seeds", "8",
         "--num-processes", "2", "--process-id", str(i), "--coordinator", f"127.0.0.1:{port}",
         "--out", str(tmp_path / f"part{i}.npz")],
        env=_env(2), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)]
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=240)[0])
        finally:
            p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    parts = [np.load(tmp_path / f"part{i}.npz") for i in range(2)]
    assert [int(p["start"]) for p in parts] == [0, 4]
    # the same sweep in this process, on its one device
    from sagin_jax.experiments.multihost import run
    assert jax.device_count() == 1
    (acc, rev, ar), _ = run(8)
    ref = {"accepted": acc, "revenue": rev, "ar": ar}
    for key in ("accepted", "revenue", "ar"):
        joined = np.concatenate([p[key] for p in parts])
        np.testing.assert_array_equal(joined, ref[key])
    assert ref["accepted"].sum() > 0
