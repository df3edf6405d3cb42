"""finalize_output: watermark + C2PA + sidecar; kinema detect; tampering; reproduction."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from kinema.safety import finalize_output, load_record, new_generation_id, reproduce
from kinema.safety import cli as safety_cli
from kinema.safety.c2pa import DIGITAL_SOURCE_TYPE, build_manifest, ensure_credentials, sign_file, verify_file
from kinema.safety.detect import inspect_file
from kinema.safety.provenance import sidecar_path
from kinema.video import Video, read_video
from kinema.world import sample_example

MODEL = "kinema-world-demo"


@pytest.fixture(autouse=True)
def c2pa_dir(tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.getbasetemp() / "c2pa-creds"
    monkeypatch.setenv("KINEMA_C2PA_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def clip() -> Video:
    spec, frames = sample_example("train", 7, 2)
    return Video(frames=frames, fps=16.0)


def _params(prompt: str = "a large blue box is tossed to the left") -> dict[str, object]:
    return {"prompt": prompt, "negative_prompt": "", "width": 64, "height": 64, "frames": 33, "fps": 16.0,
            "steps": 20, "guidance": 4.0, "sampler": "euler", "shift": 1.0, "seed": 3, "model": MODEL}


@pytest.mark.parametrize("suffix", [".mp4", ".png", ".gif", ".webm"])
def test_finalize_output_marks_signs_and_records(clip, tmp_path, suffix):
    gid = new_generation_id()
    video = clip if suffix != ".png" else Video(frames=clip.frames[:1], fps=1.0)
    path = finalize_output(video, tmp_path / f"out{suffix}", _params(), model_id=MODEL, generation_id=gid)
    report = inspect_file(path)
    assert report.watermark.present and report.matches_record is True
    assert report.record is not None and report.record["generation_id"] == gid
    sidecar = json.loads(sidecar_path(path).read_text())
    assert sidecar["params"]["seed"] == 3 and sidecar["files"][path.name]
    if suffix == ".webm":
        assert not report.c2pa.present  # the C2PA SDK does not support WebM
        return
    c = report.c2pa
    assert c.present and c.valid and c.trusted and c.ai_generated, c
    assert c.generation is not None and c.generation["model_id"] == MODEL
    assert "prompt" not in c.generation["params"]  # only its hash is in the manifest
    assert len(str(c.generation["prompt_sha256"])) == 64
    assert report.verdict == "kinema-generated"


def test_tampered_files_fail_verification(clip, tmp_path):
    for suffix in (".mp4", ".png"):
        video = clip if suffix == ".mp4" else Video(frames=clip.frames[:1], fps=1.0)
        path = finalize_output(video, tmp_path / f"t{suffix}", _params(), model_id=MODEL, generation_id="g1")
        data = bytearray(path.read_bytes())
        if suffix == ".mp4":
            data[len(data) // 2] ^= 0xFF  # a byte of the media data
        else:
            data = _edit_png_pixel(bytes(data))
        bad = tmp_path / f"bad{suffix}"
        bad.write_bytes(bytes(data))
        report = inspect_file(bad)
        assert report.c2pa.present and not report.c2pa.valid and report.c2pa.failures, report.c2pa
        assert report.verdict == "tampered"


def _edit_png_pixel(data: bytes) -> bytearray:
    """Change one pixel but keep the file a valid PNG: new image data after the original header chunks
    (which include the C2PA manifest)."""
    import io

    from PIL import Image

    frame = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).copy()
    frame[10, 10] ^= 0x40
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    new = buf.getvalue()
    return bytearray(data[: data.find(b"IDAT") - 4] + new[new.find(b"IDAT") - 4 :])


def test_unsigned_file_and_own_certificate(tmp_path, clip):
    plain = clip.save(tmp_path / "plain.mp4")
    report = inspect_file(plain)
    assert not report.c2pa.present and not report.watermark.present and report.verdict == "not-detected"
    own = ensure_credentials(tmp_path / "mine")  # a different chain: valid but not trusted by the default anchors
    signed = clip.save(tmp_path / "own.mp4")
    sign_file(signed, build_manifest(title="own.mp4", model_id=MODEL, generation={"model_id": MODEL}), own)
    c = verify_file(signed)
    assert c.present and c.valid and not c.trusted
    assert verify_file(signed, trust_anchors=own.anchor_pem).trusted
    actions = json.dumps(build_manifest(title="x", model_id=MODEL, generation={}))
    assert DIGITAL_SOURCE_TYPE in actions


def test_record_from_container_metadata(clip, tmp_path):
    path = finalize_output(clip, tmp_path / "m.mp4", _params(), model_id=MODEL, generation_id="g2")
    sidecar_path(path).unlink()
    record = load_record(path)
    assert record is not None and record["generation_id"] == "g2" and record["params"]["prompt"] == _params()["prompt"]


def test_reproduce_from_record(tiny_pipeline, tmp_path):
    params = {"prompt": "a red ball", "negative_prompt": "", "width": 32, "height": 32, "frames": 1, "fps": 16.0,
              "steps": 2, "guidance": 3.0, "sampler": "euler", "seed": 5}
    video = tiny_pipeline.generate(**params)
    path = finalize_output(video, tmp_path / "r.png", params, model_id=tiny_pipeline.name, generation_id="g3")
    again = reproduce(load_record(path), tiny_pipeline)
    assert np.array_equal(again.frames, read_video(path).frames)


def test_detect_command(clip, tmp_path, capsys):
    path = finalize_output(clip, tmp_path / "c.mp4", _params(), model_id=MODEL, generation_id="g4")
    parser = argparse.ArgumentParser()
    safety_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["detect", str(path), "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "kinema-generated" and out["watermark"]["present"] and out["c2pa"]["valid"]
    args = parser.parse_args(["detect", str(path)])
    assert safety_cli.run(args) == 0
    assert "watermark: present" in capsys.readouterr().out


def test_detect_command_reads_marks_of_earlier_versions_with_a_preset(clip, tmp_path, capsys):
    """A file marked with the session 15-17 band: the default preset finds nothing, ``--watermark v2`` reads it."""
    from kinema.errors import InvalidInputError
    from kinema.safety.watermark import WATERMARK_PRESETS, Payload, embed_watermark
    from kinema.video import Video

    payload = Payload.from_ids(MODEL, "g-old")
    old = Video(frames=embed_watermark(clip.frames, payload, WATERMARK_PRESETS["v2"]), fps=clip.fps)
    path = old.save(tmp_path / "old.mp4")
    parser = argparse.ArgumentParser()
    safety_cli.add_parser(parser.add_subparsers())
    assert safety_cli.run(parser.parse_args(["detect", str(path), "--json"])) == 0
    assert not json.loads(capsys.readouterr().out)["watermark"]["present"]
    assert safety_cli.run(parser.parse_args(["detect", str(path), "--json", "--watermark", "v2"])) == 0
    mark = json.loads(capsys.readouterr().out)["watermark"]
    assert mark["present"] and mark["payload"] == payload.hex()
    with pytest.raises(InvalidInputError, match="unknown watermark preset 'v9'"):
        safety_cli.run(parser.parse_args(["detect", str(path), "--watermark", "v9"]))
