"""Exact non-negative integers wider than float32's 2^24, in uint32 limbs (x64 stays off).

The time integral behind AR (eq. 9), Σ revenue · time held, has integer inputs in generated
scenarios but passes 2^24 within a few hundred requests, where float32 sums start to round. A
``Wide`` number is ``uint32[..., N_LIMBS]``: little-endian base-2^16 limbs, each < 2^16 after
``normalize``, value Σ limb_i · 2^(16 i) < 2^64. Sums of up to 2^16 normalized numbers fit the
uint32 limbs before normalizing. ``divide_to_f32`` turns the exact integer quotient into the
correctly rounded float32, so AR equals the float64 reference's value rounded to float32.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

LIMB_BITS = 16
N_LIMBS = 4  # 64 bits
LIMB_MASK = (1 << LIMB_BITS) - 1
MAX_FACTOR = 1 << 24  # ``product`` and ``multiply_small`` factors, ``divide_to_f32`` divisors


def zero(shape=()) -> jax.Array:
    return jnp.zeros(tuple(shape) + (N_LIMBS,), jnp.uint32)


def normalize(limbs: jax.Array) -> jax.Array:
    """Propagate carries so every limb is < 2^16 (a carry out of the top limb is dropped)."""
    out, carry = [], jnp.zeros(limbs.shape[:-1], jnp.uint32)
    for i in range(N_LIMBS):
        v = limbs[..., i] + carry
        out.append(v & LIMB_MASK)
        carry = v >> LIMB_BITS
    return jnp.stack(out, axis=-1)


def from_uint(x: jax.Array) -> jax.Array:
    """uint32 -> Wide."""
    x = jnp.asarray(x, jnp.uint32)
    z = jnp.zeros_like(x)
    return jnp.stack([x & LIMB_MASK, x >> LIMB_BITS] + [z] * (N_LIMBS - 2), axis=-1)


def product(a: jax.Array, b: jax.Array) -> jax.Array:
    """a · b exactly, for uint32 a, b < 2^24 (the pieces' products stay below 2^32)."""
    a, b = jnp.asarray(a, jnp.uint32), jnp.asarray(b, jnp.uint32)
    a0, a1 = a & LIMB_MASK, a >> LIMB_BITS  # a1, b1 < 2^8
    b0, b1 = b & LIMB_MASK, b >> LIMB_BITS
    low = a0 * b0  # < 2^32
    mid = a1 * b0 + a0 * b1 + (low >> LIMB_BITS)  # < 2^25
    high = a1 * b1 + (mid >> LIMB_BITS)  # < 2^17
    z = jnp.zeros_like(low)
    return normalize(jnp.stack([low & LIMB_MASK, mid & LIMB_MASK, high, z], axis=-1))


def add(x: jax.Array, y: jax.Array) -> jax.Array:
    return normalize(x + y)


def subtract(x: jax.Array, y: jax.Array) -> jax.Array:
    """x - y for normalized x >= y."""
    out, borrow = [], jnp.zeros(x.shape[:-1], jnp.uint32)
    for i in range(N_LIMBS):
        v = x[..., i] + (1 << LIMB_BITS) - y[..., i] - borrow  # in [1, 2^17)
        out.append(v & LIMB_MASK)
        borrow = 1 - (v >> LIMB_BITS)
    return jnp.stack(out, axis=-1)


def masked_sum(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Σ of the normalized Wide rows of x[R, N_LIMBS] where mask[R] (R < 2^16)."""
    return normalize(jnp.sum(jnp.where(mask[:, None], x, jnp.uint32(0)), axis=0))


def multiply_small(x: jax.Array, s: jax.Array) -> jax.Array:
    """x · s for normalized x and uint32 s < 2^24 (the result must stay below 2^64)."""
    s = jnp.asarray(s, jnp.uint32)
    s0, s1 = s & LIMB_MASK, s >> LIMB_BITS  # s1 < 2^8
    acc = [jnp.zeros(x.shape[:-1], jnp.uint32) for _ in range(N_LIMBS + 1)]
    for i in range(N_LIMBS):
        p = x[..., i] * s0  # < 2^32
        q = x[..., i] * s1  # < 2^24
        acc[i] = acc[i] + (p & LIMB_MASK)
        acc[i + 1] = acc[i + 1] + (p >> LIMB_BITS) + (q & LIMB_MASK)
        if i + 2 < N_LIMBS:
            acc[i + 2] = acc[i + 2] + (q >> LIMB_BITS)
    return normalize(jnp.stack(acc[:N_LIMBS], axis=-1))  # each acc < 2^18


def _pow2_f32(e: jax.Array) -> jax.Array:
    """2^e as float32, exactly, for integer -126 <= e <= 127."""
    return jax.lax.bitcast_convert_type((e + 127).astype(jnp.int32) << 23, jnp.float32)


def divide_to_f32(n: jax.Array, d: jax.Array) -> jax.Array:
    """n / d rounded to the nearest float32 (ties to even), for a normalized Wide ``n`` and an
    integer 1 <= d < 2^24 (uint32); 0 when n == 0.

    Long division in base 2^8 (remainder < d < 2^24, so remainder · 2^8 + digit < 2^32): 8
    integer digits and 6 fraction digits. n >= 1 and d < 2^24 put the quotient's leading digit
    at index <= 10, so the 4 digits from it hold >= 25 significant bits (24 plus the rounding
    bit); the rest of the digits and the final remainder give the sticky bit.
    """
    d = jnp.asarray(d, jnp.uint32)
    digits = []
    for i in reversed(range(N_LIMBS)):
        digits += [n[..., i] >> 8, n[..., i] & 0xFF]  # most significant first
    digits += [jnp.zeros_like(digits[0])] * 6
    r = jnp.zeros_like(d)
    q = []
    for digit in digits:
        x = (r << 8) | digit
        qd = x // d
        r = x - qd * d
        q.append(qd)
    q = jnp.stack(q + [jnp.zeros_like(q[0])] * 3, axis=-1)  # [14 + 3 padding]
    n_q = len(digits)
    lead = jnp.argmax(q != 0, axis=-1)  # first non-zero digit
    idx = jnp.arange(q.shape[-1])
    window = jnp.uint32(0)
    for k in range(4):
        window = (window << 8) | jnp.take_along_axis(q, (lead + k)[..., None], axis=-1)[..., 0]
    below = jnp.any((idx > lead[..., None] + 3) & (q != 0), axis=-1) | (r != 0)
    width = 32 - jax.lax.clz(window).astype(jnp.int32)  # in [25, 32] when n > 0
    shift = jnp.maximum(width - 24, 1).astype(jnp.uint32)
    mant = window >> shift
    round_bit = (window >> (shift - 1)) & 1
    sticky = ((window & ((jnp.uint32(1) << (shift - 1)) - 1)) != 0) | below
    mant = mant + (round_bit & (sticky | ((mant & 1) == 1)).astype(jnp.uint32))
    # the window's last digit has weight 2^(8 · (7 - (lead + 3)))
    exponent = shift.astype(jnp.int32) + 8 * (n_q - 6 - 1 - (lead.astype(jnp.int32) + 3))
    value = mant.astype(jnp.float32) * _pow2_f32(exponent)
    return jnp.where(jnp.any(q != 0, axis=-1) | (r != 0), value, 0.0)
