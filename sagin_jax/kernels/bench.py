"""Time the NRMVNE test pass with each request-step strategy on this backend, and check that the
strategies decide alike; one JSON line per (seed width, strategy), then the cost proxy of the
kernel's CUDA module (``kernels.cost``).

    python -m sagin_jax.kernels.bench --widths 1,16384 --requests 1000 --strategies kernel,batched

Each line: compile plus first call (s), a second call (s), µs per request of one seed, requests
per second over all seeds, accepted requests, and whether every decision (accepted, hosts,
revenue, cost) equals the first strategy's at that width. ``--train-cost`` adds the cost proxy of
one REINFORCE training batch (``kernels.train.kernel_batch``, DDRL-NRA) per seed; the training
epoch's timing is ``experiments/bench/kernel_train.py``, which prints that proxy too.
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from sagin_jax.config import ScenarioConfig
from sagin_jax.kernels.cost import cuda_cost
from sagin_jax.kernels.simulate import simulate_kernel
from sagin_jax.kernels.train import batch_dims, init_carry, kernel_batch
from sagin_jax.policies.baselines import NRMVNE
from sagin_jax.policies.ddrl import init_ddrl_params, make_ddrl_policy
from sagin_jax.simulation.batch import (make_requests, make_substrates, seed_keys,
                                        simulate_batch, table_size)
from sagin_jax.simulation.online import STRATEGIES


def decisions(out) -> list[np.ndarray]:
    return [np.asarray(x) for x in (out.accepted, out.hosts, out.value.revenue, out.value.cost)]


def time_strategies(widths: list[int], n_requests: int, strategies: list[str]) -> list[dict]:
    cfg = ScenarioConfig(n_test=n_requests)
    rows = []
    for s in widths:
        seeds = list(range(s))
        subs, reqs = make_substrates(cfg, seeds), make_requests(cfg, seeds, "test")
        a, keys = table_size(reqs), seed_keys(seeds)
        first = None
        for strategy in strategies:
            fn = jax.jit(lambda k, sb, rq, st=strategy: simulate_batch(
                NRMVNE, None, k, sb, rq, max_active=a, strategy=st))
            t = time.perf_counter()
            jax.block_until_ready(fn(keys, subs, reqs))
            c = time.perf_counter() - t
            t = time.perf_counter()
            _, out = jax.block_until_ready(fn(keys, subs, reqs))
            r = time.perf_counter() - t
            mine = decisions(out)
            first = mine if first is None else first
            row = {"device": str(jax.devices()[0].device_kind), "strategy": strategy, "seeds": s,
                   "requests": n_requests, "compile_and_first_s": round(c, 3),
                   "run_s": round(r, 4), "us_per_request": round(r / n_requests * 1e6, 2),
                   "requests_per_s": round(s * n_requests / r),
                   "accepted": int(mine[0].sum()),
                   "same_decisions_as_first": all(np.array_equal(x, y)
                                                  for x, y in zip(mine, first))}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def training_batch_cost(seeds=(0, 1), batch: int = 100) -> dict[str, int]:
    """``cuda_cost`` of one REINFORCE batch of ``batch`` requests per seed with the training kernel
    (DDRL-NRA sampled, from an empty network): the kernel call and the XLA scan over its outcome
    rows; the optax update between calls adds no loop (``make_train``'s whole epoch lowers to the
    same kernel call inside the scan over batches, tests/test_kernel_train.py)."""
    cfg = ScenarioConfig(n_train=batch)
    seeds = list(seeds)
    subs, reqs = make_substrates(cfg, seeds), make_requests(cfg, seeds, "train")
    a, policy = table_size(reqs), make_ddrl_policy(False)
    params = init_ddrl_params(jax.random.PRNGKey(0), subs.n_domains)

    def one_batch(params, keys, subs, reqs):
        def per_seed(k, s, q):
            return kernel_batch(policy, params, k, s, q, init_carry(s, batch_dims(s, q, a)), a)
        return jax.vmap(per_seed)(keys, subs, reqs)

    return cuda_cost(one_batch, params, seed_keys(seeds), subs, reqs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sagin_jax.kernels.bench", description=__doc__)
    p.add_argument("--widths", default="1", help="comma-separated seed counts")
    p.add_argument("--requests", type=int, default=1000, help="test requests per seed")
    p.add_argument("--strategies", default="kernel,batched", help="comma-separated strategies")
    p.add_argument("--train-cost", action="store_true",
                   help="also the CUDA module cost of one training batch")
    args = p.parse_args(argv)
    try:
        widths = [int(w) for w in args.widths.split(",")]
    except ValueError:
        p.error(f"--widths must be comma-separated integers, got {args.widths!r}")
    strategies = args.strategies.split(",")
    bad = [x for x in strategies if x not in STRATEGIES]
    if bad or min(widths) < 1 or args.requests < 1:
        p.error(f"--strategies must be among {STRATEGIES} and --widths, --requests >= 1")
    time_strategies(widths, args.requests, strategies)
    cfg = ScenarioConfig(n_test=args.requests)
    subs, reqs = make_substrates(cfg, [0, 1]), make_requests(cfg, [0, 1], "test")
    cost = cuda_cost(lambda k, s, r: simulate_kernel(NRMVNE, None, k, s, r, table_size(reqs)),
                     seed_keys([0, 1]), subs, reqs)
    print(json.dumps({"cuda_module_of_kernel_pass": cost}), flush=True)
    if args.train_cost:
        print(json.dumps({"cuda_module_of_kernel_training_batch": training_batch_cost()}),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
