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


@jax.tree_util.register_pytree_node_class
class RowView:
    """Row ``row`` of a batched [B, ...] array, read only where it is indexed (``view[a]`` is
    ``table[row, a]``): no copy of the row is made. A pytree, so it can pass through loops."""

    def __init__(self, table: jax.Array, row: jax.Array):
        self.table, self.row = table, row

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        return self.table[(self.row,) + index]

    def tree_flatten(self):
        return (self.table, self.row), None

    @classmethod
    def tree_unflatten(cls, _, children):
        return cls(*children)


def batch_index(x, i, *index):
    """``x[i, *index]`` for a leaf that a batching rule received with a leading batch axis. A
    ``RowView`` arrives there with that axis on both its table and its row (a rule entered from
    inside ``cond_rows`` under an outer ``vmap``): its batch element ``i`` is read in place."""
    if isinstance(x, RowView):
        return x.table[(i, x.row[i]) + index]
    return x[(i,) + index]


def broadcast_unbatched(tree, batched, size: int):
    """``tree`` with each leaf that a batching rule received unbatched (``batched`` False)
    broadcast to a leading axis of ``size``."""
    return jax.tree_util.tree_map(
        lambda x, b: x if b else jnp.broadcast_to(x, (size,) + jnp.shape(x)), tree, batched)


def cond_rows(fn: Callable[..., Any], pred: jax.Array, consts, carry, indexed=None):
    """``fn(consts, carry)`` where ``pred``, else ``carry`` (``fn`` keeps ``carry``'s
    structure and types); ``fn(consts, carry, indexed)`` when ``indexed`` is given.

    Alone this is ``lax.cond``. Under ``vmap`` ``fn`` runs only for the rows where ``pred``
    holds, one after another (a loop over their indices), each on its own row of ``consts`` and
    ``carry``, and its result is written back to that row in place; unbatched ``consts`` are
    read as they are, never broadcast. The cost is that of the rows taking the branch. Under
    nested ``vmap`` (seeds of environments) the outer one batches that loop as any other.

    ``indexed``: arrays that ``fn`` reads only by indexing (``x[a]``). Under ``vmap`` ``fn``
    gets each batched one as the ``RowView`` of its row instead of a copy of that row, which
    costs as much as the copy does: an environment's [A + 1, E] table of link usages is
    151 KB on the paper config.

    ``fn`` must take every traced value it reads through ``consts`` or ``indexed``: a
    ``custom_vmap`` function cannot close over values traced outside it.
    """
    call = fn if indexed is not None else (lambda consts, carry, _: fn(consts, carry))

    @jax.custom_batching.custom_vmap
    def run(pred, consts, carry, indexed):
        return jax.lax.cond(pred, call, lambda _, c, __: c, consts, carry, indexed)

    @run.def_vmap
    def _rows(axis_size, in_batched, pred, consts, carry, indexed):
        pred_b, consts_b, carry_b, indexed_b = in_batched
        if not pred_b:
            pred = jnp.broadcast_to(pred, (axis_size,))
        carry = broadcast_unbatched(carry, carry_b, axis_size)
        todo = jnp.nonzero(pred, size=axis_size, fill_value=0)[0]

        def body(k, carry):
            i = todo[k]
            row = lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False)  # noqa: E731
            mine = jax.tree_util.tree_map(lambda x, b: row(x) if b else x, consts, consts_b)
            views = jax.tree_util.tree_map(lambda x, b: RowView(x, i) if b else x, indexed,
                                           indexed_b)
            new = call(mine, jax.tree_util.tree_map(row, carry), views)
            return jax.tree_util.tree_map(
                lambda x, y: jax.lax.dynamic_update_index_in_dim(x, y, i, 0), carry, new)

        carry = jax.lax.fori_loop(0, pred.sum(dtype=jnp.int32), body, carry)
        return carry, jax.tree_util.tree_map(lambda _: True, carry)

    return run(pred, consts, carry, indexed)
