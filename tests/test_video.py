"""Video writing and reading through real PyAV encoders and decoders."""

from __future__ import annotations

import numpy as np
import pytest

from kinema.errors import InvalidInputError, VideoIOError
from kinema.video import Video, read_video


def _moving_square(frames: int = 17, h: int = 48, w: int = 64) -> Video:
    x = np.full((frames, h, w, 3), 200, np.uint8)
    for i in range(frames):
        x[i, 10:26, 2 + 2 * i : 18 + 2 * i] = (220, 40, 40)
    return Video(x, fps=16.0, metadata={"comment": "kinema-test"})


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".gif"])
def test_round_trip_keeps_frames_size_and_fps(tmp_path, suffix):
    video = _moving_square()
    path = video.save(tmp_path / f"clip{suffix}")
    back = read_video(path)
    assert back.frames.shape == video.frames.shape
    assert back.fps == pytest.approx(16.0, rel=0.05)
    err = np.abs(back.frames.astype(np.int16) - video.frames.astype(np.int16)).mean()
    assert err < 3.0, f"{suffix} round trip mean abs error {err}"


def test_mp4_is_h264_yuv420p_faststart(tmp_path):
    import av

    path = _moving_square().save(tmp_path / "a.mp4")
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264"
        assert s.codec_context.pix_fmt == "yuv420p"
        assert c.metadata.get("comment") == "kinema-test"
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat"), "moov atom must come first (faststart)"


def test_png_single_and_sequence(tmp_path):
    one = Video(_moving_square().frames[:1], fps=16.0)
    p = one.save(tmp_path / "img.png")
    assert read_video(p).frames.shape == (1, 48, 64, 3)
    first = _moving_square(frames=3).save(tmp_path / "seq.png")
    assert first.name == "seq_0000.png"
    assert sorted(x.name for x in tmp_path.glob("seq_*.png")) == ["seq_0000.png", "seq_0001.png", "seq_0002.png"]


def test_tensor_round_trip_is_exact():
    video = _moving_square()
    x = video.to_tensor()
    assert x.shape == (1, 3, 17, 48, 64) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(Video.from_tensor(x, fps=16.0).frames, video.frames)


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="unknown output type '.avi2'"):
        _moving_square().save(tmp_path / "x.avi2")
    with pytest.raises(InvalidInputError, match="even width and height"):
        Video(np.zeros((3, 15, 16, 3), np.uint8), fps=8).save(tmp_path / "odd.mp4")
    assert not (tmp_path / "odd.mp4").exists()
    with pytest.raises(InvalidInputError, match="uint8"):
        Video(np.zeros((3, 16, 16, 3), np.float32), fps=8)
    with pytest.raises(VideoIOError, match="no such"):
        read_video(tmp_path / "missing.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"garbage" * 100)
    with pytest.raises(VideoIOError, match="corrupt.mp4"):
        read_video(corrupt)


def test_failed_write_keeps_existing_file(tmp_path):
    path = _moving_square().save(tmp_path / "keep.mp4")
    before = path.read_bytes()
    with pytest.raises(InvalidInputError):
        Video(np.zeros((3, 15, 16, 3), np.uint8), fps=8).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]


def test_outputs_get_the_usual_file_mode(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        path = _moving_square().save(tmp_path / "mode.mp4")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
