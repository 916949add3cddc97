"""Multi-device and multi-process sweeps give exactly the single-device results.

Each check runs in a fresh interpreter: the number of CPU devices is fixed when JAX starts
(``XLA_FLAGS=--xla_force_host_platform_device_count``), and ``jax.distributed`` needs one process
per rank.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

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


def test_four_device_mesh_simulation_equals_single_device():
    out = _python("""
        import jax, numpy as np
        from sagin_jax.config import small_config
        from sagin_jax.policies.baselines import NRMVNE
        from sagin_jax.simulation import sharding
        from sagin_jax.simulation.batch import make_requests, make_substrates, simulate_seeds
        assert jax.device_count() == 4, jax.devices()
        cfg, mesh = small_config(), sharding.seed_mesh()
        # per-device seed loops (shard_map + lax.map) and a sharded vmap equal the single-device
        # vmap; 6 seeds are padded to 8 over the 4 devices
        s6 = list(range(6))
        sb, rq = make_substrates(cfg, s6), make_requests(cfg, s6, "test")
        # placing generated scenarios (arrays on one device) on the mesh compiles nothing
        from sagin_jax.compilation import CompileCounter
        from sagin_jax.simulation.seed_axis import run_index, seed_keys, take_runs
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
    """, devices=4)
    assert int(out.split()[-1]) > 0


def test_four_device_mesh_training_equals_single_device():
    _python("""
        import jax, numpy as np
        from sagin_jax.config import small_config
        from sagin_jax.simulation import sharding
        from sagin_jax.training.config import TrainConfig
        from sagin_jax.training.run import train_grid
        assert jax.device_count() == 4, jax.devices()
        cfg, mesh = small_config(), sharding.seed_mesh()
        # 3 seeds x 2 rates = 6 runs, padded to 8 over the 4 devices, per-device seed loops
        # (shard_map + lax.map, the CPU default). The learning curves are identical; the trained
        # parameters differ from one device's vmap in the last float bits (<= 3e-8 here): XLA
        # CPU compiles the per-device program's small loops as one function each
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
    """, devices=4)


def test_two_device_sweep_gives_the_single_device_trials(tmp_path):
    """The sweep's population sharded over 2 devices (``--host-devices 2``) asks, prunes and
    scores the same trials as on one device, a refill included (3 trials in 2 slots)."""
    out = _python(f"""
        import jax, numpy as np
        from tests.test_sweep import _refill_sweep, _trials
        from sagin_jax.experiments import sweep as sweep_mod
        from sagin_jax.training.config import TrainConfig
        assert jax.device_count() == 2, jax.devices()
        sw = _refill_sweep(train_seeds=[0, 1, 2])  # 3 seeds x 2 slots: 6 runs over 2 devices
        tcfg = TrainConfig.from_dict({{**sw["train"], "algo": "ddrl-nra"}})
        runs = {{}}
        for name, mesh in (("one", None), ("two", "default")):
            pop = sweep_mod.Population(sw["scenario"], tcfg, sw["train_seeds"], sw["batch"],
                                       mesh=mesh)
            assert (pop.mesh is None) == (name == "one")
            study = sweep_mod.run_study(sw, "ddrl-nra", {str(tmp_path)!r} + "/" + name,
                                        ("trials", 3), False, False, pop)
            runs[name] = _trials(study)
        assert len(runs["one"]) == 3 and runs["one"] == runs["two"], runs
        print("trials", len(runs["two"]))
    """, devices=2)
    assert out.split()[-1] == "3"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    # the same sweep in one process on one device
    single = _python(f"""
        import numpy as np
        from sagin_jax.experiments.multihost import run
        (acc, rev, ar), _ = run(8)
        np.savez({str(tmp_path / 'single.npz')!r}, accepted=acc, revenue=rev, ar=ar)
    """, devices=1)
    del single
    ref = np.load(tmp_path / "single.npz")
    for key in ("accepted", "revenue", "ar"):
        joined = np.concatenate([p[key] for p in parts])
        np.testing.assert_array_equal(joined, ref[key])
    assert ref["accepted"].sum() > 0
