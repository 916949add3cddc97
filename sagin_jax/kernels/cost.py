"""A CPU-side cost proxy for a GPU program: what its lowered CUDA module launches.

On a GPU every data-dependent XLA ``while`` trip copies its predicate to the host and blocks,
and every Pallas call is one kernel launch, so the counts of both in the module lowered for
CUDA (possible on a machine without a GPU) say how a program will behave there before it runs.
"""
from __future__ import annotations

import jax

TRITON_CALL = "__gpu$xla.gpu.triton"


def cuda_cost(fn, *args) -> dict[str, int]:
    """{"pallas_calls": Triton kernel calls, "while_loops": XLA while loops} in ``fn(*args)``
    lowered for CUDA (raises if a kernel uses a primitive Triton cannot lower)."""
    text = jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",)).as_text()
    return {"pallas_calls": text.count(TRITON_CALL), "while_loops": text.count("stablehlo.while")}
