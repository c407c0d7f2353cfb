"""Counter-based random draws: every value a pure function of (seed, sample, draw, element).

A metric that perturbs its inputs must give the same value whatever the model's batch size,
so a row's draws cannot depend on which rows share its batch or on a generator's state. Here
every value hashes its own coordinates instead: a row's key (:func:`row_keys`) hashes
``(seed, sample, draw)``, the element key hashes the element's position, and one round of the
"lowbias32" integer hash (C. Wellons, "Prospecting for Hash Functions", 2018) mixes the two.
A metric computes the keys of all its rows once (:func:`key_table`) and looks up each batch's.
The work is plain int32 tensor arithmetic (products wrap modulo 2**32; right shifts are masked
to be logical), so it runs on any device without a Python loop, about as fast as
``torch.randn``; only :func:`row_subsets` reads one flag back per batch (its rare fallback).

Normals come from the Box-Muller transform (Box & Muller, "A Note on the Generation of Random
Normal Deviates", 1958), two per pair of 24-bit uniforms.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

_LOW32 = 0xFFFFFFFF
_FIRST = 0x7FEB352D
_SECOND = 0x846CA68B
_ELEMENT_SALT = 0x1E3779B9


def _signed32(value: int) -> int:
    """A 32-bit word as the int32 with the same bits."""
    return value - (1 << 32) if value >= 1 << 31 else value


_FIRST32, _SECOND32 = _signed32(_FIRST), _signed32(_SECOND)


def _mix64(values: Tensor) -> Tensor:
    """lowbias32 of int64 tensors holding 32-bit values (for the row keys)."""
    values = values ^ (values >> 16)
    values = (values * _FIRST) & _LOW32
    values = values ^ (values >> 15)
    values = (values * _SECOND) & _LOW32
    return values ^ (values >> 16)


def _mix32_(values: Tensor) -> Tensor:
    """lowbias32 of an int32 tensor, in place (wrapping products, logical shifts)."""
    values.bitwise_xor_(values.bitwise_right_shift(16).bitwise_and_(0xFFFF))
    values.mul_(_FIRST32)
    values.bitwise_xor_(values.bitwise_right_shift(15).bitwise_and_(0x1FFFF))
    values.mul_(_SECOND32)
    return values.bitwise_xor_(values.bitwise_right_shift(16).bitwise_and_(0xFFFF))


def row_keys(seed: int, samples: Tensor, indices: Tensor) -> Tensor:
    """The int32 key of each row ``(samples[b], indices[b])``, ``(B,)``."""
    seeded = _mix64(torch.full_like(samples, seed & _LOW32, dtype=torch.int64))
    keys = _mix64(_mix64(seeded ^ samples.long()) ^ indices.long())
    return ((keys ^ 0x80000000) - 0x80000000).to(torch.int32)  # same bits, as int32


def key_table(seed: int, n_samples: int, per_sample: int, device: torch.device) -> Tensor:
    """Keys of every row of a metric, ``(n_samples, per_sample)``: index it by batch."""
    samples = torch.arange(n_samples, device=device).repeat_interleave(per_sample)
    indices = torch.arange(per_sample, device=device).repeat(n_samples)
    return row_keys(seed, samples, indices).view(n_samples, per_sample)


@lru_cache(maxsize=32)
def _element_keys(count: int, device: torch.device) -> Tensor:
    elements = _mix32_(torch.arange(count, device=device, dtype=torch.int32))
    return elements.bitwise_xor_(_ELEMENT_SALT)


def row_bits(keys: Tensor, count: int) -> Tensor:
    """``(B, count)`` random int32 words for the rows with ``keys`` ``(B,)``."""
    return _mix32_(keys[:, None] ^ _element_keys(count, keys.device)[None, :])


def _unit_interval(bits: Tensor, dtype: torch.dtype) -> Tensor:
    """The top 24 bits of each word as a uniform draw in (0, 1), never 0 or 1."""
    top = bits.bitwise_right_shift(8).bitwise_and_(0xFFFFFF)
    return top.to(dtype).add_(0.5).mul_(2.0**-24)


def row_uniform(shape: tuple[int, ...] | torch.Size, keys: Tensor, dtype: torch.dtype) -> Tensor:
    """U(-1, 1) draws ``(B, *shape)`` for the rows with ``keys``, on their device."""
    count = math.prod(int(size) for size in shape)
    draws = _unit_interval(row_bits(keys, count), torch.float32).mul_(2).sub_(1)
    return draws.to(dtype).view(keys.shape[0], *shape)


def row_normal(shape: tuple[int, ...] | torch.Size, keys: Tensor, dtype: torch.dtype) -> Tensor:
    """Standard normal draws ``(B, *shape)`` for the rows with ``keys``, on their device.

    The 24-bit uniforms put the largest possible draw at 5.8 standard deviations.
    """
    count = math.prod(int(size) for size in shape)
    half = (count + 1) // 2
    uniforms = _unit_interval(row_bits(keys, 2 * half), torch.float32).view(-1, 2, half)
    radius = uniforms[:, 0].log().mul_(-2).sqrt_()
    angle = uniforms[:, 1].mul_(2 * math.pi)
    draws = torch.empty(keys.shape[0], 2 * half, device=keys.device)
    torch.mul(radius, angle.cos(), out=draws[:, :half])
    torch.mul(radius, angle.sin_(), out=draws[:, half:])
    return draws[:, :count].to(dtype).reshape(keys.shape[0], *shape)


def _first_distinct(positions: Tensor, size: int, units: int) -> tuple[Tensor, Tensor]:
    """The first ``size`` distinct values (in ``[0, units)``) of each row, in draw order.

    Returns them ``(B, size)`` and whether each row had that many ``(B,)``.
    """
    draws = positions.shape[1]
    slot = torch.arange(draws, device=positions.device).expand_as(positions)
    # the earliest draw of each value: a min-scatter of the draw numbers by value
    earliest_of = positions.new_full((positions.shape[0], units), draws)
    earliest_of.scatter_reduce_(1, positions, slot, reduce="amin")
    is_new = earliest_of.gather(1, positions) == slot
    keys = torch.where(is_new, slot, slot + draws)
    earliest = keys.topk(size, dim=1, largest=False, sorted=True).indices
    return positions.gather(1, earliest), is_new.sum(1) >= size


def row_subsets(keys: Tensor, present: Tensor | None, size: int, units: int) -> Tensor:
    """``(B, size)`` positions of a uniformly random ``size``-subset of the present units.

    ``present`` ``(B, units)`` marks the units a row may draw from (each row needs at least
    ``size``); ``None``: all of them. A small subset of all units is the first ``size``
    distinct values of ``2 * size + 16`` uniform draws (uniform over subsets by symmetry, and
    ``size`` hashes per row instead of ``units``); otherwise, and for the rare row without
    enough distinct draws, it is the ``size`` smallest of one random key per unit, absent
    units keyed last.
    """
    quick = None
    if present is None and 8 * size <= units:
        words = row_bits(keys, 2 * size + 16).long() & _LOW32
        chosen, complete = _first_distinct((words * units) >> 32, size, units)
        if bool(complete.all()):
            return chosen
        quick = (chosen, complete)
    if present is None:
        present = torch.ones(keys.shape[0], units, dtype=torch.bool, device=keys.device)
    last = torch.iinfo(torch.int32).max
    ranks = row_bits(keys, units).clamp_max_(last - 1)
    ranks.masked_fill_(~present, last)
    fallback = ranks.topk(size, dim=1, largest=False).indices
    return fallback if quick is None else torch.where(quick[1][:, None], quick[0], fallback)
