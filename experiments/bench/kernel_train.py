"""Time one REINFORCE training epoch per request-step strategy on this backend, and check that the
strategies train alike; one JSON line per (seed width, strategy), then the training kernel's CUDA
cost proxy per batch (``sagin_jax.kernels.bench.training_batch_cost``).

    python experiments/bench/kernel_train.py --widths 1,16384 --requests 1000 --batch 100 \
        --strategies kernel,batched

Each line: compile plus first epoch (s), a second epoch from the same start (s), requests per
second over all seeds, and against the first strategy: the same curves (AR, ACR, R/C at every
batch end) and the largest parameter difference.
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from sagin_jax.config import ScenarioConfig
from sagin_jax.kernels.bench import training_batch_cost
from sagin_jax.simulation.batch import make_requests, make_substrates, seed_keys, table_size
from sagin_jax.simulation.online import STRATEGIES
from sagin_jax.training.config import TrainConfig
from sagin_jax.training.reinforce import make_train


def time_epochs(widths, n_train, batch, strategies, algo):
    cfg, tcfg = ScenarioConfig(n_train=n_train), TrainConfig(algo=algo, epochs=1, batch_size=batch)
    for s in widths:
        seeds = list(range(s))
        subs, reqs = make_substrates(cfg, seeds), make_requests(cfg, seeds, "train")
        a, keys = table_size(reqs), seed_keys(seeds)
        first = None
        for strategy in strategies:
            trainer = make_train(tcfg, n_train, a, strategy=strategy)
            init = jax.jit(jax.vmap(lambda k, sb, tr=trainer: tr.init(k, 0.01, sb)))
            epoch = jax.jit(jax.vmap(trainer.epoch))
            t = time.perf_counter()
            jax.block_until_ready(epoch(init(keys, subs), subs, reqs))
            c = time.perf_counter() - t
            carry = jax.block_until_ready(init(keys, subs))
            t = time.perf_counter()
            carry, curves = jax.block_until_ready(epoch(carry, subs, reqs))
            r = time.perf_counter() - t
            mine = ([np.asarray(x) for x in (curves.ar, curves.acr, curves.rc)],
                    [np.asarray(x) for x in jax.tree_util.tree_leaves(carry.params)])
            first = mine if first is None else first
            print(json.dumps({
                "device": str(jax.devices()[0].device_kind), "algo": algo, "strategy": strategy,
                "seeds": s, "requests": n_train, "batch": batch,
                "compile_and_first_s": round(c, 3), "epoch_s": round(r, 4),
                "requests_per_s": round(s * n_train / r),
                "same_curves_as_first": all(np.array_equal(x, y)
                                            for x, y in zip(mine[0], first[0])),
                "max_param_diff_vs_first": max(float(np.abs(x - y).max())
                                               for x, y in zip(mine[1], first[1]))}), flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--widths", default="1", help="comma-separated seed counts")
    p.add_argument("--requests", type=int, default=1000, help="training requests per seed")
    p.add_argument("--batch", type=int, default=100, help="requests per REINFORCE batch")
    p.add_argument("--strategies", default="kernel,batched", help="comma-separated strategies")
    p.add_argument("--algo", default="ddrl-nra", choices=("ddrl-nra", "rlvne"))
    args = p.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",")]
    strategies = args.strategies.split(",")
    if any(x not in STRATEGIES for x in strategies) or args.requests % args.batch:
        p.error(f"--strategies must be among {STRATEGIES}; --batch must divide --requests")
    time_epochs(widths, args.requests, args.batch, strategies, args.algo)
    print(json.dumps({"cuda_module_of_kernel_training_batch":
                      training_batch_cost(batch=args.batch)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
