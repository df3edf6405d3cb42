"""Invisible watermark: keyed Fourier modes of a tiled luma pattern, carrying 40 bits, read blind.

Kinema's clips are tiny (64x64, 33 frames), so the mark uses the whole clip. Method (chosen by
measurement, see ``docs/safety.md``):

* **Payload**: 40 bits = 16-bit model tag + 24-bit generation tag (sha256 prefixes of the model id
  and the generation id), a CRC-16 (CCITT) -> 56 bits, a rate-1/2 convolutional code (K=7,
  generators 171/133 octal, 6 tail bits) -> ``K = 124`` coded bits.
* **Pattern**: a ``tile x tile`` (64 px) luma tile. Coded bit ``i`` is one real Fourier mode of
  the tile, ``+-sqrt(2) cos(2 pi k_i . x / T + phi_i)``, at a keyed frequency ``k_i`` (radius 2..10
  cycles per tile: periods of 6..32 px, which survive H.264 and a 50% downscale) and a keyed phase.
  Distinct frequencies are orthogonal under any translation-invariant filtering (blur, resizing,
  the detector's high-pass), so bits do not leak into each other. The tile is repeated over the
  frame and added to every frame (R, G and B get the same offset). Pixels near strong edges,
  which the detector ignores, get ``edge_gain`` (0.3) of the amplitude of flat pixels (flat pixels
  get at most ``max_boost`` = 1.45 times a uniform mark's amplitude); the offset
  is then scaled to exactly ``strength`` RMS luma levels over the clip, so the PSNR is fixed
  (~40.1 dB at 2.5) and the energy saved at edges strengthens the mark where it is read. H.264
  drops small DCT coefficients, so a locally stronger mark survives it better (measured: 20-47%
  of the amplitude survives CRF 28 at 2.4 RMS, 48-74% at 5.0).
* **Informed embedding**: x264 keeps 20-60% of the mark, and how much depends on where the tile
  falls on the content. ``embed_watermark`` tries up to 24 tile offsets and two amplitude caps
  against simulated attacks (H.264 CRF 28 veryfast and medium, 50% downscale, 10% border crop) and keeps the first
  candidate that survives them all with margin; most clips keep the first candidate (one trial, ~0.1 s).
* **Detection** (blind): luma -> high-pass residual (frame minus a box mean), clipped, with pixels
  near strong edges masked out -> averaged modulo the tile period over all frames and tile copies
  -> circular cross-correlation with every mode by FFT, which tries every translation at once
  (cropping shifts the tile) -> the ``peaks`` shifts with the most energy (and their half-tile aliases)
  -> soft bits weighted by the noise measured on the same frequencies in quadrature (on a frame smaller
  than the tile, e.g. a cropped 64 px clip, solved by ridge least squares over the cells seen) -> Viterbi ->
  CRC; when no hypothesis passes, a list Viterbi tries the 16 best paths of each scale's best one.
  Downscaling is undone by trying a few resize factors (``scales``). A clip is marked when the CRC
  holds and the codeword agreement ``score`` reaches ``threshold``.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from dataclasses import dataclass, field, replace
from functools import lru_cache, wraps
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from kinema.errors import InvalidInputError
from kinema.safety.ecc import CONV_K, conv_encode, crc16, list_viterbi_decode, viterbi_decode
from kinema.video import Video, read_video

PAYLOAD_BITS = 40
MODEL_TAG_BITS = 16
GENERATION_TAG_BITS = 24
CRC_BITS = 16
INFO_BITS = PAYLOAD_BITS + CRC_BITS  # 56
CODED_BITS = 2 * (INFO_BITS + CONV_K - 1)  # 124
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class WatermarkConfig:
    """Watermark parameters. Embedder and detector must share ``key``, ``tile`` and the band.

    Attributes:
        key: secret that picks the frequencies and phases; another key neither reads nor forges the mark.
        tile: period of the pattern in pixels at the embedding resolution.
        min_freq, max_freq: radius band of the modes, in cycles per tile.
        grid_free: leave out the frequencies on the axes and on the lattice of multiples of 4 cycles: walls,
            floors and a decoder's fixed latent-grid pattern put most of the content's energy there.
        strength: RMS luma change over the clip in 8-bit levels (2.5 gives 40.1 dB PSNR whatever the content,
            less where the mark is clipped at 0 or 255).
        scales: resize factors the detector tries (2.0 undoes a 50% downscale).
        blur: half-width of the box filter whose output is subtracted before correlation.
        clip: residuals are clipped to ``clip * strength`` so what is left of edges does not swamp the mark.
        edge: luma step (levels per pixel) above which a pixel and its neighbours are ignored.
        min_flat: if less than this fraction of pixels is flat (textured content), nothing is masked.
        mix: weight of a mode's own quadrature power in its noise estimate (vs. its radius band).
        threshold: minimum codeword agreement ``score`` (at most sqrt(K) = 11.1) to report a mark.
        peaks: local maxima of the shift search that are decoded (each with its 3 half-tile aliases).
        edge_gain: amplitude of the mark near strong edges relative to flat pixels (1 = uniform mark).
        list_size: paths of a list Viterbi tried (CRC check) on each scale's best hypothesis when no plain
            decode passes the CRC; each extra path is one more chance for an unmarked clip to pass (1 = off).
        max_boost: cap on the amplitude of flat pixels relative to a uniform mark; on clips with few flat
            pixels the edge pixels then get more than ``edge_gain``.
        trials: candidate marks tried against a simulated H.264 re-encode (see ``embed_watermark``); 1 = off.
        trial_crf: CRF of the simulated re-encodes (libx264, presets veryfast and medium).
        trial_score: detection score on the re-encode that ends the search (correct decodes score 7-11).
        trial_boosts: the ``max_boost`` values the candidates cycle through (amplitude shapes).
        trial_patience: once a candidate survives every attack, at most this many more are tried for a higher score.
        ridge: a frame smaller than the tile (a cropped 64 px clip) leaves cells of the folded tile unseen, and on
            what is seen the modes are no longer orthogonal; there the soft bits are solved by least squares, with
            this ridge weight relative to the mean diagonal of the normal equations (None: plain correlation).
    """

    key: int = 0x4B494E45
    tile: int = 64
    min_freq: float = 2.0
    max_freq: float = 10.0
    grid_free: bool = True
    strength: float = 2.5
    scales: tuple[float, ...] = (1.0, 2.0, 1.25, 0.5)
    blur: int = 2
    clip: float = 3.0
    edge: float = 10.0
    min_flat: float = 0.15
    mix: float = 0.25
    threshold: float = 6.0
    peaks: int = 1
    edge_gain: float = 0.3
    list_size: int = 16
    max_boost: float = 1.45
    trials: int = 24
    trial_crf: int = 28
    trial_score: float = 8.0
    trial_boosts: tuple[float, ...] = (1.45, 1.8)
    trial_patience: int = 4
    ridge: float | None = 1.0

    def __post_init__(self) -> None:
        n_freqs = len(_band(self))
        if self.max_freq >= self.tile // 2 or self.min_freq < 1 or n_freqs < CODED_BITS:
            raise InvalidInputError(
                f"min_freq={self.min_freq}, max_freq={self.max_freq}, tile={self.tile}: need "
                f"1 <= min_freq <= max_freq < tile/2 and at least {CODED_BITS} frequencies (got {n_freqs})"
            )
        if not 0.0 < self.strength <= 16.0:
            raise InvalidInputError(f"strength={self.strength} out of range; allowed (0, 16] luma levels")
        if self.list_size < 1 or self.peaks < 1:
            raise InvalidInputError(f"list_size={self.list_size}, peaks={self.peaks}: both must be >= 1")
        if not self.scales or any(s <= 0 for s in self.scales):
            raise InvalidInputError(f"scales={self.scales} must be non-empty and positive")
        if self.ridge is not None and self.ridge <= 0:
            raise InvalidInputError(f"ridge={self.ridge} must be positive, or None for plain correlation")
        if self.trials < 1 or not 0 <= self.trial_crf <= 51:
            raise InvalidInputError(f"trials={self.trials}, trial_crf={self.trial_crf}: need trials >= 1 and 0 <= trial_crf <= 51")


@dataclass(frozen=True)
class Payload:
    """What the mark carries: a 16-bit model tag and a 24-bit generation tag."""

    model_tag: int
    generation_tag: int

    @classmethod
    def from_ids(cls, model_id: str, generation_id: str) -> Payload:
        return cls(model_tag=model_tag(model_id), generation_tag=generation_tag(generation_id))

    def to_bits(self) -> np.ndarray:
        """40 bits, model tag first, most significant bit first."""
        value = (self.model_tag << GENERATION_TAG_BITS) | self.generation_tag
        return np.array([(value >> (PAYLOAD_BITS - 1 - i)) & 1 for i in range(PAYLOAD_BITS)], dtype=np.uint8)

    @classmethod
    def from_bits(cls, bits: np.ndarray) -> Payload:
        value = 0
        for b in bits[:PAYLOAD_BITS]:
            value = (value << 1) | int(b)
        return cls(model_tag=value >> GENERATION_TAG_BITS, generation_tag=value & ((1 << GENERATION_TAG_BITS) - 1))

    def hex(self) -> str:
        return f"{self.model_tag:04x}-{self.generation_tag:06x}"


def model_tag(model_id: str) -> int:
    """16-bit tag of a model id: the first two bytes of its sha256."""
    return int.from_bytes(hashlib.sha256(model_id.encode()).digest()[:2], "big")


def generation_tag(generation_id: str) -> int:
    """24-bit tag of a generation id: the first three bytes of its sha256."""
    return int.from_bytes(hashlib.sha256(generation_id.encode()).digest()[:3], "big")


@dataclass
class Detection:
    """Result of ``detect_watermark``.

    Attributes:
        present: the CRC holds and ``score >= threshold``.
        payload: decoded payload when present, else None.
        score: agreement of the soft bits with the decoded codeword: ``sum(soft * code) / sqrt(K)``
            with soft bits of unit RMS (11.1 = every bit agrees; unmarked clips score ~5-8).
        confidence: 1 - (estimated chance that an unmarked clip scores this high); 0 when absent.
        scale, shift: the resize hypothesis and tile shift (dy, dx) that matched best.
        bit_errors: coded bits whose soft sign disagrees with the decoded codeword.
    """

    present: bool
    payload: Payload | None
    score: float
    confidence: float
    scale: float
    shift: tuple[int, int]
    bit_errors: int
    crc_ok: bool
    details: dict[str, float] = field(default_factory=dict)


def encode_payload(payload: Payload) -> np.ndarray:
    """Payload -> 124 coded bits (payload, CRC-16, convolutional code)."""
    bits = payload.to_bits()
    return conv_encode(np.concatenate([bits, crc16(bits)]))


# --------------------------------------------------------------------------- patterns
_T = TypeVar("_T")


@lru_cache(maxsize=64)
def _pattern_config(config: WatermarkConfig) -> WatermarkConfig:
    """``config`` with only the fields the patterns and templates depend on (key, tile, band, strength, blur)."""
    return WatermarkConfig(
        key=config.key, tile=config.tile, min_freq=config.min_freq, max_freq=config.max_freq,
        grid_free=config.grid_free, strength=config.strength, blur=config.blur,
    )


def _pattern_cache(maxsize: int) -> Callable[[Callable[..., _T]], Callable[..., _T]]:
    """``lru_cache`` keyed on ``_pattern_config(config)``: configs that differ only in detection or trial
    settings (the informed embedding reads each attack with its own ``scales``) share one computation
    (building the templates costs ~0.2-0.45 s, once per process)."""

    def wrap(fn: Callable[..., _T]) -> Callable[..., _T]:
        cached = lru_cache(maxsize=maxsize)(fn)

        @wraps(fn)
        def call(config: WatermarkConfig, *args: object) -> _T:
            return cached(_pattern_config(config), *args)

        return call

    return wrap


def _band(config: WatermarkConfig) -> np.ndarray:
    """Tile frequencies ``(n, 2)`` in cycles per tile with ``min_freq <= |k| <= max_freq``, half-plane
    (without the axes and the 4-cycle lattice when ``grid_free``)."""
    k = np.arange(-config.max_freq, config.max_freq + 1)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    radius = np.hypot(ky, kx)
    keep = (radius >= config.min_freq) & (radius <= config.max_freq) & ((ky > 0) | ((ky == 0) & (kx > 0)))
    if config.grid_free:
        keep &= (ky != 0) & (kx != 0) & ~((ky % 4 == 0) & (kx % 4 == 0))
    return np.stack([ky[keep], kx[keep]], axis=1)


@_pattern_cache(maxsize=8)
def _modes(config: WatermarkConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keyed real Fourier modes of the tile, RMS 1 each.

    Returns (bit modes ``(K, T, T)``, reference modes ``(K, T, T)``, radius of each mode ``(K,)``).
    Coded bit ``i`` is ``sqrt(2) cos(2 pi k_i . x / T + phi_i)`` at its own keyed frequency ``k_i``
    and phase ``phi_i``; the reference is the same frequency in quadrature (``sin``), which carries
    nothing at the right shift and so measures the noise at that frequency. One quadrature per
    frequency keeps the summed correlation energy peaked at the true shift.
    """
    freqs = _band(config)
    rng = np.random.default_rng([config.key, config.tile, round(100 * config.min_freq), round(100 * config.max_freq)])
    freqs = freqs[rng.permutation(len(freqs))[:CODED_BITS]]  # (K, 2)
    phases = rng.uniform(0.0, 2.0 * np.pi, size=CODED_BITS)
    t = config.tile
    yy, xx = np.meshgrid(np.arange(t), np.arange(t), indexing="ij")
    arg = 2.0 * np.pi * (freqs[:, 0, None, None] * yy + freqs[:, 1, None, None] * xx) / t + phases[:, None, None]
    bits = (np.sqrt(2.0) * np.cos(arg)).astype(np.float32)  # (K, T, T)
    refs = (np.sqrt(2.0) * np.sin(arg)).astype(np.float32)  # (K, T, T)
    return bits, refs, np.hypot(freqs[:, 0], freqs[:, 1])


@_pattern_cache(maxsize=8)
def bit_patterns(config: WatermarkConfig) -> np.ndarray:
    """The keyed pattern of each coded bit: ``(K, tile, tile)`` float32 Fourier modes, RMS 1."""
    return _modes(config)[0]


@_pattern_cache(maxsize=64)
def _tile_for(config: WatermarkConfig, payload: Payload) -> np.ndarray:
    signs = 1.0 - 2.0 * encode_payload(payload).astype(np.float32)  # (K,) bit 0 -> +1
    tile = np.tensordot(signs, bit_patterns(config), axes=1)  # (T, T)
    tile -= tile.mean()
    return (tile * (config.strength / float(np.sqrt(np.mean(tile**2))))).astype(np.float32)


def watermark_pattern(
    config: WatermarkConfig, payload: Payload, height: int, width: int, offset: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """The luma offset ``(h, w)`` float32 added to every frame; ``offset`` (dy, dx) rolls the tile."""
    tile = np.roll(_tile_for(config, payload), offset, axis=(0, 1))
    reps = (math.ceil(height / config.tile), math.ceil(width / config.tile))
    return np.tile(tile, reps)[:height, :width]


def embed_watermark(frames: np.ndarray, payload: Payload, config: WatermarkConfig | None = None) -> np.ndarray:
    """Mark ``frames`` uint8 ``(f, h, w, 3)`` -> new uint8 frames of the same shape.

    Informed embedding: up to ``config.trials`` candidate marks (tile offsets, which the detector's
    shift search absorbs, alternating between two amplitude shapes) are each put through the attacks
    of ``TRIAL_ATTACKS`` (H.264 at CRF ``trial_crf`` with x264's veryfast and medium presets, a 50%
    downscale, a 10% border crop) and read back; the first whose payload survives all of them with a score of at least
    ``trial_score`` is kept, else the one that survives most (with the highest lowest score); once one
    survives them all, at most ``trial_patience`` more are tried. Every candidate has the same PSNR: this
    only chooses where the energy goes. Deterministic (single-threaded x264), so outputs reproduce.
    ``trials=1``, or frames H.264 cannot encode (odd sizes), embed the first candidate untried.
    """
    config = config or WatermarkConfig()
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InvalidInputError(f"frames must be uint8 (f, h, w, 3); got {frames.dtype} {tuple(frames.shape)}")
    plan = _trial_plan(config)
    flat = _flat_weight(_luma(frames), config)[:, 0].numpy()  # (f, h, w) 1 = flat
    h, w = frames.shape[1:3]
    busy = config.edge > 0 and float(flat.mean()) < config.min_flat  # textured content: H.264 wipes out every candidate alike
    if config.trials == 1 or busy or h % 2 or w % 2 or min(h, w) < config.tile // 2:
        return _mark(frames, flat, payload, config, *plan[0])
    best, best_key = None, (-1, -math.inf)
    patience: int | None = None  # trials left once some candidate survives every attack
    with tempfile.TemporaryDirectory(prefix="kinema_wm_") as tmp:
        for offset, boost in plan:
            marked = _mark(frames, flat, payload, config, offset, boost)
            key = _trial(marked, payload, config, Path(tmp))
            if key > best_key:
                best, best_key = marked, key
            if key[0] == len(TRIAL_ATTACKS) and key[1] >= config.trial_score:
                break
            if best_key[0] == len(TRIAL_ATTACKS):
                patience = config.trial_patience if patience is None else patience - 1
                if patience <= 0:
                    break
    assert best is not None
    return best


TRIAL_ATTACKS = ("h264", "h264_medium", "down50", "crop10", "none")  # the ones most often failed first


def _trial(marked: np.ndarray, payload: Payload, config: WatermarkConfig, tmp: Path) -> tuple[int, float]:
    """How one candidate fares: (attacks of ``TRIAL_ATTACKS`` its payload survives before the first it
    fails, lowest detection score among them). The attacks: re-encoded with libx264 at ``trial_crf``
    (preset veryfast, as ``Video.save`` writes, and medium, x264's and FFmpeg's default), downscaled to
    half size, 10% of each border cropped, as is."""
    survived, lowest = 0, math.inf
    for name in TRIAL_ATTACKS:
        scale = 2.0 if name == "down50" else 1.0
        d = detect_watermark(_attack(name, marked, config, tmp), replace(config, scales=(scale,), trials=1))
        if not (d.present and d.payload == payload):
            break
        survived, lowest = survived + 1, min(lowest, d.score)
    return survived, lowest if survived else 0.0


def _attack(name: str, marked: np.ndarray, config: WatermarkConfig, tmp: Path) -> np.ndarray:
    if name in ("h264", "h264_medium"):
        preset = "medium" if name == "h264_medium" else "veryfast"
        return read_video(Video(frames=marked, fps=16.0).save(tmp / "trial.mp4", crf=config.trial_crf, preset=preset)).frames
    if name == "crop10":  # 10% of each border: a frame smaller than the tile, at another phase
        h, w = marked.shape[1:3]
        dy, dx = round(0.1 * h), round(0.1 * w)
        return marked[:, dy : h - dy, dx : w - dx]
    if name == "down50":
        y = torch.from_numpy(marked).permute(0, 3, 1, 2).float()  # (f, 3, h, w)
        half = F.interpolate(y, scale_factor=0.5, mode="bilinear", align_corners=False, antialias=True)
        return half.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return marked


def _trial_plan(config: WatermarkConfig) -> list[tuple[tuple[int, int], float]]:
    """Candidates (tile offset, flat-pixel amplitude cap) in the order tried; the first is the open-loop mark."""
    rng = np.random.default_rng([config.key, 7])
    plan = [((0, 0), config.max_boost)]
    for i in range(1, config.trials):
        dy, dx = (int(v) for v in rng.integers(0, config.tile, 2))
        plan.append(((dy, dx), config.trial_boosts[i % len(config.trial_boosts)]))
    return plan


def _mark(
    frames: np.ndarray, flat: np.ndarray, payload: Payload, config: WatermarkConfig, offset: tuple[int, int], max_boost: float
) -> np.ndarray:
    """One candidate mark: the rolled pattern, shaped by ``_embed_gain``, scaled to exactly ``strength`` RMS."""
    pattern = watermark_pattern(config, payload, frames.shape[1], frames.shape[2], offset)  # (h, w)
    delta = _embed_gain(flat, config, max_boost) * pattern[None]  # (f, h, w)
    delta *= config.strength / max(float(np.sqrt(np.mean(delta**2))), 1e-6)
    out = frames.astype(np.float32) + delta[..., None]  # (f, h, w, 3)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _embed_gain(flat: np.ndarray, config: WatermarkConfig, max_boost: float) -> np.ndarray:
    """Per-pixel amplitude ``(f, h, w)`` of the mark (1 = uniform), from the flat map ``(f, h, w)`` (1 = flat).

    The detector ignores pixels near strong edges (unless the clip is mostly busy, see
    ``min_flat``), so the mark there is spent for nothing: those pixels get ``edge_gain`` times
    the amplitude of flat pixels. ``embed_watermark`` rescales the result to ``strength`` RMS, so
    the energy saved at edges goes to flat pixels and the PSNR does not change.
    """
    ones = np.ones(flat.shape, dtype=np.float32)
    if config.edge_gain >= 1.0 or config.edge <= 0:
        return ones
    share = float(flat.mean())
    if share < config.min_flat:  # the detector reads every pixel of busy clips
        return ones
    # flat pixels end up 1 / sqrt(share + low^2 (1 - share)) times the uniform amplitude: cap that at
    # max_boost, or the mark's own gradients in flat areas start to look like edges to the detector
    low = max(config.edge_gain, math.sqrt(max(1.0 / max_boost**2 - share, 0.0) / max(1.0 - share, 1e-6)))
    return low + (1.0 - low) * flat


# --------------------------------------------------------------------------- detection
def _luma(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(f, h, w, 3)`` -> float32 luma ``(f, 1, h, w)``."""
    y = frames.astype(np.float32) @ LUMA  # (f, h, w)
    return torch.from_numpy(y)[:, None]


def _highpass(y: torch.Tensor, radius: int, circular: bool = False) -> torch.Tensor:
    """``y`` minus its ``(2r+1)^2`` box mean; ``(n, 1, h, w)``."""
    k = 2 * radius + 1
    padded = F.pad(y, (radius,) * 4, mode="circular" if circular else "replicate")
    return y - F.avg_pool2d(padded, k, stride=1)


def _fold(r: torch.Tensor, weight: torch.Tensor, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted average of ``(f, 1, h, w)`` residuals modulo the tile period, and the weight summed in
    each cell -> two ``(tile, tile)`` arrays (cells no pixel covers average to 0)."""
    f, _, h, w = r.shape
    hp, wp = math.ceil(h / tile) * tile, math.ceil(w / tile) * tile

    def fold_sum(x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, wp - w, 0, hp - h)).reshape(f, hp // tile, tile, wp // tile, tile).sum(dim=(0, 1, 3))

    total, count = fold_sum(r * weight), fold_sum(weight)  # (T, T) each
    folded = torch.where(count > 0.5, total / count.clamp(min=0.5), torch.zeros_like(total))
    return folded.numpy().astype(np.float64), count.numpy().astype(np.float64)


def _flat_weight(y: torch.Tensor, config: WatermarkConfig) -> torch.Tensor:
    """1 where the content is locally flat enough to read the mark, 0 near strong edges ``(f, 1, h, w)``."""
    gy = (y[..., 1:, :] - y[..., :-1, :]).abs()
    gx = (y[..., :, 1:] - y[..., :, :-1]).abs()
    grad = torch.maximum(F.pad(gy, (0, 0, 0, 1)), F.pad(gx, (0, 1, 0, 0)))  # (f, 1, h, w)
    edge = (grad > config.edge).float()
    k = 2 * config.blur + 3
    edge = F.max_pool2d(edge, k, stride=1, padding=k // 2)  # grow: the box mean there is spoiled
    return 1.0 - edge


@_pattern_cache(maxsize=8)
def _templates(config: WatermarkConfig) -> np.ndarray:
    """The bit modes, then the reference modes, after the detector's high-pass, unit norm: ``(2K, T, T)``."""
    modes = torch.from_numpy(np.concatenate(_modes(config)[:2]))[:, None]  # (2K, 1, T, T)
    filtered = _highpass(modes, config.blur, circular=True)[:, 0].numpy().astype(np.float64)
    return filtered / np.sqrt((filtered**2).sum(axis=(1, 2), keepdims=True))


@_pattern_cache(maxsize=8)
def _templates_fft(config: WatermarkConfig) -> tuple[np.ndarray, np.ndarray]:
    """FFTs of the bit and reference templates: ``(K, T, T)`` complex each."""
    spectra = np.fft.fft2(_templates(config))
    return spectra[:CODED_BITS], spectra[CODED_BITS:]


def _solve_modes(folded: np.ndarray, count: np.ndarray, shift: tuple[int, int], config: WatermarkConfig) -> tuple[np.ndarray, np.ndarray]:
    """Ridge least-squares amplitudes (bits ``(K,)``, references ``(K,)``) of the templates at ``shift`` in a
    folded tile with unseen cells, each cell weighted by how much of the frame fell on it."""
    assert config.ridge is not None
    t = config.tile
    seen_y, seen_x = np.nonzero(count > 0.5)  # cells some pixel fell on
    cells = ((seen_y + shift[0]) % t) * t + (seen_x + shift[1]) % t  # template value at cell x is template(x + shift)
    design = _templates(config).reshape(2 * CODED_BITS, t * t)[:, cells].T  # (cells, 2K)
    weighted = design * (count[seen_y, seen_x] / max(float(count.max()), 1e-9))[:, None]
    gram = design.T @ weighted  # (2K, 2K)
    ridge = config.ridge * float(np.trace(gram)) / (2 * CODED_BITS)
    beta = np.linalg.solve(gram + ridge * np.eye(2 * CODED_BITS), weighted.T @ folded[seen_y, seen_x])
    return beta[:CODED_BITS], beta[CODED_BITS:]


def _resized_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """``(h, w)`` after ``_resize`` by ``scale``."""
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _resize(y: torch.Tensor, scale: float) -> torch.Tensor:
    if scale == 1.0:
        return y
    size = _resized_size((y.shape[-2], y.shape[-1]), scale)
    return F.interpolate(y, size=size, mode="bilinear", align_corners=False, antialias=scale < 1.0)


def _soft_bits(y: torch.Tensor, config: WatermarkConfig) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """Luma ``(f, 1, h, w)`` at the embedding scale -> candidate (soft bits (K,) in noise std, shift).

    Sums of squared Fourier-mode correlations are periodic in the shift with period ``tile / 2``,
    so the four half-tile translations of the best shift are all candidates. On a frame smaller than
    the tile the modes leak into each other through the unseen cells, so at those shifts the soft
    bits come from ``_solve_modes`` (ridge least squares) instead of the correlations.
    """
    r = _highpass(y, config.blur)
    r = r.clamp(-config.clip * config.strength, config.clip * config.strength)
    weight = _flat_weight(y, config) if config.edge > 0 else torch.ones_like(y)
    if float(weight.mean()) < config.min_flat:  # busy content: keep every pixel, rely on the clip
        weight = torch.ones_like(y)
    folded, count = _fold(r, weight, config.tile)
    folded_fft = np.conj(np.fft.fft2(folded))[None]  # (1, T, T)
    solve = config.ridge is not None and min(y.shape[-2:]) < config.tile  # cells no pixel covers
    bit_fft, ref_fft = _templates_fft(config)
    radius = _modes(config)[2]
    corr = np.fft.ifft2(folded_fft * bit_fft).real  # (K, T, T): correlation at every shift
    ref = None if solve else np.fft.ifft2(folded_fft * ref_fft).real  # (K, T, T); unused when solving
    energy = (corr**2).sum(axis=0)  # (T, T)
    half = config.tile // 2
    folded_energy = energy.reshape(2, half, 2, half).sum(axis=(0, 2))  # (T/2, T/2): the sum is half-tile periodic
    local_max = folded_energy >= np.max(
        [np.roll(folded_energy, (oy, ox), axis=(0, 1)) for oy in (-1, 0, 1) for ox in (-1, 0, 1)], axis=0
    )
    ranked = np.argsort(np.where(local_max, folded_energy, -np.inf), axis=None)[::-1][: config.peaks]
    out = []
    for flat in ranked:
        dy, dx = np.unravel_index(int(flat), folded_energy.shape)
        for oy in (0, half):
            for ox in (0, half):
                sy, sx = int(dy + oy), int(dx + ox)
                c, q = (corr[:, sy, sx], ref[:, sy, sx]) if ref is not None else _solve_modes(folded, count, (sy, sx), config)
                llr = c * _soft_weights(c, q, radius, config.mix)
                out.append((llr / (np.sqrt(np.mean(llr**2)) + 1e-12), (sy, sx)))
    return out


def _soft_weights(corr: np.ndarray, ref: np.ndarray, radius: np.ndarray, mix: float, bands: int = 4) -> np.ndarray:
    """Per-mode factor that turns correlations ``(K,)`` into log-likelihood-like soft bits.

    Noise variance per radius band comes from the quadrature references, mixed with the mode's
    own quadrature power (weight ``mix``) so a frequency where the content itself is strong (a
    striped floor) counts for less; the band's surviving signal amplitude (correlation power above
    the noise) scales it, so bands that compression wiped out count for little.
    """
    order = np.argsort(radius, kind="stable")
    noise = np.empty_like(ref)
    gain = np.empty_like(ref)
    for chunk in np.array_split(order, bands):
        n2 = float(np.mean(ref[chunk] ** 2)) + 1e-12
        noise[chunk] = n2
        gain[chunk] = math.sqrt(max(float(np.mean(corr[chunk] ** 2)) - n2, 0.05 * n2))
    var = (1.0 - mix) * noise + mix * ref**2 + 1e-12
    return gain / var


def _decode(soft: np.ndarray, info: np.ndarray) -> tuple[bool, float, int]:
    """(CRC holds, codeword agreement score, coded-bit errors) of decoded ``info`` bits against ``soft``."""
    crc_ok = bool(np.array_equal(crc16(info[:PAYLOAD_BITS]), info[PAYLOAD_BITS:]))
    code = 1.0 - 2.0 * conv_encode(info).astype(np.float64)
    score = float(soft @ code / math.sqrt(CODED_BITS))
    errors = int(np.sum(np.sign(soft) != code))
    return crc_ok, score, errors


def detect_watermark(frames: np.ndarray, config: WatermarkConfig | None = None) -> Detection:
    """Look for a Kinema watermark in uint8 frames ``(f, h, w, 3)`` (any size, any crop offset).

    Every (scale, shift) hypothesis is Viterbi-decoded; when no decode passes the CRC, the
    ``list_size`` best paths of each scale's best hypothesis (the one that agreed best with its
    codeword) are tried too, best scale first. Per scale, because scores of different scales are not
    comparable: a wrong scale's hypothesis can outscore a right one that only a list path decodes.
    """
    config = config or WatermarkConfig()
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InvalidInputError(f"frames must be (f, h, w, 3); got {tuple(frames.shape)}")
    y = _luma(frames)
    usable = [s for s in config.scales if min(_resized_size(frames.shape[1:3], s)) >= config.tile // 2]
    if not usable:
        raise InvalidInputError(
            f"frames of {frames.shape[2]}x{frames.shape[1]} are too small to hold a watermark; "
            f"need at least {config.tile // 2} px per side"
        )
    # CRC trials, the false-alarm budget: every plain decode, and the extra list paths of every scale
    decodes = len(usable) * (4 * config.peaks + max(config.list_size - 1, 0))
    best: Detection | None = None
    per_scale: list[tuple[Detection, np.ndarray]] = []  # each scale's best hypothesis and its soft bits
    for scale in usable:
        top: tuple[Detection, np.ndarray] | None = None
        for soft, shift in _soft_bits(_resize(y, scale), config):
            candidate = _candidate(soft, viterbi_decode(soft), scale, shift, config, decodes)
            if top is None or (candidate.present, candidate.score) > (top[0].present, top[0].score):
                top = (candidate, soft)
        assert top is not None
        per_scale.append(top)
        if best is None or (top[0].present, top[0].score) > (best.present, best.score):
            best = top[0]
    assert best is not None
    if not best.present and config.list_size > 1:
        for head, soft in sorted(per_scale, key=lambda t: -t[0].score):
            for info in list_viterbi_decode(soft, config.list_size)[1:]:
                candidate = _candidate(soft, info, head.scale, head.shift, config, decodes)
                if candidate.present:
                    return candidate
    return best


def _candidate(
    soft: np.ndarray, info: np.ndarray, scale: float, shift: tuple[int, int], config: WatermarkConfig, decodes: int
) -> Detection:
    crc_ok, score, errors = _decode(soft, info)
    present = crc_ok and score >= config.threshold
    return Detection(
        present=present,
        payload=Payload.from_bits(info) if present else None,
        score=score,
        confidence=_confidence(score, decodes) if present else 0.0,
        scale=scale,
        shift=shift,
        bit_errors=errors,
        crc_ok=crc_ok,
    )


NULL_SCORE_MEAN = 6.9  # best-candidate score on 2000 unmarked world clips (benchmarks/watermark_robustness.py)
NULL_SCORE_STD = 0.8


def _confidence(score: float, hypotheses: int) -> float:
    """1 - the chance that an unmarked clip passes the CRC on one of ``hypotheses`` decodes and
    scores at least ``score`` (Gaussian fit of the measured unmarked scores)."""
    tail = 0.5 * math.erfc((score - NULL_SCORE_MEAN) / (NULL_SCORE_STD * math.sqrt(2.0)))
    return float(1.0 - min(1.0, hypotheses * 2.0**-CRC_BITS * tail))


WATERMARK_PRESETS: dict[str, WatermarkConfig] = {
    "default": WatermarkConfig(),
    "strong": WatermarkConfig(strength=3.0),  # ~38.5 dB: more robust, below the 40 dB target
    "uniform": WatermarkConfig(edge_gain=1.0),  # the same amplitude on every pixel
    # reads (and makes) the marks of Kinema releases before the band moved to 2..10 cycles per tile
    "v1": WatermarkConfig(min_freq=3.0, max_freq=13.0, strength=2.4, edge=10.0, edge_gain=1.0, min_flat=0.3, grid_free=False),
    # reads (and makes) the marks of Kinema releases from the band change until the grid-free band (session 18)
    "v2": WatermarkConfig(grid_free=False, min_flat=0.3, edge=6.0),
}
