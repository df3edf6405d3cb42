"""kinema.ui without a browser: generate_clip files and settings, modes, uploads, errors, refine, the app's layout."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import build_tiny_pipeline, perturb_
from kinema.dit import DiT
from kinema.errors import InvalidInputError, RefusedPromptError
from kinema.text import TextEncoder
from kinema.ui.clip import ClipRequest, StudioModel, generate_clip, user_message
from kinema.ui.provenance import NOT_INSTALLED, SafetyHooks, provenance_markdown
from kinema.video import Video, read_video

PROMPT = "a red ball moves left on a dark background"


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> StudioModel:
    return StudioModel.load(tiny_model_dir)


@pytest.fixture(scope="module")
def refiner_model_dir(tiny_refined_model_dir: Path) -> Path:
    return tiny_refined_model_dir


def _clip(model: StudioModel, out: Path, **kw: object) -> tuple[object, list[tuple[float, str]]]:
    seen: list[tuple[float, str]] = []
    req = ClipRequest(**{"prompt": PROMPT, "seconds": 0.5, "steps": 2, "seed": 3, **kw})  # type: ignore[arg-type]
    return generate_clip(model, req, out, progress=lambda f, d: seen.append((f, d))), seen


def test_t2v_writes_a_playable_webm_an_mp4_a_poster_and_settings(model: StudioModel, tmp_path: Path) -> None:
    res, seen = _clip(model, tmp_path)
    assert res.video.suffix == ".webm" and res.video.parent == tmp_path / res.generation_id
    webm, mp4 = read_video(res.video), read_video(res.downloads[0])
    assert webm.frames.shape == mp4.frames.shape == (9, 32, 32, 3)  # 0.5 s * 16 fps -> 1 + 4 * 2 frames
    assert abs(webm.fps - 16.0) < 1e-6 and np.abs(webm.frames.astype(int) - mp4.frames.astype(int)).mean() < 8
    assert [p.suffix for p in res.downloads] == [".mp4", ".webm", ".json"]
    assert json.loads(res.downloads[2].read_text()) == res.settings
    s = res.settings
    assert (s["prompt"], s["seed"], s["width"], s["height"], s["frames"], s["steps"], s["mode"]) == (PROMPT, 3, 32, 32, 9, 2, "t2v")
    assert s["model"] == "kinema-tiny-test" and "refine" not in s and s["seconds"] == pytest.approx(9 / 16)
    meta = {k.lower(): v for k, v in webm.metadata.items()}  # Matroska upper-cases tag names
    assert json.loads(meta["kinema:params"])["generation_id"] == res.generation_id
    assert read_video(res.poster).frames.shape[1:3] == (256, 256)
    # the progress bar: sampling steps, then writing, ending at 1
    fracs = [f for f, _ in seen]
    assert fracs == sorted(fracs) and fracs[-1] == 1.0 and [d for _, d in seen] == ["sampling step 1/2", "decoding", "writing files", "done"]
    assert res.provenance["watermark"] == NOT_INSTALLED and "kinema.safety is not installed" in provenance_markdown(res.provenance)


def test_same_seed_same_clip_and_random_seed_is_recorded(model: StudioModel, tmp_path: Path) -> None:
    a, _ = _clip(model, tmp_path, seed=11)
    b, _ = _clip(model, tmp_path, seed=11)
    assert np.array_equal(read_video(a.video).frames, read_video(b.video).frames)
    r, _ = _clip(model, tmp_path, seed=-1)
    seed = r.settings["seed"]
    assert isinstance(seed, int) and 0 <= seed < 2**31
    again, _ = _clip(model, tmp_path, seed=seed)  # the recorded seed remakes the clip
    assert np.array_equal(read_video(r.video).frames, read_video(again.video).frames)
    c, _ = _clip(model, tmp_path, seed=12)
    assert not np.array_equal(read_video(a.video).frames, read_video(c.video).frames)


def test_size_aspect_fps_and_mp4_player(model: StudioModel, tmp_path: Path) -> None:
    res = generate_clip(model, ClipRequest(PROMPT, size="48x32", seconds=0.5, fps=8, steps=1), tmp_path, player_format=".mp4")
    v = read_video(res.video)
    assert res.video.suffix == ".mp4" and v.frames.shape == (5, 32, 48, 3) and abs(v.fps - 8) < 1e-6
    assert [label for label, _ in model.size_choices()] == ["32x32 (1:1)", "48x32 (3:2)", "32x48 (2:3)"]


def _png(path: Path, w: int = 40, h: int = 40) -> Path:
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:, : w // 2] = (220, 30, 30)
    return Video(frame[None], fps=1.0).save(path)


def test_image_to_video_edit_and_extend_from_uploads(model: StudioModel, tmp_path: Path) -> None:
    img = _png(tmp_path / "start.png")
    i2v, _ = _clip(model, tmp_path / "out", mode="i2v", image=str(img))
    assert read_video(i2v.video).num_frames == 9 and i2v.settings["inputs"] == {"image": "start.png"}
    clip = Video((np.random.default_rng(0).random((9, 32, 32, 3)) * 255).astype(np.uint8), fps=16).save(tmp_path / "in.mp4")
    edit, _ = _clip(model, tmp_path / "out", mode="edit", video=str(clip), strength=0.5)
    assert read_video(edit.video).num_frames == 9 and edit.settings["strength"] == 0.5 and edit.settings["mode"] == "edit"
    ext, seen = _clip(model, tmp_path / "out", mode="extend", video=str(clip), seconds=1.0)  # 16 new frames: two windows
    assert read_video(ext.video).num_frames == 9 + 16
    assert any("(pass 2)" in d for _, d in seen)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"prompt": "   "}, "the prompt is empty"),
        ({"mode": "i2v"}, "Image to video needs a start image: upload one"),
        ({"mode": "connect", "video": "x.mp4"}, "Connect two videos needs a second video"),
        ({"mode": "zoom"}, "unknown mode 'zoom'; choose one of t2v, i2v"),
        ({"size": "40x40"}, "size '40x40' is not one this model makes; choose one of 32x32, 48x32, 32x48"),
        ({"seconds": 9.0}, "seconds=9 is too long for t2v: at most 1 s"),
        ({"seed": 2**40}, "use an integer from 0 to 2147483647, or -1"),
        ({"refine": True}, "has no refiner"),
        ({"steps": 0}, "steps=0 not supported: must be between 1 and 1000"),
    ],
)
def test_errors_are_readable_and_nothing_is_written(model: StudioModel, tmp_path: Path, kw: dict, message: str) -> None:
    with pytest.raises(InvalidInputError) as e:
        _clip(model, tmp_path / "out", **kw)
    assert message in str(e.value)
    assert not (tmp_path / "out").exists()


def test_bad_uploads_name_the_file_and_the_allowed_types(model: StudioModel, tmp_path: Path) -> None:
    fake = tmp_path / "holiday.png"
    fake.write_text("not an image")
    with pytest.raises(InvalidInputError) as e:
        _clip(model, tmp_path / "out", mode="i2v", image=str(fake))
    msg = user_message(e.value)
    assert msg.startswith("The start image 'holiday.png' could not be read") and ".png, .jpg" in msg and str(tmp_path) not in msg
    doc = tmp_path / "notes.txt"
    doc.write_text("hello")
    with pytest.raises(InvalidInputError, match=r"the input video 'notes.txt' is not a supported file type \(.txt\); upload one of .mp4, .webm"):
        _clip(model, tmp_path / "out", mode="edit", video=str(doc))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    with pytest.raises(InvalidInputError, match="the input video 'broken.mp4' could not be read"):
        _clip(model, tmp_path / "out", mode="extend", video=str(broken))


def test_refused_prompt_with_the_real_moderator(model: StudioModel, tmp_path: Path) -> None:
    moderation = pytest.importorskip("kinema.safety.moderation")
    hooks = SafetyHooks(check_prompt=moderation.check_prompt)
    with pytest.raises(RefusedPromptError) as e:
        generate_clip(model, ClipRequest("a gory massacre in the street", steps=1), tmp_path / "out", safety=hooks)
    assert e.value.category == "violence" and user_message(e.value).startswith("Refused (violence): prompt refused")
    with pytest.raises(RefusedPromptError, match="negative prompt refused"):
        generate_clip(model, ClipRequest(PROMPT, negative_prompt="nsfw porn", steps=1), tmp_path / "out", safety=hooks)
    assert not (tmp_path / "out").exists()
    ok = generate_clip(model, ClipRequest(PROMPT, seconds=0, steps=1), tmp_path / "out", safety=hooks)
    assert read_video(ok.video).num_frames == 1


def test_refine_doubles_the_size_when_the_model_has_a_refiner(refiner_model_dir: Path, tmp_path: Path) -> None:
    m = StudioModel.load(refiner_model_dir)
    assert m.has_refiner and m.refine_factor == 2
    seen: list[tuple[float, str]] = []
    res = generate_clip(m, ClipRequest(PROMPT, seconds=0.25, steps=1, refine=True), tmp_path, progress=lambda f, d: seen.append((f, d)))
    assert read_video(res.video).frames.shape == (5, 64, 64, 3)
    assert res.settings["refine"] == {"steps": 10, "strength": 1.0, "guidance": 1.0} and res.settings["output_size"] == "64x64" and res.settings["width"] == 32
    assert ("decoding and refining" in [d for _, d in seen]) and seen[-1] == (1.0, "done")


def test_app_layout_refine_checkbox_and_mode_switching(model: StudioModel, refiner_model_dir: Path, tmp_path: Path) -> None:
    from kinema.ui.app import NO_REFINER_TIP, AppOptions, build_app, mode_updates

    def component(demo: object, elem_id: str) -> object:
        return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id)  # type: ignore[attr-defined]

    demo = build_app(model, AppOptions(out_dir=tmp_path))
    refine = component(demo, "refine")
    assert refine.interactive is False and refine.info == NO_REFINER_TIP and "no refiner" in NO_REFINER_TIP
    for elem_id in ("prompt", "mode", "generate", "result", "status", "downloads", "provenance", "history", "seed", "negative", "size"):
        component(demo, elem_id)
    assert [c[1] for c in component(demo, "size").choices] == ["32x32", "48x32", "32x48"]
    assert component(demo, "result").loop and component(demo, "result").autoplay
    with_refiner = build_app(StudioModel.load(refiner_model_dir), AppOptions(out_dir=tmp_path))
    assert component(with_refiner, "refine").interactive is True

    image, preview, video, end_video, strength, seconds = mode_updates(model, "Connect two videos")
    assert (image["visible"], video["visible"], end_video["visible"], strength["visible"]) == (False, True, True, False)
    assert seconds["maximum"] == 1.0 and seconds["label"].startswith("New seconds")
    assert mode_updates(model, "Extend forward")[5]["maximum"] == 4.0  # chained windows go past one model length
    image, *_, strength, seconds = mode_updates(model, "Edit a video")
    assert strength["visible"] and seconds["interactive"] is False
    assert mode_updates(model, "Loop")[0]["label"] == "Start image (optional)"


def test_cli_parser(tiny_model_dir: Path) -> None:
    from kinema.ui import cli

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ui", "--model", str(tiny_model_dir), "--port", "0", "--player-format", "mp4"])
    assert args.func is cli.run and args.host == "127.0.0.1" and args.player_format == "mp4"
    with pytest.raises(InvalidInputError, match="--port 0 invalid"):
        cli.run(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["ui", "--player-format", "avi"])


def test_real_safety_watermarks_signs_and_reports_provenance(model: StudioModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kinema.ui.provenance import load_safety

    monkeypatch.setenv("KINEMA_C2PA_DIR", str(tmp_path / "c2pa"))  # a throwaway signing chain, not ~/.config
    hooks = load_safety()
    if hooks.finalize_output is None:
        pytest.skip("kinema.safety does not export finalize_output")
    res = generate_clip(model, ClipRequest(PROMPT, size="48x32", seconds=1.0, steps=1, seed=2), tmp_path / "out", safety=hooks)
    p = res.provenance
    cred = p["content_credentials"]
    assert isinstance(cred, dict) and cred["present"] and cred["valid"] and cred["ai_generated"]
    assert p["verdict"] == "kinema-generated" and set(p["watermark"]) == {"mp4", "webm"}  # type: ignore[arg-type]
    assert all("present" in mark and "score" in mark for mark in p["watermark"].values())  # type: ignore[union-attr]
    assert (res.video.parent / "clip.mp4.json").is_file() and (res.video.parent / "clip.webm.json").is_file()
    text = provenance_markdown(p)
    assert "Content credentials (C2PA, MP4 download):** valid" in text and res.generation_id in text


def test_fast_uses_the_models_student_and_refuses_other_modes(text_encoder: TextEncoder, tmp_path: Path) -> None:
    pipe = build_tiny_pipeline(text_encoder, seed=7)
    student = DiT(pipe.dit.config)
    student.load_state_dict(pipe.dit.state_dict())
    perturb_(student, seed=8)
    pipe.fast_dit = student
    pipe.config = replace(pipe.config, fast_steps=2)
    folder = pipe.save_pretrained(tmp_path / "with-student")
    m = StudioModel.load(folder)
    assert m.has_student
    steps_seen: list[tuple[float, str]] = []
    res = generate_clip(m, ClipRequest(PROMPT, seconds=0.25, steps=9, guidance=7.0, fast=True), tmp_path / "out",
                        progress=lambda f, d: steps_seen.append((f, d)))
    assert res.settings["fast"] is True and res.settings["steps"] == 2 and res.settings["guidance"] == 1.0
    assert steps_seen[-1] == (1.0, "done")
    with pytest.raises(InvalidInputError, match="text-to-video only"):
        generate_clip(m, ClipRequest(PROMPT, mode="loop", fast=True), tmp_path / "out")
    without = StudioModel(build_tiny_pipeline(text_encoder), folder)
    assert not without.has_student
    with pytest.raises(InvalidInputError, match="no few-step student"):
        generate_clip(without, ClipRequest(PROMPT, fast=True), tmp_path / "out")
