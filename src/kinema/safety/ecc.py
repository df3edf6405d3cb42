"""Error-correcting code of the watermark: CRC-16 (CCITT) and a rate-1/2, K=7 convolutional code.

``conv_encode`` (zero tail), ``viterbi_decode`` (soft decision) and ``list_viterbi_decode`` (the
``size`` best paths, for CRC-aided list decoding). Soft values: positive means bit 0.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

CONV_K = 7  # constraint length
CONV_GENERATORS = (0o171, 0o133)


def crc16(bits: np.ndarray) -> np.ndarray:
    """CRC-16/CCITT (poly 0x1021, init 0xFFFF) of a bit array -> 16 bits, MSB first."""
    reg = 0xFFFF
    for b in bits:
        top = ((reg >> 15) & 1) ^ int(b)
        reg = (reg << 1) & 0xFFFF
        if top:
            reg ^= 0x1021
    return np.array([(reg >> (15 - i)) & 1 for i in range(16)], dtype=np.uint8)


@lru_cache(maxsize=1)
def _trellis() -> tuple[np.ndarray, np.ndarray]:
    """Output bits ``(64 states, 2 inputs, 2)`` and next states ``(64, 2)`` of the K=7 code."""
    n_states = 1 << (CONV_K - 1)
    out = np.zeros((n_states, 2, 2), dtype=np.int8)
    nxt = np.zeros((n_states, 2), dtype=np.int64)
    for s in range(n_states):
        for b in range(2):
            reg = (b << (CONV_K - 1)) | s
            for g, gen in enumerate(CONV_GENERATORS):
                out[s, b, g] = bin(reg & gen).count("1") & 1
            nxt[s, b] = reg >> 1
    return out, nxt


def conv_encode(bits: np.ndarray) -> np.ndarray:
    """Rate-1/2, K=7 convolutional code with a zero tail: n bits -> 2 (n + 6) bits."""
    out, nxt = _trellis()
    state = 0
    coded = []
    for b in [*map(int, bits), *([0] * (CONV_K - 1))]:
        coded.extend(out[state, b])
        state = nxt[state, b]
    return np.array(coded, dtype=np.uint8)


def viterbi_decode(soft: np.ndarray) -> np.ndarray:
    """Soft-decision Viterbi for ``conv_encode``: ``soft (2 (n + 6),)`` (+ means bit 0) -> n bits."""
    out, nxt = _trellis()
    n_states = out.shape[0]
    steps = soft.shape[0] // 2
    sym = 1.0 - 2.0 * out.astype(np.float64)  # (s, b, 2) bit 0 -> +1
    metric = np.full(n_states, -np.inf)
    metric[0] = 0.0
    ns = np.arange(n_states)
    b_of = ns >> (CONV_K - 2)  # input bit that leads into state ns
    prev0 = (ns & ((1 << (CONV_K - 2)) - 1)) << 1  # its two predecessors
    prev1 = prev0 | 1
    decisions = np.zeros((steps, n_states), dtype=np.uint8)
    for t in range(steps):
        r = soft[2 * t : 2 * t + 2]
        bm = sym @ r  # (s, b) branch metrics
        c0 = metric[prev0] + bm[prev0, b_of]
        c1 = metric[prev1] + bm[prev1, b_of]
        decisions[t] = c1 > c0
        metric = np.where(c1 > c0, c1, c0)
    state = 0  # the tail drives the encoder back to state 0
    bits = np.zeros(steps, dtype=np.uint8)
    for t in range(steps - 1, -1, -1):
        bits[t] = state >> (CONV_K - 2)
        state = ((state & ((1 << (CONV_K - 2)) - 1)) << 1) | int(decisions[t, state])
    return bits[: steps - (CONV_K - 1)]


def list_viterbi_decode(soft: np.ndarray, size: int) -> list[np.ndarray]:
    """The ``size`` best paths of ``viterbi_decode``'s trellis, best first (parallel list Viterbi).

    ``soft (2 (n + 6),)`` (+ means bit 0) -> up to ``size`` arrays of n bits; the first equals
    ``viterbi_decode(soft)``. Each state keeps its ``size`` best partial paths.
    """
    out, _ = _trellis()
    n_states = out.shape[0]
    steps = soft.shape[0] // 2
    sym = 1.0 - 2.0 * out.astype(np.float64)  # (s, b, 2)
    metric = np.full((n_states, size), -np.inf)
    metric[0, 0] = 0.0
    ns = np.arange(n_states)
    b_of = ns >> (CONV_K - 2)
    prev0 = (ns & ((1 << (CONV_K - 2)) - 1)) << 1
    prev1 = prev0 | 1
    back_state = np.zeros((steps, n_states, size), dtype=np.int64)
    back_rank = np.zeros((steps, n_states, size), dtype=np.int64)
    for t in range(steps):
        bm = sym @ soft[2 * t : 2 * t + 2]  # (s, b)
        cand = np.concatenate(
            [metric[prev0] + bm[prev0, b_of][:, None], metric[prev1] + bm[prev1, b_of][:, None]], axis=1
        )  # (s, 2 size)
        idx = np.argsort(-cand, axis=1, kind="stable")[:, :size]  # (s, size)
        metric = np.take_along_axis(cand, idx, axis=1)
        back_state[t] = np.where(idx < size, prev0[:, None], prev1[:, None])
        back_rank[t] = idx % size
    paths = []
    for rank in range(size):
        if not np.isfinite(metric[0, rank]):
            break
        state, r = 0, rank
        bits = np.zeros(steps, dtype=np.uint8)
        for t in range(steps - 1, -1, -1):
            bits[t] = state >> (CONV_K - 2)
            state, r = int(back_state[t, state, r]), int(back_rank[t, state, r])
        paths.append(bits[: steps - (CONV_K - 1)])
    return paths
