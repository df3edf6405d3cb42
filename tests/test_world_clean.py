"""Kinema World samples are clean: every sampled clip shows what its caption says, deterministically."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import kinema.world
from kinema.errors import KinemaError
from kinema.world import (
    ClipSpec, clip_problems, describe, example_rng, heldout_matches, is_clean, is_ood, make_clip, parse_caption,
    sample_example, sample_scene, sample_spec,
)
from kinema.world.cli import main

N = 300
PROMISED = {"bounce": "wall_bounce", "collide": "collision", "fall": "floor_bounce", "pass_behind": "occlusion_end",
            "thrown": "throw"}


def _oracle(spec: ClipSpec) -> list[str]:
    """An independent reading of "clean": promised events happen, nothing breaks before frame 3, every
    object starts in view, and visible intact objects that do not collide never touch (triangles reach 1.25 r)."""
    bad = []
    for o in spec.objects:
        kinds = {e.kind for e in spec.events if o.id in e.objects}
        want = {"break"} if o.event == "break" else ({PROMISED[o.motion]} if o.motion in PROMISED else set())
        if o.event in ("bite", "color_change"):
            want.add(o.event)
        if not want <= kinds:
            bad.append(f"{o.id} misses {want - kinds}")
        if any(e.kind == "break" and o.id in e.objects and e.frame < 3 for e in spec.events):
            bad.append(f"{o.id} breaks too early")
        if o.frames[0].visible < 0.99:
            bad.append(f"{o.id} starts out of view")
    reach = {"triangle": 1.25}
    for i, a in enumerate(spec.objects):
        for b in spec.objects[i + 1:]:
            if a.motion == b.motion == "collide":
                continue
            for k, (fa, fb) in enumerate(zip(a.frames, b.frames)):
                if "broken" in (fa.state, fb.state) or fa.visible <= 0 or fb.visible <= 0:
                    continue
                r = fa.radius * reach.get(a.shape, 1.0) + fb.radius * reach.get(b.shape, 1.0)
                if np.hypot(fa.center[0] - fb.center[0], fa.center[1] - fb.center[1]) < r:
                    bad.append(f"{a.id} and {b.id} touch at frame {k}")
                    break
    return bad


@pytest.mark.parametrize("split", ["train", "test", "heldout", "ood"])
def test_every_sampled_clip_is_clean_and_in_its_split(split: str) -> None:
    redrawn = 0
    for i in range(N):
        spec = sample_spec(split, 0, i)
        assert spec.problems == [] and is_clean(spec), (i, spec.caption, clip_problems(spec))
        assert _oracle(spec) == [], (i, spec.caption, _oracle(spec))
        assert spec.split == split
        scene = parse_caption(spec.caption)  # a re-drawn scene still belongs to its split
        if split in ("train", "test"):
            assert not heldout_matches(scene) and not is_ood(scene), spec.caption
        elif split == "heldout":
            assert heldout_matches(scene) and not is_ood(scene), spec.caption
        else:
            assert is_ood(scene) and not heldout_matches(scene), spec.caption
        rng = example_rng(split, 0, i)
        redrawn += spec.caption != describe(sample_scene(rng, split), rng)
    # a clean first draw is kept as it is; only a few scenes need another draw
    assert redrawn <= N * (0.05 if split != "ood" else 0.15), redrawn


def test_redrawn_examples_are_deterministic() -> None:
    redrawn = []
    for i in range(120):
        rng = example_rng("test", 0, i)
        if sample_spec("test", 0, i).caption != describe(sample_scene(rng, "test"), rng):
            redrawn.append(i)
    assert redrawn, "expected some test examples whose first scene draw is not clean"
    i = redrawn[0]
    s1, f1 = sample_example("test", 0, i)
    s2, f2 = sample_example("test", 0, i)
    assert s1.to_json() == s2.to_json() and np.array_equal(f1, f2)
    assert sample_spec("test", 1, i).to_json() != s1.to_json()


def test_sampler_gives_up_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    redrawn = next(i for i in range(200) if _first_draw_unclean("test", i))
    monkeypatch.setattr(kinema.world, "MAX_SCENE_DRAWS", 1)
    with pytest.raises(KinemaError, match=r"no clean clip for example \d+ of split 'test'.*last problems"):
        sample_spec("test", 0, redrawn)


def _first_draw_unclean(split: str, i: int) -> bool:
    rng = example_rng(split, 0, i)
    scene = sample_scene(rng, split)
    describe(scene, rng)
    return bool(kinema.world.simulate(scene, seed=int(rng.integers(2**31 - 1))).problems)


def test_problem_checks_catch_each_kind() -> None:
    spec = sample_spec("train", 0, next(i for i in range(50) if _has(sample_spec("train", 0, i), "fall")))
    assert clip_problems(spec) == []
    fall = next(o for o in spec.objects if o.motion == "fall")
    no_bounce = replace(spec, events=[e for e in spec.events if not (e.kind == "floor_bounce" and fall.id in e.objects)])
    assert any("no floor_bounce" in p for p in clip_problems(no_bounce))
    fall.frames[0].visible = 0.5  # starts half out of view
    assert any("out of view" in p for p in clip_problems(spec))
    fall.frames[0].visible = 1.0
    assert clip_problems(spec) == []

    two = parse_caption("a red ball and a blue square stay still")
    spec2, _ = make_clip(two, seed=0)
    assert spec2.problems == []
    for fr in spec2.objects[1].frames:  # put the square on top of the ball
        fr.center = spec2.objects[0].frames[0].center
    assert any("come within" in p for p in clip_problems(spec2))

    spec3, _ = make_clip(parse_caption("a white box breaks"), seed=0)
    assert spec3.problems == [] and any(e.kind == "break" for e in spec3.events)
    early = replace(spec3, events=[replace(e, frame=1) if e.kind == "break" else e for e in spec3.events])
    assert any("breaks at frame 1" in p for p in clip_problems(early))


def _has(spec: ClipSpec, motion: str) -> bool:
    return any(o.motion == motion and not o.event for o in spec.objects)


def test_make_clip_reports_problems_and_cli_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    caption = "four huge white balls bounce around"
    spec, _ = make_clip(parse_caption(caption), seed=0, caption=caption)
    assert spec.problems and all("come within" in p for p in spec.problems)
    assert ClipSpec.from_json(spec.to_json()).problems == spec.problems
    assert main(["world", "render", caption, "-o", str(tmp_path / "a.mp4")]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "come within" in err
    assert main(["world", "render", "a red ball falls", "-o", str(tmp_path / "b.mp4")]) == 0
    assert "warning" not in capsys.readouterr().err
