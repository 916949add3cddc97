"""``python -m sagin_jax.experiments.sweep [N_CONFIGS] [SLOTS]``: the sweep's small bench."""
from sagin_jax.experiments.sweep.bench import main_bench

raise SystemExit(main_bench())
