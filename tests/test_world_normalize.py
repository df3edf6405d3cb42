"""Prompt normaliser: exact rewrites into the world vocabulary, parsed meaning, unknown words, idempotence."""

from __future__ import annotations

import random
import time

import pytest

from kinema.errors import InvalidInputError
from kinema.world import SPLITS, Action, Clause, Scene, Thing, describe, example_rng, parse_caption, sample_scene
from kinema.world.normalize import ING_FORMS, LEADING_FILLERS, PHRASES, WORDS, NormalizedPrompt, normalize_prompt
from kinema.world.parse import VOCABULARY


def one(shape: str, color: str, motion: str, direction: str = "", speed: str = "", *, count: int = 1,
        size: str = "medium", background: str = "light", camera: str = "", event: str = "", to: str = "") -> Scene:
    """A one-clause, one-subject scene."""
    action = Action(motion, direction, speed, event, to)
    return Scene((Clause((Thing(shape, color, size, count),), action),), background, camera)


def pair(a: Thing, b: Thing, motion: str, speed: str = "") -> Scene:
    return Scene((Clause((a, b), Action(motion, speed=speed)),))


# (prompt, exact normalised text, the scene the text parses to)
REWRITES: list[tuple[str, str, Scene]] = [
    ("2 red balls fall", "two red balls fall", one("ball", "red", "fall", count=2)),
    ("A video of 2 crimson spheres plummeting.", "two red balls fall", one("ball", "red", "fall", count=2)),
    ("Show me a big red cube zooming left", "a large red square quickly moves left",
     one("square", "red", "move", "left", "fast", size="large")),
    ("the ball, blue, rolls to the right", "a blue ball moves to the right", one("ball", "blue", "move", "right")),
    ("a ball that is red bounces off walls", "a red ball bounces off the walls", one("ball", "red", "bounce")),
    ("a red large ball moves left", "a large red ball moves left", one("ball", "red", "move", "left", size="large")),
    ("there are three golden orbs drifting to the left on a black background",
     "three yellow balls move to the left on a dark background",
     one("ball", "yellow", "move", "left", count=3, background="dark")),
    ("A tiny violet pyramid rises slowly, please.", "a tiny purple triangle moves up slowly",
     one("triangle", "purple", "move", "up", "slow", size="tiny")),
    ("a teal disc moves swiftly right in the scene", "a cyan ball moves right quickly",
     one("ball", "cyan", "move", "right", "fast")),
    ("The camera pans left while the green box stays put", "the camera pans left while a green box stays still",
     one("square", "green", "still", camera="left")),
    ("camera pans right as a navy block is stationary on white",
     "the camera pans right as a blue square is still on a light background",
     one("square", "blue", "still", camera="right")),
    ("a scarlet ball hits the blue ball", "a red ball hits a blue ball",
     pair(Thing("ball", "red"), Thing("ball", "blue"), "collide")),
    ("two red ball and a emerald cube fall", "two red balls and a green square fall",
     Scene((Clause((Thing("ball", "red", count=2), Thing("square", "green")), Action("fall")),))),
    ("a big crimson sphere smashes into a lime dot", "a large red ball crashes into a green ball",
     pair(Thing("ball", "red", "large"), Thing("ball", "green"), "collide")),
    ("a white triangle is launched to the left", "a white triangle is thrown to the left",
     one("triangle", "white", "thrown", "left")),
    ("a purple ball changes to green", "a purple ball changes colour to green",
     one("ball", "purple", "still", event="color_change", to="green")),
    ("a red ball doesn't move", "a red ball does not move", one("ball", "red", "still")),
    ("an orange triangle goes left quickly", "an orange triangle moves left quickly",
     one("triangle", "orange", "move", "left", "fast")),
    ("Red ball falls on a dark background.", "a red ball falls on a dark background",
     one("ball", "red", "fall", background="dark")),
    ("a red ball is falling and a blue ball is rolling left", "a red ball falls and a blue ball moves left",
     Scene((Clause((Thing("ball", "red"),), Action("fall")), Clause((Thing("ball", "blue"),), Action("move", "left"))))),
    ("two red balls bouncing around", "two red balls bounce around", one("ball", "red", "bounce", count=2)),
    ("a little blue ball passes behind an occluder", "a small blue ball passes behind a wall",
     one("ball", "blue", "pass_behind", size="small")),
    ("a red ball moves from left to right gently", "a red ball moves right slowly",
     one("ball", "red", "move", "right", "slow")),
    ("1 magenta square drifts up leisurely against a white backdrop",
     "one purple square moves up slowly on a light background", one("square", "purple", "move", "up", "slow")),
    ("a clip of 4 small aqua balls falling to the ground", "four small cyan balls fall to the floor",
     one("ball", "cyan", "fall", count=4, size="small")),
    ("a orange ball descends", "an orange ball moves down", one("ball", "orange", "move", "down")),
    ("a large yellow wedge is tossed rightwards", "a large yellow triangle is tossed rightward",
     one("triangle", "yellow", "thrown", "right", size="large")),
    ("an ivory box and a cherry circle collide with each other", "a white box and a red circle collide with each other",
     pair(Thing("square", "white"), Thing("ball", "red"), "collide")),
    ("footage of a huge lilac disk that crashes into a small turquoise ball speedily",
     "a huge purple ball crashes into a small cyan ball quickly",
     pair(Thing("ball", "purple", "huge"), Thing("ball", "cyan", "small"), "collide", "fast")),
    ("a gold square slides down very slowly", "a yellow square slides down slowly",
     one("square", "yellow", "move", "down", "slow")),
    ("3 lime triangles zoom to the right quickly", "three green triangles move to the right quickly",
     one("triangle", "green", "move", "right", "fast", count=3)),
    ("a ball, red, falls", "a red ball falls", one("ball", "red", "fall")),
    ("Generate an animation of a small white cube that is sitting still", "a small white square sits still",
     one("square", "white", "still", size="small")),
]


@pytest.mark.parametrize("prompt,text,scene", REWRITES, ids=[r[0][:40] for r in REWRITES])
def test_rewrite_table(prompt: str, text: str, scene: Scene) -> None:
    n = normalize_prompt(prompt)
    assert n.text == text
    assert n.original == prompt
    assert n.unknown == () and n.warning is None
    assert n.parsed
    assert n.changes  # every row needs at least one rewrite
    assert parse_caption(n.text) == scene


def test_changes_are_logged_in_order() -> None:
    n = normalize_prompt("A video of 2 crimson spheres plummeting.")
    assert n.changes == (("a video of", ""), ("2", "two"), ("crimson", "red"), ("spheres", "balls"), ("plummeting", "fall"))
    assert normalize_prompt("a orange ball descends").changes == (("descends", "moves down"), ("a orange", "an orange"))


def test_unknown_word_is_dropped_and_named() -> None:
    n = normalize_prompt("a red ball bounces joyfully")
    assert n.text == "a red ball bounces"
    assert n.unknown == ("joyfully",)
    assert not n.parsed  # "bounces" alone is not a world verb phrase; the caller sees that too
    assert n.warning is not None and "'joyfully'" in n.warning and "dropped" in n.warning


def test_unknown_words_listed_once_in_order() -> None:
    n = normalize_prompt("a shiny red ball bounces around gracefully, shiny")
    assert n.unknown == ("shiny", "gracefully")
    assert n.text == "a red ball bounces around"
    assert n.parsed
    assert n.warning == "Kinema World did not understand 'shiny' and 'gracefully' and dropped them from the prompt."


@pytest.mark.parametrize("prompt,text,count", [
    ("5 red balls fall", "5 red balls fall", "5"),
    ("seven blue cubes fall", "seven blue squares fall", "seven"),
])
def test_unsupported_count_is_kept_and_reported(prompt: str, text: str, count: str) -> None:
    n = normalize_prompt(prompt)
    assert n.text == text
    assert n.unknown == (count,)
    assert not n.parsed
    assert n.warning is not None and f"'{count}'" in n.warning and "one to four" in n.warning


def test_grey_is_not_an_object_colour() -> None:
    n = normalize_prompt("a grey ball falls")
    assert (n.text, n.unknown, n.parsed) == ("a ball falls", ("grey",), False)
    assert normalize_prompt("a red ball falls on a grey background").text == "a red ball falls on a light background"


def test_vocabulary_words_are_kept() -> None:
    for caption in ("a huge red ball moves left rapidly", "a tiny white box bounces around the box",
                    "two large circles collide", "one green ball is thrown upward"):
        n = normalize_prompt(caption)
        assert n.text == caption and n.changes == ()


def test_synonym_tables_never_rewrite_vocabulary() -> None:
    assert not set(WORDS) & VOCABULARY
    assert not (set(ING_FORMS) - {"moving"}) & VOCABULARY
    targets = {w for ws in (*WORDS.values(), *PHRASES.values()) for w in ws}
    assert targets <= VOCABULARY


@pytest.mark.parametrize("split", SPLITS)
def test_generated_captions_are_unchanged(split: str) -> None:
    captions = []
    for i in range(60):
        rng = example_rng(split, 11, i)
        scene = sample_scene(rng, split)
        captions += [(describe(scene, rng), scene), (describe(scene), scene)]
    for caption, scene in captions:  # 4 splits x 120 = 480 captions
        n = normalize_prompt(caption)
        assert (n.text, n.changes, n.unknown, n.parsed) == (caption, (), (), True), caption
        assert parse_caption(n.text) == scene


def _noisy_prompts(k: int) -> list[str]:
    """Generated captions with synonyms, fillers, numerals and junk inserted, plus random word salads."""
    rnd = random.Random(0)
    pool = sorted(WORDS) + sorted(ING_FORMS) + [" ".join(p) for p in PHRASES] + list(LEADING_FILLERS) + [
        "5", "seven", "shiny", ",", ".", "the", "is", "that is", "1", "3", "grey", "it's", "don't", "red", "ball", "and"]
    base = [describe(sample_scene(example_rng("train", 5, i), "train"), example_rng("train", 5, i)) for i in range(50)]
    out = [p for p, _, _ in REWRITES]
    for t in range(k):
        if t % 2:
            words = base[t % len(base)].split()
            for _ in range(rnd.randint(1, 3)):
                words.insert(rnd.randint(0, len(words)), rnd.choice(pool))
        else:
            words = [rnd.choice(pool) for _ in range(rnd.randint(1, 9))]
        out.append(" ".join(words))
    return out


def test_idempotent() -> None:
    checked = 0
    for prompt in _noisy_prompts(1500):
        try:
            n = normalize_prompt(prompt)
        except InvalidInputError:
            continue
        if not n.text:
            continue
        again = normalize_prompt(n.text)
        assert again.text == n.text, (prompt, n.text, again.changes)
        assert set(again.unknown) <= set(n.unknown)  # only kept counts can be unknown again
        assert again.parsed == n.parsed
        checked += 1
    assert checked > 1000


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t", "?!.", ",,,"])
def test_empty_prompt_is_rejected(prompt: str) -> None:
    with pytest.raises(InvalidInputError, match="e.g. 'two red balls fall'"):
        normalize_prompt(prompt)


def test_non_string_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="must be a string"):
        normalize_prompt(42)  # type: ignore[arg-type]


def test_nothing_understood_gives_empty_text() -> None:
    n = normalize_prompt("hello world")
    assert n == NormalizedPrompt(text="", original="hello world", changes=(), unknown=("hello", "world"), parsed=False)
    assert n.warning == "Kinema World did not understand 'hello' and 'world' and dropped them from the prompt."


def test_speed_1000_prompts_under_a_second() -> None:
    prompts = [p for p, _, _ in REWRITES] * (1000 // len(REWRITES) + 1)
    start = time.process_time()  # CPU time of this process: robust to other jobs sharing the machine
    for p in prompts[:1000]:
        normalize_prompt(p)
    assert time.process_time() - start < 1.0
