"""Where a wide request step spends its time on this backend: the NRMVNE test pass
(``vmap`` over seeds, the backend's default request step) timed at several seed widths, then
one width traced with ``jax.profiler`` and its events summed by name, each XLA op name followed
by the source lines its HLO metadata names.

    python experiments/bench/gpu_profile.py --widths 1 256 1024 4096 --requests 300 \
        --trace-width 1024 --out /tmp/prof

Prints one ``window=... levels_per_trip=... width=... step_ms=... us_per_seed_request=...``
line per variant and width (``--variants 8:2``: other link windows and BFS levels per trip) and
writes
``OUT/profile.txt`` (the top events per trace process). Run on a CPU with small widths to check
it before GPU time is spent on it.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import time
from pathlib import Path

import jax

from sagin_jax.config import PAPER
from sagin_jax.embedding import batched
from sagin_jax.policies.baselines import BASELINES
from sagin_jax.simulation.batch import make_requests, make_substrates, simulate_batch, table_size
from sagin_jax.simulation.online import trips_per_request
from sagin_jax.devices.seed_axis import seed_keys


def _program(width: int, n_requests: int, strategy: str | None):
    cfg = PAPER.replace(n_test=n_requests)
    seeds = list(range(width))
    subs, reqs = make_substrates(cfg, seeds), make_requests(cfg, seeds, "test")
    a = table_size(reqs)
    fn = jax.jit(lambda k, sb, rq: simulate_batch(BASELINES["nrmvne"], None, k, sb, rq,
                                                  max_active=a, seed_loop="vmap",
                                                  strategy=strategy))
    args = (seed_keys(seeds), subs, reqs)
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, args, time.perf_counter() - t0


def _metadata(hlo_text: str) -> dict[str, str]:
    """HLO instruction name -> 'op_name @ file:line' from the compiled module's metadata."""
    out = {}
    for line in hlo_text.splitlines():
        m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = .*metadata=\{([^}]*)\}", line)
        if not m:
            continue
        meta = m.group(2)
        op = re.search(r'op_name="([^"]*)"', meta)
        src = re.search(r'source_file="([^"]*)" source_line=(\d+)', meta)
        text = (op.group(1)[-90:] if op else "")
        if src:
            text += f" @ {Path(src.group(1)).name}:{src.group(2)}"
        out[m.group(1)] = text
    return out


def _summarise(trace_dir: str, calls: int, meta: dict[str, str], top: int) -> str:
    files = sorted(glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True))
    if not files:
        return "no trace written\n"
    doc = json.load(gzip.open(files[-1]))
    events = doc["traceEvents"] if isinstance(doc, dict) else doc
    procs = {e["pid"]: e["args"].get("name", "") for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name"}
    total = collections.defaultdict(collections.Counter)
    count = collections.defaultdict(collections.Counter)
    for e in events:
        if e.get("ph") == "X":
            total[e["pid"]][e["name"]] += e.get("dur", 0)
            count[e["pid"]][e["name"]] += 1
    lines = []
    for pid, tot in sorted(total.items(), key=lambda kv: -sum(kv[1].values())):
        lines.append(f"== process {procs.get(pid, pid)}: {sum(tot.values()) / calls / 1e3:.1f} ms "
                     f"of events per call, {sum(count[pid].values()) // calls} events per call")
        for name, us in tot.most_common(top):
            base = name.split(":")[0].strip()
            lines.append(f"{us / calls / 1e3:9.2f} ms  n={count[pid][name] // calls:6d}  "
                         f"{name[:60]}  {meta.get(base, '')}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[1, 256, 1024])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--trace-width", type=int, default=1024, help="0: no trace")
    ap.add_argument("--strategy", default=None, help="sequential or batched (default: backend's)")
    ap.add_argument("--variants", nargs="+", default=[],
                    help="WINDOW:LEVELS pairs (embedding.batched.LINK_WINDOW and "
                         "BFS_LEVELS_PER_TRIP) to time at every width, after the defaults")
    ap.add_argument("--variant-widths", type=int, nargs="+", default=None,
                    help="the widths the variants run at (default: --widths)")
    ap.add_argument("--no-warmup", action="store_true",
                    help="time the first call after compiling (half the device time per width)")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--out", default="/tmp/gpu_profile")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    print("devices:", jax.devices(), flush=True)
    default = (batched.LINK_WINDOW, batched.BFS_LEVELS_PER_TRIP)
    variants = [default] + [tuple(int(x) for x in v.split(":")) for v in a.variants]
    runs = [(default, w) for w in a.widths] + [(v, w) for v in variants[1:]
                                               for w in (a.variant_widths or a.widths)]
    for variant, w in runs:
        batched.LINK_WINDOW, batched.BFS_LEVELS_PER_TRIP = variant  # read when tracing,
        jax.clear_caches()  # so no jit cache may hand back a program traced with other values
        compiled, args, compile_s = _program(w, a.requests, a.strategy)
        if not a.no_warmup:
            jax.block_until_ready(compiled(*args))
        t0 = time.perf_counter()
        _, outcome = jax.block_until_ready(compiled(*args))
        run_s = time.perf_counter() - t0
        mean, most = trips_per_request(outcome)
        print(f"window={variant[0]} levels_per_trip={variant[1]} width={w} "
              f"requests={a.requests} compile_s={compile_s:.2f} run_s={run_s:.3f} "
              f"step_ms={run_s / a.requests * 1e3:.3f} "
              f"us_per_seed_request={run_s / a.requests / w * 1e6:.2f} "
              f"requests_per_s={w * a.requests / run_s:.4g} "
              f"trips_mean={mean:.2f} trips_max={most}", flush=True)
        if w == a.trace_width and variant == default:
            trace = str(out / "trace")
            jax.profiler.start_trace(trace, create_perfetto_trace=True)
            jax.block_until_ready(compiled(*args))
            jax.profiler.stop_trace()
            text = _summarise(trace, 1, _metadata(compiled.as_text()), a.top)
            (out / "profile.txt").write_text(text)
            print(text[:6000], flush=True)


if __name__ == "__main__":
    main()
