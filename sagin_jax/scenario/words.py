"""Counter-based random words (``Stream``) and the uniform integers drawn from them.

A stream's key (threefry) seeds a hash of a counter: word ``c`` is ``mix(mix(c ^ k0) + k1)``.
XLA's threefry costs ~30-40 ns per 32-bit word on a CPU, the hash ~2 ns, and a scenario needs
~10^5 words; it is pure integer arithmetic, so the bits are the same on every backend and batch
size. A uniform on ``[0, span)`` is ``floor(w * span / 2**32)`` (Lemire's multiply-high, without
rejection), two digits per word when ``span**2 <= 2**16``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from sagin_jax.scenario.bitlines import pin, where


def _mix(x):
    """A 32-bit integer finaliser (bijective avalanche hash, "triple32" constants)."""
    x = x ^ (x >> 17)
    x = x * jnp.uint32(0xED5AD4BB)
    x = x ^ (x >> 11)
    x = x * jnp.uint32(0xAC4C1B51)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x31848BAB)
    return x ^ (x >> 14)


class Stream:
    """Counter-based words from one key: word ``c`` is ``mix(mix(c ^ k0) + k1)`` with ``(k0, k1)``
    the key's threefry data. Each call takes the next block of counters (static offsets)."""

    def __init__(self, key):
        data = jax.random.key_data(key).reshape(-1)
        self.key = key
        self.k0, self.k1 = data[0].astype(jnp.uint32), data[1].astype(jnp.uint32)
        self.offset = 0
        self.fallbacks = 0

    def words(self, *shape: int):
        n = int(np.prod(shape))
        c = lax.iota(jnp.uint32, n).reshape(shape) + jnp.uint32(self.offset)
        self.offset += n
        return self._word(c)

    def words_transposed(self, rows: int, cols: int):
        """``words(rows, cols).T``, the same counters laid out [cols, rows] (no transpose)."""
        c = (lax.broadcasted_iota(jnp.uint32, (cols, rows), 1) * jnp.uint32(cols)
             + lax.broadcasted_iota(jnp.uint32, (cols, rows), 0) + jnp.uint32(self.offset))
        self.offset += rows * cols
        return self._word(c)

    def _word(self, c):
        """The word of counter(s) ``c``."""
        return _mix(_mix(c ^ self.k0) + self.k1)

    def symmetric_uniform(self, n: int):
        """f32[n, n]: entry (i, j) is ``uniform(n, n)[min(i, j), max(i, j)]`` of the same
        counters (a symmetric matrix whose upper triangle is the plain draw)."""
        i = lax.broadcasted_iota(jnp.uint32, (n, n), 0)
        j = lax.broadcasted_iota(jnp.uint32, (n, n), 1)
        c = jnp.minimum(i, j) * jnp.uint32(n) + jnp.maximum(i, j) + jnp.uint32(self.offset)
        self.offset += n * n
        return (self._word(c) >> 8).astype(jnp.float32) * jnp.float32(2.0 ** -24)

    def uniform(self, *shape: int):
        """f32 uniform on [0, 1), 24-bit resolution."""
        return (self.words(*shape) >> 8).astype(jnp.float32) * jnp.float32(2.0 ** -24)

    def randint(self, shape, lo, span):
        """Exact uniform integers (threefry) for spans too wide for one word."""
        self.fallbacks += 1
        k = jax.random.fold_in(self.key, 1_000_000 + self.fallbacks)
        return jax.random.randint(k, shape, lo, lo + span, dtype=jnp.int32)


def mulhi(w, span):
    """floor(w * span / 2**32) for uint32 w and span <= 2**16, in 32-bit arithmetic."""
    span = jnp.asarray(span).astype(jnp.uint32)
    hi, lo = w >> 16, w & jnp.uint32(0xFFFF)
    return ((hi * span + ((lo * span) >> 16)) >> 16).astype(jnp.int32)


def _divmod_small(v, span):
    """(v // span, v % span) for int32 ``0 <= v < 2**16`` and ``1 <= span <= 256`` (the spans
    that pack two digits per word; tested for every one), exactly.

    In f32, ``(v + 0.5) / span`` lies at least ``1 / (2 span)`` inside an integer interval and
    is computed to a relative error of ~2**-23 (XLA may multiply by a rounded reciprocal
    instead of dividing), an absolute error below ``2**16 / span * 2**-22 < 1 / (2 span)``, so
    the floor is exact. ``floor(v / span)`` is not: with the reciprocal it is one too small for
    some multiples of span (38 spans in 1..256, e.g. 41)."""
    spanf = jnp.asarray(span).astype(jnp.float32)
    q = jnp.floor((v.astype(jnp.float32) + jnp.float32(0.5)) / spanf).astype(jnp.int32)
    return q, v - q * jnp.asarray(span, jnp.int32)


def uniform_ints(stream: Stream, digits: int, shape: tuple, lo, span, one=None):
    """i32 uniform on [lo, lo + span), ``digits`` per word (2, 1, or 0 = exact randint).

    Two digits: the ``half = ceil(last / 2)`` words of a row give the row's first ``half``
    values as ``v % span`` and the rest as ``v // span`` (``v`` the word's uniform on
    ``[0, span**2)``). The words are hashed once, as one flat block made once (``pin`` with
    ``one``, before the reshape: XLA CPU vectorises a flat pass fully, an [R, 45], [R, 23] or
    [R, 10] one only in part; pinned after it, the request program took 5-7% longer); the
    digits are a [.., 2, half] select over them, read as [.., 2 * half] and cut to ``last``.
    Joining the two digit blocks with a concatenate cost XLA CPU ~80 ms of LLVM time per draw.
    16,384 paper scenarios: 8.3-9.2 s against 8.8-10.1 s for the [R, last] hash per entry and
    9.2-9.8 s with a concatenate (4 rounds, alternating), same bits."""
    if digits == 0:
        return stream.randint(shape, lo, span)
    if digits == 1:
        return lo + mulhi(stream.words(*shape), span)
    *lead, last = shape
    half = (last + 1) // 2
    w = pin(one, stream.words(int(np.prod(lead)) * half)).reshape(*lead, 1, half)
    q, r = _divmod_small(mulhi(w, span * span), span)  # v uniform on [0, span**2) < 2**16
    high = lax.broadcasted_iota(jnp.int32, (*lead, 2, half), len(lead)) == 1
    return lo + where(high, q, r).reshape(*lead, 2 * half)[..., :last]
