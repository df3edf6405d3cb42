"""Evaluation of each generation mode: measurements on arrays with known answers, ground-truth
calibration, and every mode end to end on the tiny random-weight model (its outputs are noise, so
the end-to-end tests check the machinery and the report, not quality)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from kinema.dit import DIT_PRESETS, DiT
from kinema.errors import InvalidInputError
from kinema.eval import modes_cli
from kinema.eval.modes import (
    EVAL_MODES,
    GroundTruth,
    Measurement,
    ModeBars,
    ModeEvalConfig,
    area_downsample_frames,
    edge_energy,
    edit_measurements,
    identity_kept,
    json_number,
    loop_ratio,
    mean_speed,
    motion_kept,
    psnr,
    recolor_caption,
    run_modes,
    scale_spec,
    seam_measurements,
    seam_ratio,
    seam_speed_change,
    upsample_frames,
    window_consistency,
)
from kinema.eval.tracker import track
from kinema.refine import Refiner, RefinerConfig
from kinema.world import render, sample_spec

from conftest import build_tiny_pipeline, perturb_

BARS = ModeBars()


def square_clip(xs: list[float], size: int = 32, side: int = 6) -> np.ndarray:
    """A red square whose left edge is at ``xs[i]`` (whole pixels) on the light background."""
    out = np.full((len(xs), size, size, 3), 200, dtype=np.uint8)
    for i, x in enumerate(xs):
        out[i, 12 : 12 + side, int(x) : int(x) + side] = (220, 40, 40)
    return out


def gt_clip(index: int, size: int = 64, frames: int = 33) -> GroundTruth:
    spec = sample_spec("heldout", 0, index, size, size, 16.0, frames)
    f = render(spec)
    return GroundTruth(f"heldout-{index:05d}", index, spec, f, track(f))


# ------------------------------------------------------------------------------------------ pixel measurements
def test_seam_ratio_identical_frame_is_zero_and_a_jump_is_large():
    clip = square_clip([2, 4, 6, 8, 8, 10, 12, 14])  # frame 4 repeats frame 3
    assert seam_ratio(clip, 4) == 0.0
    jump = square_clip([2, 4, 6, 8, 22, 24, 26, 26])
    assert seam_ratio(jump, 4) > 1.5
    smooth = square_clip([2, 4, 6, 8, 10, 12, 14, 16])
    assert seam_ratio(smooth, 4) == pytest.approx(1.0)
    with pytest.raises(InvalidInputError, match="seam=8 out of range"):
        seam_ratio(smooth, 8)


def test_seam_ratio_of_a_still_scene_is_floored_not_divided_by_zero():
    still = square_clip([5] * 6)
    assert seam_ratio(still, 3) == 0.0
    moved = still.copy()
    moved[3:] = square_clip([9] * 3)
    assert np.isfinite(seam_ratio(moved, 3)) and seam_ratio(moved, 3) > 1.5


def test_loop_ratio_perfect_and_broken_loops():
    xs = [4, 6, 8, 10, 12, 10, 8, 6]  # last -> first is one step of 2 px, like every other step
    assert loop_ratio(square_clip(xs)) == pytest.approx(1.0)
    assert loop_ratio(square_clip(xs + [4])) == 0.0  # the last frame is the first again
    assert loop_ratio(square_clip([4, 6, 8, 10, 12, 14, 16, 18, 20])) > 1.5  # a clip that never comes back


def test_psnr_inf_for_identical_frames_is_handled():
    a = square_clip([3])
    assert psnr(a, a) == float("inf")
    assert Measurement("p", psnr(a, a), 30.0, ">=").passed is True
    assert json_number(float("inf")) == "inf" and json_number(float("nan")) is None
    assert Measurement("r", float("nan"), 1.5, "<=").passed is False
    assert Measurement("x", 3.0).passed is None
    b = a.copy()
    b[0, 0, 0, 0] += 1
    assert 60 < psnr(a, b) < 90
    with pytest.raises(InvalidInputError, match="one shape"):
        psnr(a, a[:, :4])


def test_edge_energy_bilinear_blurs_and_area_downsample_inverts_upsample_of_flat_areas():
    clip = square_clip([4, 8])
    up = upsample_frames(clip, 2)
    assert up.shape == (2, 64, 64, 3)
    sharp = np.repeat(np.repeat(clip, 2, axis=1), 2, axis=2)  # nearest: the sharpest 2x
    assert edge_energy(up) < edge_energy(sharp)
    assert np.array_equal(area_downsample_frames(sharp, 2), clip)


def test_scale_spec_renders_the_same_clip_at_twice_the_size():
    spec = sample_spec("heldout", 0, 3, 32, 32, 16.0, 17)
    big = scale_spec(spec, 2)
    assert (big.width, big.height) == (64, 64)
    assert psnr(area_downsample_frames(render(big), 2), render(spec)) > 30.0


# ------------------------------------------------------------------------------------------ tracker measurements
def test_seam_speed_change_known_answers():
    t = np.arange(12, dtype=np.float64)
    constant = np.stack([2.0 * t, np.full(12, 10.0)], axis=1)  # (f, 2)
    assert seam_speed_change(constant, 6) == pytest.approx(0.0)
    falling = np.stack([np.full(12, 10.0), 1.0 + 0.5 * 0.4 * t**2], axis=1)  # gravity is not a seam fault
    assert seam_speed_change(falling, 6) == pytest.approx(0.0, abs=1e-9)
    faster = constant.copy()
    faster[6:, 0] = faster[5, 0] + 4.0 * np.arange(1, 7)  # 2 px/frame before, 4 after
    assert seam_speed_change(faster, 6) == pytest.approx(1.0)
    unseen = constant.copy()
    unseen[7] = np.nan
    assert seam_speed_change(unseen, 6) is None
    assert seam_speed_change(constant, 2) is None  # not enough frames before the seam


def test_ground_truth_passes_its_own_seam_identity_and_window_checks():
    gt = gt_clip(2)
    ms = {m.name: m for m in seam_measurements(gt.frames, gt, 17, BARS, generated=(17, 33))}
    assert ms["speed_change"].value == 0.0 and ms["same_objects"].passed and ms["motion_kept"].value == 1.0
    kept, _ = identity_kept(gt.frames[0], gt.result, gt.result, BARS)
    assert kept == 1.0
    assert window_consistency(gt.result, 8) == (1.0, 4)


def test_broken_continuations_fail():
    gt = gt_clip(14)  # a yellow ball and a purple triangle move sideways
    n = gt.frames.shape[0]
    background = np.repeat(gt.frames[:1] * 0 + gt.frames[0, :1, :1], n, axis=0)  # the background colour only
    lost, why = identity_kept(gt.frames[0], track(background), gt.result, BARS)
    assert lost == 0.0 and "lost" in why
    jumped = np.concatenate([gt.frames[:17], gt.frames[17:][::-1]])  # the continuation runs backwards
    ms = {m.name: m for m in seam_measurements(jumped, gt, 17, BARS)}
    assert ms["seam_ratio"].value > 5 and ms["speed_change"].value == float("inf")  # the tracks break at the seam
    assert not ms["seam_ratio"].passed and not ms["speed_change"].passed
    other = gt_clip(29)  # different objects after the seam
    swapped = np.concatenate([gt.frames[:17], other.frames[17:]])
    assert {m.name: m for m in seam_measurements(swapped, gt, 17, BARS)}["same_objects"].passed is False
    share, windows = window_consistency(track(np.concatenate([gt.frames[:16], other.frames[:16]])), 8)
    assert windows == 4 and share == 0.5


def test_a_continuation_that_stops_or_races_does_not_keep_the_motion():
    gt = gt_clip(14)  # a yellow ball and a purple triangle move sideways
    assert mean_speed(gt.result, 17, 33) > 0.5
    frozen = np.concatenate([gt.frames[:17], np.repeat(gt.frames[16:17], 16, axis=0)])  # the objects stop at the seam
    ms = {m.name: m for m in seam_measurements(frozen, gt, 17, BARS, generated=(17, 33))}
    assert ms["same_objects"].passed and ms["seam_ratio"].passed  # a smooth seam, the same objects ...
    assert not ms["motion_kept"].passed and ms["motion_kept"].value < 0.5  # ... but nothing moves after it
    assert "0.00 px/frame generated" in ms["motion_kept"].detail
    fast = np.concatenate([gt.frames[:17], gt.frames[17:33:2], gt.frames[31:32].repeat(8, axis=0)])  # 2x, then still
    value, _ = motion_kept(track(fast), gt.result, 17, 25, BARS)
    assert value == pytest.approx(0.5, abs=0.1)
    assert "motion_kept" not in {m.name for m in seam_measurements(gt.frames, gt, 17, BARS)}  # only when asked


def test_edit_measurements_on_a_perfect_edit_and_on_no_edit():
    gt = gt_clip(2)
    change = recolor_caption(gt.spec, np.random.default_rng(0))
    assert change is not None
    caption, old, new = change
    assert new in caption.split() and old not in caption.split() and old in gt.spec.caption.split()
    edited = dataclasses.replace(gt.spec, objects=[
        dataclasses.replace(o, color=new if o.color == old else o.color,
                            frames=[dataclasses.replace(fr, color=new if fr.color == old else fr.color) for fr in o.frames])
        for o in gt.spec.objects])
    perfect = {m.name: m.passed for m in edit_measurements(render(edited), gt.result, old, new, BARS)}
    assert perfect == {"new_color": True, "shapes_kept": True, "count_kept": True, "directions_kept": True}
    unchanged = {m.name: m.passed for m in edit_measurements(gt.frames, gt.result, old, new, BARS)}
    assert unchanged["new_color"] is False and unchanged["shapes_kept"] is True


# ------------------------------------------------------------------------------------------ end to end
def _args(**kw: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    modes_cli.add_parser(parser.add_subparsers())
    argv = ["eval-modes"]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return parser.parse_args(argv)


def test_every_mode_end_to_end_through_the_cli(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "report"
    args = _args(model=tiny_model_dir, size="32x32", frames=17, n=2, long_n=1, steps=2, long_seconds=2.0,
                 window_seconds=0.5, out=out, quiet=True)
    assert args.func(args) == 0
    report = json.loads((out / "report.json").read_text())
    ran = [m for m in EVAL_MODES if m != "refine"]
    assert list(report["modes"]) == ran
    assert report["skipped_modes"] == {"refine": "model 'kinema-tiny-test' has no refiner"}
    expected = {"i2v": {"first_frame_psnr_db", "identity_kept"}, "extend": {"seam_ratio", "speed_change", "same_objects", "motion_kept"},
                "loop": {"loop_ratio"}, "connect": {"start_seam_ratio", "end_seam_ratio", "start_psnr_db", "end_psnr_db"},
                "edit": {"new_color", "shapes_kept", "count_kept", "directions_kept"}, "long": {"windows_consistent", "seconds"}}
    for mode, names in expected.items():
        assert set(report["modes"][mode]["measurements"]) == names
    ext = report["modes"]["extend"]["measurements"]["seam_ratio"]
    assert ext["bar"] == 1.5 and ext["op"] == "<=" and ext["n"] == 2 and 0.0 <= ext["pass_rate"] <= 1.0
    assert report["modes"]["long"]["clips"] == 1
    assert report["modes"]["long"]["measurements"]["seconds"]["median"] == pytest.approx(2.0)
    psnr0 = report["modes"]["i2v"]["measurements"]["first_frame_psnr_db"]
    assert psnr0["pass_rate"] == 0.0  # random weights do not reproduce the image: the bar can fail
    assert all(r["seconds"] > 0 for r in report["results"])
    assert len(report["results"]) + len(report["skipped_clips"]) == 2 * (len(ran) - 1) + 1
    md = (out / "report.md").read_text()
    assert "| mode | measurement | value | bar | pass rate | n |" in md
    assert "| extend | seam_ratio |" in md and "<= 1.5" in md and "Not run: refine" in md
    assert "| i2v | first_frame_psnr_db |" in capsys.readouterr().out


def test_a_mode_the_model_lacks_is_a_clear_error(tiny_model_dir, tmp_path):
    args = _args(model=tiny_model_dir, size="32x32", frames=17, n=1, modes="loop,refine", out=tmp_path / "x", quiet=True)
    with pytest.raises(InvalidInputError, match="refine: model 'kinema-tiny-test' has no refiner"):
        args.func(args)
    args = _args(model=tiny_model_dir, size="32x32", frames=17, n=1, modes="loop,zoom", out=tmp_path / "x", quiet=True)
    with pytest.raises(InvalidInputError, match=r"unknown modes \['zoom'\]"):
        args.func(args)
    args = _args(model=tiny_model_dir, size="64x64", n=1, modes="loop", out=tmp_path / "x", quiet=True)
    with pytest.raises(InvalidInputError, match="size 64x64 is not supported"):
        args.func(args)


def test_refine_mode_on_a_pipeline_with_a_refiner(text_encoder):
    pipe = build_tiny_pipeline(text_encoder, seed=1)
    torch.manual_seed(2)
    dit = DiT(replace(DIT_PRESETS["tiny"], in_channels=pipe.vae.config.latent_channels))
    perturb_(dit, seed=2)
    pipe.refiner = Refiner(dit, pipe.vae, RefinerConfig(scale_factor=2))
    cfg = ModeEvalConfig(n=1, width=32, height=32, num_frames=9, steps=2, refine_steps=2, modes=("refine",))
    run = run_modes(pipe, cfg, progress=False)
    assert [r.mode for r in run.results] == ["refine"]
    ms = {m.name: m for m in run.results[0].measurements}
    assert set(ms) == {"tracker_metrics_kept", "edge_ratio", "gt_edge_ratio", "gt_psnr_db", "gt_psnr_gain_db", "gt_vae_psnr_db"}
    assert ms["edge_ratio"].value > 0 and np.isfinite(ms["gt_psnr_db"].value) and np.isfinite(ms["gt_vae_psnr_db"].value)
    assert ms["gt_psnr_gain_db"].value < 0 and ms["gt_psnr_gain_db"].passed is None  # reported: a random refiner is far worse than bilinear
    assert ms["gt_edge_ratio"].op == ">=" and ms["gt_edge_ratio"].bar == 1.0


def test_long_videos_on_more_clips_than_the_other_modes(text_encoder):
    """``long_n`` above ``n`` runs the long mode on ``long_n`` clips instead of being cut to ``n``."""
    pipe = build_tiny_pipeline(text_encoder, seed=1)
    cfg = ModeEvalConfig(n=1, long_n=2, width=32, height=32, num_frames=17, steps=2, long_seconds=2.0,
                         window_seconds=0.5, modes=("loop", "long"))
    run = run_modes(pipe, cfg, progress=False)
    assert sorted((r.mode, r.clip_id) for r in run.results) == [
        ("long", "heldout-00000"), ("long", "heldout-00001"), ("loop", "heldout-00000")]
    with pytest.raises(InvalidInputError, match="long_n=-1"):
        run_modes(pipe, replace(cfg, long_n=-1), progress=False)
