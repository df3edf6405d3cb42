"""Every conditioning mode end to end on the tiny pipeline: lengths, given frames kept, errors."""

from __future__ import annotations

import numpy as np
import pytest

from kinema.errors import InvalidInputError
from kinema.modes import crossfade, encode, fit_frames
from kinema.video import Video


def same_but_watermark(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to the invisible watermark every generated frame carries (PSNR >= 38 dB)."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean()
    return a.shape == b.shape and (mse == 0 or 10 * np.log10(255**2 / mse) >= 38)


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """The same frames up to the watermark, whose gain is set per clip (mean difference under 1 level)."""
    return a.shape == b.shape and float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean()) < 1.0


def clip(n: int, w: int = 32, h: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.full((n, h, w, 3), 200, np.uint8)
    for i in range(n):
        base[i, 8:16, 2 + i : 10 + i] = (220, 40, 40)
    base[:, 20:28, 20:28] = rng.integers(0, 255, 3, dtype=np.uint8)
    return base


def test_i2v_starts_from_the_image(tiny_pipeline):
    image = clip(1)[0]
    out = tiny_pipeline.generate("a red ball", image=image, frames=9, steps=2)
    assert out.frames.shape == (9, 32, 32, 3)
    # Frame 0 is the decoded given latent: identical to a plain encode/decode of the image.
    from kinema.modes import decode

    expected = decode(tiny_pipeline, encode(tiny_pipeline, image[None]))[0]
    assert same_but_watermark(out.frames[0], expected)
    other = tiny_pipeline.generate("a red ball", image=clip(1, seed=3)[0], frames=9, steps=2)
    assert not np.array_equal(other.frames[0], out.frames[0])


def test_crossfade_ramps_toward_the_seam():
    frames = np.zeros((3, 2, 2, 3), np.uint8)
    window = np.full((3, 2, 2, 3), 200, np.uint8)
    assert crossfade(frames, window, rising=True)[:, 0, 0, 0].tolist() == [50, 100, 150]
    assert crossfade(frames, window, rising=False)[:, 0, 0, 0].tolist() == [150, 100, 50]
    with pytest.raises(ValueError, match="shapes differ"):
        crossfade(frames, window[:2], rising=True)


def test_extend_forward_keeps_input_and_adds_any_length(tiny_pipeline):
    src = clip(9)
    out = tiny_pipeline.generate("a red ball", video=Video(src, fps=16), frames=30, steps=2, blend_seams=False, generation_id="g")  # > 1 window
    assert out.frames.shape == (9 + 30, 32, 32, 3)
    assert same_but_watermark(out.frames[:9], src)
    again = tiny_pipeline.generate("a red ball", video=Video(src, fps=16), frames=30, steps=2, blend_seams=False, generation_id="g")
    assert np.array_equal(out.frames, again.frames)
    # by default the context latents' frames before each seam (2 x 2 here) fade into the window's decoding of them
    blended = tiny_pipeline.generate("a red ball", video=Video(src, fps=16), frames=30, steps=2, generation_id="g")
    span = 2 * tiny_pipeline.temporal_factor
    assert close(blended.frames[: 9 - span], out.frames[: 9 - span]) and close(blended.frames[9 : 9 + span], out.frames[9 : 9 + span])
    change = [np.abs(blended.frames[i].astype(int) - src[i].astype(int)).mean() for i in range(9 - span, 9)]
    assert change == sorted(change) and change[-1] > 4.0, change


def test_extend_backward_keeps_input_at_the_end(tiny_pipeline):
    src = clip(9)
    out = tiny_pipeline.generate("a red ball", video=src, mode="extend_backward", frames=10, steps=2, blend_seams=False, generation_id="g")
    assert out.frames.shape == (19, 32, 32, 3)
    assert same_but_watermark(out.frames[-9:], src)
    blended = tiny_pipeline.generate("a red ball", video=src, mode="extend_backward", frames=10, steps=2, generation_id="g")
    span = 2 * tiny_pipeline.temporal_factor
    assert close(blended.frames[10 + span :], out.frames[10 + span :]) and close(blended.frames[:10], out.frames[:10])
    assert not close(blended.frames[10:11], src[:1])


def test_connect_puts_the_transition_between_both_videos(tiny_pipeline):
    a, b = clip(9), clip(9, seed=5)[::-1].copy()
    out = tiny_pipeline.generate("a red ball", video=a, end_video=b, frames=3, steps=2, blend_seams=False, generation_id="g")
    assert same_but_watermark(out.frames[:9], a) and same_but_watermark(out.frames[-9:], b)
    assert out.num_frames == 9 + 3 + 9
    blended = tiny_pipeline.generate("a red ball", video=a, end_video=b, frames=3, steps=2, generation_id="g")
    span = 2 * tiny_pipeline.temporal_factor
    assert close(blended.frames[: 9 - span], out.frames[: 9 - span]) and close(blended.frames[-(9 - span) :], out.frames[-(9 - span) :])
    assert not close(blended.frames[8:9], a[8:]) and not close(blended.frames[12:13], b[:1])


def test_loop_and_edit(tiny_pipeline):
    loop = tiny_pipeline.generate("a red ball", mode="loop", frames=13, steps=2)
    assert loop.num_frames > 13 and loop.frames.shape[1:] == (32, 32, 3)
    src = clip(9)
    light = tiny_pipeline.generate("a blue ball", video=src, mode="edit", strength=0.05, steps=8)
    heavy = tiny_pipeline.generate("a blue ball", video=src, mode="edit", strength=1.0, steps=8)
    recon = tiny_pipeline.generate("a blue ball", video=src, mode="edit", strength=1e-3, steps=8)
    assert light.frames.shape == src.shape
    d_light = np.abs(light.frames.astype(int) - recon.frames.astype(int)).mean()
    d_heavy = np.abs(heavy.frames.astype(int) - recon.frames.astype(int)).mean()
    assert d_light < d_heavy, (d_light, d_heavy)


def test_inputs_of_another_size_are_resized_with_a_warning(tiny_pipeline, caplog):
    wide = clip(1, w=64, h=32)[0]
    out = tiny_pipeline.generate("a ball", image=wide, frames=5, steps=2)
    assert out.frames.shape == (5, 32, 32, 3)
    assert "centre-cropped" in caplog.text
    assert fit_frames(clip(2, w=64, h=32), 48, 32, "x").shape == (2, 32, 48, 3)


def test_mode_errors_name_the_problem(tiny_pipeline):
    with pytest.raises(InvalidInputError, match="unknown mode 'sideways'"):
        tiny_pipeline.generate("a ball", mode="sideways")
    with pytest.raises(InvalidInputError, match="needs an input video"):
        tiny_pipeline.generate("a ball", mode="extend")
    with pytest.raises(InvalidInputError, match="needs a second video"):
        tiny_pipeline.generate("a ball", video=clip(9), mode="connect")
    with pytest.raises(InvalidInputError, match="at least 3 are needed"):
        tiny_pipeline.generate("a ball", video=clip(1), mode="extend", frames=4)
    with pytest.raises(InvalidInputError, match=r"strength=1.5 not supported"):
        tiny_pipeline.generate("a ball", video=clip(9), mode="edit", strength=1.5)
    with pytest.raises(InvalidInputError, match="uint8 RGB"):
        tiny_pipeline.generate("a ball", image=np.zeros((8, 8), np.float32))


def test_cli_modes_end_to_end(tiny_model_dir, tmp_path):
    import subprocess
    import sys

    from kinema.video import read_video

    src = Video(clip(9), fps=16).save(tmp_path / "src.mp4")
    still = Video(clip(1), fps=16).save(tmp_path / "still.png")
    runs = {
        "i2v.mp4": ["--image", str(still), "--frames", "9"],
        "ext.mp4": ["--video", str(src), "--frames", "8"],
        "back.mp4": ["--video", str(src), "--mode", "extend_backward", "--frames", "8"],
        "loop.mp4": ["--mode", "loop", "--frames", "13"],
        "conn.mp4": ["--video", str(src), "--end-video", str(src), "--frames", "3"],
        "edit.mp4": ["--video", str(src), "--mode", "edit", "--strength", "0.5"],
    }
    lengths = {}
    for name, extra in runs.items():
        r = subprocess.run([sys.executable, "-m", "kinema", "generate", "a red ball", "-o", str(tmp_path / name), "--model", str(tiny_model_dir), "--steps", "2", "--quiet", *extra],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (name, r.stderr)
        lengths[name] = read_video(tmp_path / name).num_frames
    assert lengths == {"i2v.mp4": 9, "ext.mp4": 17, "back.mp4": 17, "loop.mp4": lengths["loop.mp4"], "conn.mp4": 21, "edit.mp4": 9}
    r = subprocess.run([sys.executable, "-m", "kinema", "generate", "x", "-o", str(tmp_path / "e.mp4"), "--model", str(tiny_model_dir), "--video", str(tmp_path / "missing.mp4")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no such video or image file" in r.stderr and "Traceback" not in r.stderr
