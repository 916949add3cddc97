#!/usr/bin/env bash
# Measurements on a lent GPU machine, each stage under its own time cap inside one
# deadline (DEADLINE seconds), so that a slow stage costs only itself; run from the repository
# root with the machine's own python3 and packages (PYTHONPATH, no install). Logs go to $OUT
# (default /tmp/gpu_out): env.txt and one .log per stage. SMOKE=1 shrinks every stage so the
# script can be checked on a CPU first, under a deadline of SMOKE_DEADLINE (900) seconds: the
# three kernel stages take several minutes of it on 2 shared cores, in Pallas interpret mode:
#   OUT=results/bench-gpu-h200 bash experiments/bench/gpu_session.sh
# Stages, in this order: the "kernel" strategy (sagin_jax.kernels.bench: NRMVNE test pass, 1
# seed and then 16,384 seeds, against the "batched" XLA step, decisions compared, and the kernel's
# CUDA module cost; caps CAP_KERNEL1, CAP_KERNELW, width KERNEL_WIDTH); reproduce --full cold
# (an empty compilation cache; the kernel strategy is the GPU default) and its CSVs against
# results/; a REINFORCE training epoch with the kernel strategy (experiments/bench/kernel_train.py:
# DDRL-NRA, 1 seed against "batched", then TRAIN_WIDTH seeds, curves and parameters compared,
# the training kernel's CUDA cost per batch; cap CAP_TRAIN, width TRAIN_WIDTH); the gymnax env
# against simulate (env.throughput.env_vs_simulate at ENV_WIDTHS environments; cap CAP_ENV); where a wide request step's time goes (gpu_profile.py: step time by seed width and by
# link window / BFS levels per trip, one width traced); bench --accelerator with
# gpu_fig4.json (the Fig. 4 grid), gpu_latency.json (1 seed, loop trips, 16,384 scenarios
# generated, training memory) and gpu_width.json (1,024-16,384 seeds); reproduce --full warm;
# the equivalence tests; the raw cost of one while_loop trip. Each stage's cap (CAP_PROFILE,
# CAP_REPRO, CAP_FIG4, CAP_LATENCY, CAP_WIDTH, CAP_WARM), the profile's widths and variants
# (PROFILE_WIDTHS, PROFILE_VARIANTS) and the latency and width configs (LATENCY_CONFIG,
# WIDTH_CONFIG) can be set from the environment, to fit what device time is left.
set -u
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONPATH=$PWD
O=${OUT:-/tmp/gpu_out}; mkdir -p "$O"
PY=${PY:-python3}; SMOKE=${SMOKE:-0}
DEADLINE=${DEADLINE:-530}; [ "$SMOKE" = 1 ] && DEADLINE=${SMOKE_DEADLINE:-900}  # interpret mode
FULL=--full; [ "$SMOKE" = 1 ] && FULL=""
SJ=("$PY" -m sagin_jax.cli)
stage() {  # stage NAME CAP_S CMD...: run CMD into $O/NAME.log for at most min(CAP, time left)
  local name=$1 cap=$2; shift 2
  local left=$((DEADLINE - SECONDS)); local t=$((cap < left ? cap : left))
  if [ "$t" -lt 15 ]; then echo "== $name skipped ($left s left)" | tee -a "$O/env.txt"; return; fi
  echo "== $name (cap $t s) starts at $SECONDS s" | tee -a "$O/env.txt"
  local t0=$SECONDS
  timeout -k 5 "$t" "$@" > "$O/$name.log" 2>&1
  echo "== $name rc=$? took $((SECONDS - t0)) s" | tee -a "$O/env.txt"
  tail -n 4 "$O/$name.log"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
  "$PY" -c "import sys, jax, jaxlib, flax, optax, chex, numpy, networkx; print(sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'chex', chex.__version__, 'numpy', numpy.__version__); print(jax.devices())"
  git log --oneline -1 2>/dev/null || true; } >> "$O/env.txt" 2>&1
cat "$O/env.txt"
A=${LATENCY_CONFIG:-experiments/bench/gpu_latency.json}; B=${WIDTH_CONFIG:-experiments/bench/gpu_width.json}
C=experiments/bench/gpu_fig4.json
if [ "$SMOKE" = 1 ]; then  # the same stages, shrunk
  S=$(mktemp -d); A=$S/a.json; B=$S/b.json; C=$S/c.json
  echo '{"seeds": [1], "loops": ["vmap"], "reference_seeds": 1, "speedup_seeds": 1, "speedup_loop": "vmap", "fig4": null, "trip_seeds": 1, "generation": {"seeds": 64, "chunk": 32, "numpy_seeds": 1}, "train_memory_seeds": [64]}' > $A
  echo '{"seeds": [2, 4], "loops": ["vmap"], "reference_seeds": 0, "fig4": null, "trip_seeds": 0, "generation": null, "train_memory_seeds": []}' > $B
  echo '{"seeds": [1], "loops": ["vmap"], "reference_seeds": 0, "trip_seeds": 0, "generation": null, "fig4": {"seeds": 2, "lrs": [0.005, 0.01], "epochs": 1, "loop": "vmap"}, "train_memory_seeds": []}' > $C
fi
# 0: the kernel strategy first (1 seed, then the 16,384-seed width), each against "batched"
KR=1000; KW=${KERNEL_WIDTH:-16384}; [ "$SMOKE" = 1 ] && KR=40 && KW=4
stage kernel_1seed ${CAP_KERNEL1:-90} "$PY" -m sagin_jax.kernels.bench --widths 1 --requests $KR \
  --strategies kernel,batched
stage kernel_width ${CAP_KERNELW:-120} "$PY" -m sagin_jax.kernels.bench --widths $KW --requests $KR \
  --strategies kernel
# 1: reproduce --full, cold (empty cache), then its CSVs against the committed CPU results
SAGIN_JAX_CACHE_DIR=/tmp/cc_repro stage repro_cold ${CAP_REPRO:-190} "${SJ[@]}" reproduce $FULL --out /tmp/rep
REF=results; [ "$SMOKE" = 1 ] && REF=/tmp/rep
"$PY" experiments/bench/compare_results.py /tmp/rep $REF >> "$O/repro_cold.log" 2>&1
grep -h "wall\|compiled" /tmp/rep/README.md | head -5 >> "$O/repro_cold.log" 2>&1
# 1b: one REINFORCE training epoch with the kernel strategy (1 seed against batched, then wide)
KT="$PY experiments/bench/kernel_train.py"
TRAIN="$KT --widths 1 --requests 1000 --batch 100 --strategies kernel,batched && $KT --widths \
${TRAIN_WIDTH:-16384} --requests 1000 --batch 100 --strategies kernel"
[ "$SMOKE" = 1 ] && TRAIN="$KT --widths 2 --requests 24 --batch 12 --strategies kernel,batched"
stage kernel_train ${CAP_TRAIN:-150} bash -c "$TRAIN"
# 1c: the gymnax env (batched layout) at 1,024 and 16,384 environments against simulate
EN=${ENV_WIDTHS:-1024 16384}; ES=64; [ "$SMOKE" = 1 ] && EN=8 && ES=4
stage env ${CAP_ENV:-100} "$PY" -c "
import json, sys
from sagin_jax.config import ScenarioConfig
from sagin_jax.env.throughput import env_vs_simulate
for n in map(int, sys.argv[1].split()):
    print(json.dumps(env_vs_simulate(ScenarioConfig(), n, int(sys.argv[2]))), flush=True)
" "$EN" $ES
# 2: where a wide request step's time goes (step time by seed width, one width traced)
W=${PROFILE_WIDTHS:-1 256 1024 4096}; TW=1024; VW=1024; [ "$SMOKE" = 1 ] && W="1 4" && TW=4 && VW=4
stage profile ${CAP_PROFILE:-120} "$PY" experiments/bench/gpu_profile.py --widths $W --requests 300 \
  --trace-width $TW ${PROFILE_VARIANTS:+--variants $PROFILE_VARIANTS} --variant-widths $VW --no-warmup \
  --out /tmp/gprof
cp /tmp/gprof/profile.txt "$O/profile.txt" 2>/dev/null
# 3: the Fig. 4 grid, 32 seeds x 4 learning rates x 10 epochs
SAGIN_JAX_CACHE_DIR=/tmp/cc_bench stage benchC ${CAP_FIG4:-80} "${SJ[@]}" bench --accelerator --config $C --out /tmp/bC
# 4: one-seed latency, trips, generation of 16,384 scenarios, training memory
SAGIN_JAX_CACHE_DIR=/tmp/cc_bench stage benchA ${CAP_LATENCY:-110} "${SJ[@]}" bench --accelerator --config $A --out /tmp/bA
# 5: seed width 1,024 / 4,096 / 16,384 (test passes and training)
SAGIN_JAX_CACHE_DIR=/tmp/cc_bench stage benchB ${CAP_WIDTH:-130} "${SJ[@]}" bench --accelerator --config $B --out /tmp/bB
# 6: reproduce --full warm (the same cache, now filled)
SAGIN_JAX_CACHE_DIR=/tmp/cc_repro stage repro_warm ${CAP_WARM:-90} "${SJ[@]}" reproduce $FULL --out /tmp/rep2
# 7: the kernel and equivalence tests on this backend, with what time is left
stage tests 200 "$PY" -m pytest -p no:cacheprovider -n 0 -x tests/test_kernel.py tests/test_equivalence.py
"$PY" - >> "$O/env.txt" 2>&1 <<'P'
import jax, time  # the raw cost of one while_loop trip on this backend (10,000 trivial trips)
f = jax.jit(lambda x: jax.lax.while_loop(lambda c: c[0] < 10000, lambda c: (c[0] + 1, c[1] * 1.0001), (0, x)))
x = jax.numpy.ones(()); f(x)[1].block_until_ready(); t = time.perf_counter(); f(x)[1].block_until_ready()
print("while_loop trip (us):", (time.perf_counter() - t) / 10000 * 1e6)
P
nvidia-smi --query-gpu=memory.used,clocks.sm --format=csv >> "$O/env.txt" 2>&1
echo "done at $SECONDS s" | tee -a "$O/env.txt"
