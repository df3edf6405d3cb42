"""Kinema World splits: held-out combinations never leak into training captions; ranges hold."""

from __future__ import annotations

import collections
import re

from kinema.world import HELDOUT_RULES, describe, example_rng, heldout_matches, is_ood, parse_caption, sample_scene
from kinema.world.palette import COLORS, SHAPES
from kinema.world.scene import Action, Clause, Scene, Thing
from kinema.world.splits import TRAIN_MAX_OBJECTS

N = 1500


def _captions(split: str, n: int, seed: int = 0) -> list[str]:
    out = []
    for i in range(n):
        rng = example_rng(split, seed, i)
        out.append(describe(sample_scene(rng, split), rng))
    return out


def test_no_heldout_combination_in_training_captions() -> None:
    for split in ("train", "test"):
        for caption in _captions(split, N):
            scene = parse_caption(caption)  # judge the caption's own words, not the sampler's state
            assert not heldout_matches(scene), (caption, heldout_matches(scene))
            assert not re.search(r"purple triangles?\b|orange (square|box)", caption), caption
            assert not re.search(r"large green", caption), caption


def test_rule_matching_is_what_it_says() -> None:
    names = heldout_matches(parse_caption("a small purple triangle moves left and a cyan ball falls"))
    assert names == ["purple triangle", "cyan ball falls"]
    assert heldout_matches(parse_caption("a red triangle turns purple")) == ["purple triangle"]
    assert not heldout_matches(parse_caption("a purple ball and a red triangle stay still"))


def test_heldout_split_always_holds_a_rule_and_covers_all_rules() -> None:
    seen = collections.Counter()
    for caption in _captions("heldout", 400):
        names = heldout_matches(parse_caption(caption))
        assert names, caption
        assert not is_ood(parse_caption(caption))
        seen.update(names)
    assert set(seen) == {r.name for r in HELDOUT_RULES}


def test_every_single_value_is_well_covered_in_train() -> None:
    values: collections.Counter[str] = collections.Counter()
    for caption in _captions("train", N):
        for t, a in parse_caption(caption).things():
            values.update([t.color, t.shape, t.size, a.motion, a.event or "-"])
    for rule in HELDOUT_RULES:
        for v in (rule.color, rule.shape, rule.size, rule.motion, rule.event):
            if v is not None:
                assert values[v] >= 25, (rule.name, v, values[v])
    for v in (*COLORS, *SHAPES, "small", "medium", "large"):
        assert values[v] >= 50, v


def test_ood_outside_train_ranges() -> None:
    kinds = collections.Counter()
    for caption in _captions("ood", 300):
        scene = parse_caption(caption)
        assert is_ood(scene) and not heldout_matches(scene)
        kinds.update(
            (["four"] if scene.count > TRAIN_MAX_OBJECTS else [])
            + [t.size for t, _ in scene.things() if t.size in ("tiny", "huge")]
            + ["very_fast" for _, a in scene.things() if a.speed == "very_fast"]
        )
    assert set(kinds) == {"four", "tiny", "huge", "very_fast"}
    for caption in _captions("train", 500):
        scene = parse_caption(caption)
        assert not is_ood(scene) and 1 <= scene.count <= TRAIN_MAX_OBJECTS


def test_test_split_is_a_different_draw() -> None:
    assert _captions("train", 50) != _captions("test", 50)
    assert _captions("train", 20, seed=1) != _captions("train", 20, seed=2)
    assert _captions("train", 20, seed=1) == _captions("train", 20, seed=1)


def test_rules_reject_in_sampler_not_just_in_text() -> None:
    scene = Scene((Clause((Thing("triangle", "purple"),), Action("still")),))
    assert heldout_matches(scene) == ["purple triangle"]
