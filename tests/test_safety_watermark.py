"""Invisible watermark: codes, invisibility, robustness on Kinema World clips, false positives."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from kinema.errors import InvalidInputError
from kinema.safety.ecc import conv_encode, crc16, list_viterbi_decode, viterbi_decode
from kinema.safety.watermark import (
    CODED_BITS,
    INFO_BITS,
    WATERMARK_PRESETS,
    Payload,
    WatermarkConfig,
    detect_watermark,
    embed_watermark,
    _band,
    encode_payload,
)
from kinema.video import Video, read_video
from kinema.world import sample_example

PAYLOAD = Payload.from_ids("kinema-world-demo", "3f2a9c0d4b5e6f708192a3b4c5d6e7f8")


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    return [sample_example("train", 7, i)[1] for i in range(3)]  # (33, 64, 64, 3) uint8 each


def soften(frames: np.ndarray) -> np.ndarray:
    """Blur (3x3 binomial, twice) and halve the contrast: the soft, washed-out look of a small model's output."""
    x = frames.astype(np.float32)
    for _ in range(2):
        p = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        x = (p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]) / 4
        x = (x[:, :, :-2] + 2 * x[:, :, 1:-1] + x[:, :, 2:]) / 4
    return np.clip(np.rint(x.mean() + 0.5 * (x - x.mean())), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10.0 * np.log10(255.0**2 / mse)


def test_crc_and_convolutional_code_correct_errors():
    rng = np.random.default_rng(0)
    info = rng.integers(0, 2, INFO_BITS).astype(np.uint8)
    coded = conv_encode(info)
    assert coded.shape == (CODED_BITS,)
    soft = (1.0 - 2.0 * coded) + rng.normal(0, 0.3, CODED_BITS)
    flip = rng.choice(CODED_BITS, 8, replace=False)
    soft[flip] *= -1  # 8 wrong hard decisions, spread out
    assert np.array_equal(viterbi_decode(soft), info)
    bits = PAYLOAD.to_bits()
    other = bits.copy()
    other[3] ^= 1
    assert not np.array_equal(crc16(bits), crc16(other))
    assert Payload.from_bits(bits) == PAYLOAD
    assert encode_payload(PAYLOAD).shape == (CODED_BITS,)


def test_list_viterbi_ranks_distinct_paths():
    rng = np.random.default_rng(3)
    info = rng.integers(0, 2, INFO_BITS).astype(np.uint8)
    soft = (1.0 - 2.0 * conv_encode(info)) + rng.normal(0, 1.0, CODED_BITS)
    paths = list_viterbi_decode(soft, 8)
    assert len(paths) == 8 and np.array_equal(paths[0], viterbi_decode(soft))
    assert len({p.tobytes() for p in paths}) == 8
    metrics = [float(soft @ (1.0 - 2.0 * conv_encode(p))) for p in paths]
    assert all(a >= b - 1e-9 for a, b in zip(metrics, metrics[1:]))  # best first
    # brute force over every single-bit change of the best path: none beats the second-best path
    flips = [paths[0] ^ (np.arange(INFO_BITS) == i).astype(np.uint8) for i in range(INFO_BITS)]
    assert max(float(soft @ (1.0 - 2.0 * conv_encode(f))) for f in flips) <= metrics[1] + 1e-9


def test_invisible_and_fast(clips):
    open_loop = replace(WatermarkConfig(), trials=1)
    timings: list[float] = []
    for frames in clips:
        t0 = time.perf_counter()
        marked = embed_watermark(frames, PAYLOAD, open_loop)
        timings.append(time.perf_counter() - t0)
        assert marked.shape == frames.shape and marked.dtype == np.uint8
        assert psnr(frames, marked) >= 40.0
        t0 = time.perf_counter()
        informed = embed_watermark(frames, PAYLOAD)
        assert time.perf_counter() - t0 < 3.0  # at most 24 trial encodes; one (~0.1 s) on most clips
        assert informed.shape == frames.shape and abs(psnr(frames, informed) - psnr(frames, marked)) < 0.05
    # cached pattern: ~12 ms for 33 x 64 x 64 here; the fastest clip is timed so one stall of a busy CI host
    # (a 60 ms outlier was seen once) does not fail the test, while a lost cache (~160 ms each) still does
    assert min(timings[1:]) < 0.05, timings


def test_informed_embedding_survives_where_the_open_loop_mark_does_not(tmp_path):
    """A busy Kinema World clip whose open-loop mark x264 wipes out at CRF 28: trying other tile offsets
    and amplitude shapes against a simulated re-encode finds one that survives, at the same PSNR."""
    frames = sample_example("train", 11, 43)[1]
    payload = Payload.from_ids("model-1", "generation-11-43")
    open_loop = embed_watermark(frames, payload, replace(WatermarkConfig(), trials=1))
    assert detect_watermark(_h264(open_loop, tmp_path)).payload is None
    informed = embed_watermark(frames, payload)
    assert not np.array_equal(informed, open_loop)
    assert abs(psnr(frames, informed) - psnr(frames, open_loop)) < 0.05
    for transform in (_h264, _down50, _gif, _crop10):
        assert detect_watermark(transform(informed, tmp_path)).payload == payload, transform.__name__
    assert embed_watermark(frames, payload).tobytes() == informed.tobytes()  # deterministic: reproducible outputs


def _h264(frames: np.ndarray, tmp_path) -> np.ndarray:
    path = Video(frames=frames, fps=16.0).save(tmp_path / "clip.mp4", crf=28)
    return read_video(path).frames


def _gif(frames: np.ndarray, tmp_path) -> np.ndarray:
    images = [Image.fromarray(f).convert("P", palette=Image.Palette.ADAPTIVE, colors=256) for f in frames]
    path = tmp_path / "clip.gif"
    images[0].save(path, save_all=True, append_images=images[1:], duration=62, loop=0)
    return read_video(path).frames


def _down50(frames: np.ndarray, tmp_path) -> np.ndarray:
    h, w = frames.shape[1:3]
    return np.stack([np.asarray(Image.fromarray(f).resize((w // 2, h // 2), Image.BILINEAR)) for f in frames])


def _crop10(frames: np.ndarray, tmp_path) -> np.ndarray:
    h, w = frames.shape[1:3]
    dy, dx = round(0.1 * h), round(0.1 * w)
    return frames[:, dy + 1 : h - dy + 1, dx - 1 : w - dx - 1]  # off-centre crop: an unknown shift


@pytest.mark.parametrize("transform", [_h264, _gif, _down50, _crop10])
def test_detected_after_transformations(clips, tmp_path, transform):
    for frames in [*clips, *map(soften, clips)]:
        d = detect_watermark(transform(embed_watermark(frames, PAYLOAD), tmp_path))
        assert d.present and d.payload == PAYLOAD, (transform.__name__, d)
        assert d.confidence > 0.9


def test_mark_moves_off_edges_at_constant_psnr(clips):
    """Pixels near strong edges (ignored by the detector) get ``edge_gain`` of the flat pixels' amplitude;
    the clip's total mark energy, hence its PSNR, is the same as with a uniform mark."""
    frames = clips[1]
    config = WatermarkConfig()
    uniform = embed_watermark(frames, PAYLOAD, replace(config, edge_gain=1.0))
    shaped = embed_watermark(frames, PAYLOAD, config)
    assert abs(psnr(frames, uniform) - psnr(frames, shaped)) < 0.1
    luma = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    edge = np.zeros(luma.shape, dtype=bool)
    edge[:, 1:] |= np.abs(np.diff(luma, axis=1)) > config.edge
    edge[:, :, 1:] |= np.abs(np.diff(luma, axis=2)) > config.edge
    delta = np.abs(shaped.astype(np.float32) - frames.astype(np.float32))[..., 0]
    assert 0.05 < edge.mean() < 0.5
    assert delta[edge].mean() < 0.6 * delta[~edge].mean()


def test_damaged_mark_is_never_read_as_another_payload(clips):
    """Marks drowned in noise must read as absent, never as a different (wrong) payload."""
    rng = np.random.default_rng(2)
    for i, frames in enumerate(clips):
        marked = embed_watermark(frames, PAYLOAD).astype(np.float32)
        for sigma in (6.0, 12.0, 24.0):
            noisy = np.clip(np.rint(marked + rng.normal(0, sigma, marked.shape)), 0, 255).astype(np.uint8)
            d = detect_watermark(noisy)
            assert d.payload in (None, PAYLOAD) and d.present == (d.payload is not None), (i, sigma, d)
            assert d.present or d.confidence == 0.0


def test_no_false_positive_on_unmarked_content(clips, tmp_path):
    rng = np.random.default_rng(1)
    unmarked = [*clips, rng.integers(0, 256, (17, 64, 64, 3), dtype=np.uint8), _h264(clips[0], tmp_path)]
    for frames in unmarked:
        d = detect_watermark(frames)
        assert not d.present and d.payload is None and d.confidence == 0.0


def test_another_key_reads_nothing(clips):
    marked = embed_watermark(clips[0], PAYLOAD)
    assert not detect_watermark(marked, replace(WatermarkConfig(), key=12345)).present


def test_other_sizes_and_single_image():
    frames = sample_example("train", 7, 4, width=96, height=64)[1]
    assert detect_watermark(embed_watermark(frames, PAYLOAD)).payload == PAYLOAD
    still = embed_watermark(sample_example("train", 7, 5)[1][:1], PAYLOAD)
    assert detect_watermark(still).payload == PAYLOAD


def test_bad_inputs_are_named():
    with pytest.raises(InvalidInputError, match="uint8"):
        embed_watermark(np.zeros((2, 8, 8, 3), dtype=np.float32), PAYLOAD)
    with pytest.raises(InvalidInputError, match="too small"):
        detect_watermark(np.zeros((2, 4, 4, 3), dtype=np.uint8))
    with pytest.raises(InvalidInputError, match="strength"):
        WatermarkConfig(strength=0.0)


def test_grid_free_band_leaves_out_axes_and_the_latent_lattice():
    """Walls, floors and the decoder's 8-px latent grid put the content's energy on the axes and on
    multiples of 4 cycles per tile; the default band carries no bit there."""
    band = _band(WatermarkConfig())
    ky, kx = band[:, 0], band[:, 1]
    assert len(band) >= CODED_BITS and np.all(ky != 0) and np.all(kx != 0)
    assert not np.any((ky % 4 == 0) & (kx % 4 == 0))
    old = _band(WATERMARK_PRESETS["v2"])
    assert np.any(old[:, 0] == 0) and len(old) > len(band)


def test_marks_of_the_previous_band_are_read_with_the_v2_preset(clips):
    v2 = replace(WATERMARK_PRESETS["v2"], trials=1)
    old = embed_watermark(clips[0], PAYLOAD, v2)
    assert detect_watermark(old, v2).payload == PAYLOAD
    assert not detect_watermark(old).present


def test_frames_smaller_than_the_tile_are_solved_by_least_squares(clips):
    """A 10% crop of a 64 px clip is smaller than the 64 px tile: on the cells it covers the modes leak
    into each other, and the ridge least-squares soft bits undo that (fewer coded-bit errors than the
    plain correlations at the same shift)."""
    flat = np.full((9, 64, 64, 3), 128, np.uint8)
    plain = replace(WatermarkConfig(), ridge=None)
    fewer = 0
    for frames in [flat, *clips]:
        marked = embed_watermark(frames, PAYLOAD)
        for crop in (marked[:, 7:59, 5:57], marked[:, 10:50, 3:60]):
            solved, correlated = detect_watermark(crop), detect_watermark(crop, plain)
            assert solved.payload == PAYLOAD and solved.shift == correlated.shift
            assert solved.bit_errors <= correlated.bit_errors
            fewer += solved.bit_errors < correlated.bit_errors
    assert fewer >= 5  # of 8
    with pytest.raises(InvalidInputError, match="ridge"):
        WatermarkConfig(ridge=0.0)
