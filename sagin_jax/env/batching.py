"""``cond_rows``: a per-environment ``lax.cond`` that stays sparse under ``vmap``.

Under ``vmap`` a ``lax.cond`` on a batched predicate runs both branches for every environment
and selects between them, and a ``while_loop`` selects its whole carry at every trip. The env's
rare transitions (a request's commit, the start of the next request, a rejection without asking
the agent, an auto-reset) would then cost every environment the work of the few that take them.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp


def broadcast_unbatched(tree, batched, size: int):
    """``tree`` with each leaf that a batching rule received unbatched (``batched`` False)
    broadcast to a leading axis of ``size``."""
    return jax.tree_util.tree_map(
        lambda x, b: x if b else jnp.broadcast_to(x, (size,) + jnp.shape(x)), tree, batched)


def cond_rows(fn: Callable[[Any, Any], Any], pred: jax.Array, consts, carry):
    """``fn(consts, carry)`` where ``pred``, else ``carry`` (``fn`` keeps ``carry``'s
    structure and types).

    Alone this is ``lax.cond``. Under ``vmap`` ``fn`` runs only for the rows where ``pred``
    holds, one after another (a loop over their indices), each on its own row of ``consts`` and
    ``carry``, and its result is written back to that row in place; unbatched ``consts`` are
    read as they are, never broadcast. The cost is that of the rows taking the branch. Under
    nested ``vmap`` (seeds of environments) the outer one batches that loop as any other.

    ``fn`` must take every traced value it reads through ``consts``: a ``custom_vmap``
    function cannot close over values traced outside it.
    """

    @jax.custom_batching.custom_vmap
    def run(pred, consts, carry):
        return jax.lax.cond(pred, fn, lambda _, c: c, consts, carry)

    @run.def_vmap
    def _rows(axis_size, in_batched, pred, consts, carry):
        pred_b, consts_b, carry_b = in_batched
        if not pred_b:
            pred = jnp.broadcast_to(pred, (axis_size,))
        carry = broadcast_unbatched(carry, carry_b, axis_size)
        todo = jnp.nonzero(pred, size=axis_size, fill_value=0)[0]

        def body(k, carry):
            i = todo[k]
            row = lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False)  # noqa: E731
            mine = jax.tree_util.tree_map(lambda x, b: row(x) if b else x, consts, consts_b)
            new = fn(mine, jax.tree_util.tree_map(row, carry))
            return jax.tree_util.tree_map(
                lambda x, y: jax.lax.dynamic_update_index_in_dim(x, y, i, 0), carry, new)

        carry = jax.lax.fori_loop(0, pred.sum(dtype=jnp.int32), body, carry)
        return carry, jax.tree_util.tree_map(lambda _: True, carry)

    return run(pred, consts, carry)
