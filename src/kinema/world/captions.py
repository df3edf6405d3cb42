"""Caption grammar of Kinema World: phrase tables (shared with the parser) and the generator.

``describe(scene, rng)`` writes one of many phrasings of a scene; ``parse.parse_caption`` reads
any of them back to the same scene. The tables below are the whole grammar: verb phrases per
motion/event (singular and plural forms, with slots ``{dir}``, ``{from}``, ``{to}``, ``{np}``),
direction phrases, speed adverbs, camera and background phrases. ``ACCEPTED_VERB_PHRASES`` are read
by the parser but never written (short forms such as "a white box breaks", which imply a fall).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from kinema.world.scene import Action, Clause, Scene, Thing

SHAPE_WORDS: Final[dict[str, tuple[str, str]]] = {  # shape -> (singular, plural) synonyms are in palette
    "ball": ("ball", "balls"),
    "square": ("square", "squares"),
    "triangle": ("triangle", "triangles"),
}
SHAPE_ALT: Final[dict[str, tuple[str, str]]] = {"ball": ("circle", "circles"), "square": ("box", "boxes")}
NUMBER_WORDS: Final[dict[int, str]] = {1: "one", 2: "two", 3: "three", 4: "four"}

DIRECTION_PHRASES: Final[dict[str, tuple[str, ...]]] = {
    "left": ("left", "to the left", "leftward"),
    "right": ("right", "to the right", "rightward"),
    "up": ("up", "upward", "upwards"),
    "down": ("down", "downward", "downwards"),
}
SPEED_PHRASES: Final[dict[str, tuple[str, ...]]] = {
    "slow": ("slowly",),
    "fast": ("quickly", "fast", "rapidly"),
    "very_fast": ("very quickly", "very fast"),
}
BACKGROUND_PHRASES: Final[dict[str, tuple[str, ...]]] = {
    "dark": ("on a dark background", "against a dark background"),
    "light": ("on a light background", "against a light background"),
}
CAMERA_VERBS: Final[tuple[str, ...]] = ("pans", "moves")
CLAUSE_JOINERS: Final[tuple[str, ...]] = (" and ", ", and ", " while ")


@dataclass(frozen=True)
class VerbPhrase:
    """One way to say an action. Slots: {dir} direction, {from}/{to} colours, {np} a second object."""

    motion: str
    event: str
    singular: str
    plural: str


def _vp(motion: str, event: str, pairs: list[tuple[str, str]]) -> list[VerbPhrase]:
    return [VerbPhrase(motion, event, s, p) for s, p in pairs]


VERB_PHRASES: Final[list[VerbPhrase]] = [
    *_vp("still", "", [
        ("stays still", "stay still"), ("sits still", "sit still"), ("rests", "rest"),
        ("does not move", "do not move"), ("stays in place", "stay in place"), ("is still", "are still"),
    ]),
    *_vp("move", "", [
        ("moves {dir}", "move {dir}"), ("slides {dir}", "slide {dir}"), ("glides {dir}", "glide {dir}"),
        ("travels {dir}", "travel {dir}"),
    ]),
    *_vp("bounce", "", [
        ("bounces off the walls", "bounce off the walls"), ("bounces around", "bounce around"),
        ("bounces between the walls", "bounce between the walls"), ("bounces around the box", "bounce around the box"),
    ]),
    *_vp("fall", "", [
        ("falls", "fall"), ("drops", "drop"), ("falls to the floor", "fall to the floor"),
        ("falls and bounces on the floor", "fall and bounce on the floor"), ("drops onto the floor", "drop onto the floor"),
        ("falls down", "fall down"),
    ]),
    *_vp("thrown", "", [
        ("is thrown {dir}", "are thrown {dir}"), ("is tossed {dir}", "are tossed {dir}"),
        ("flies in an arc {dir}", "fly in an arc {dir}"),
    ]),
    *_vp("collide", "", [
        ("", "collide"), ("", "collide with each other"), ("", "bump into each other"),
        ("", "move toward each other and collide"), ("", "crash into each other"),
        ("hits {np}", ""), ("collides with {np}", ""), ("crashes into {np}", ""), ("bumps into {np}", ""),
    ]),
    *_vp("pass_behind", "", [
        ("passes behind a wall", "pass behind a wall"), ("passes behind the wall", "pass behind the wall"),
        ("goes behind a wall and comes out the other side", "go behind a wall and come out the other side"),
        ("moves behind a wall and comes out the other side", "move behind a wall and come out the other side"),
    ]),
    *_vp("pass_behind_dir", "", [
        ("moves {dir} behind a wall", "move {dir} behind a wall"),
        ("passes behind a wall moving {dir}", "pass behind a wall moving {dir}"),
        ("slides {dir} behind a wall and comes out the other side", "slide {dir} behind a wall and come out the other side"),
    ]),
    *_vp("fall", "break", [
        ("falls and breaks", "fall and break"), ("falls and shatters", "fall and shatter"),
        ("breaks when it hits the floor", "break when they hit the floor"),
        ("drops and breaks into pieces", "drop and break into pieces"),
        ("falls and breaks into pieces", "fall and break into pieces"),
        ("falls to the floor and breaks", "fall to the floor and break"),
    ]),
    *_vp("still", "bite", [
        ("gets a bite taken out of it", "get a bite taken out of them"),
        ("has a bite taken out of it", "have a bite taken out of them"),
        ("is bitten", "are bitten"), ("gets bitten", "get bitten"),
    ]),
    *_vp("still", "color_change", [
        ("changes colour from {from} to {to}", "change colour from {from} to {to}"),
        ("changes color from {from} to {to}", "change color from {from} to {to}"),
        ("turns from {from} to {to}", "turn from {from} to {to}"),
        ("changes colour to {to}", "change colour to {to}"), ("changes color to {to}", "change color to {to}"),
        ("turns {to}", "turn {to}"), ("becomes {to}", "become {to}"),
    ]),
]


# Phrases the parser accepts but ``describe`` does not write (so existing datasets keep their
# captions). "breaks" / "shatters" alone imply the fall: the object falls and breaks on the floor.
ACCEPTED_VERB_PHRASES: Final[list[VerbPhrase]] = [
    *_vp("fall", "break", [
        ("breaks", "break"), ("shatters", "shatter"), ("breaks into pieces", "break into pieces"),
        ("shatters into pieces", "shatter into pieces"), ("breaks on the floor", "break on the floor"),
    ]),
]


def _pick(rng: np.random.Generator | None, options: tuple[str, ...] | list[str]) -> str:
    return options[0] if rng is None else options[int(rng.integers(len(options)))]


def describe_thing(t: Thing, rng: np.random.Generator | None = None) -> str:
    """A noun phrase: "a small red ball", "two blue boxes", "an orange triangle"."""
    plural = t.count > 1
    names = [SHAPE_WORDS[t.shape]] + ([SHAPE_ALT[t.shape]] if t.shape in SHAPE_ALT else [])
    noun = _pick(rng, [n[1 if plural else 0] for n in names])
    words = []
    if t.size != "medium" or (rng is not None and rng.random() < 0.15):
        words.append(t.size)
    words.append(t.color)
    if plural:
        count = NUMBER_WORDS[t.count]
    elif rng is not None and rng.random() < 0.15:
        count = "one"
    else:
        count = "an" if words[0][0] in "aeiou" else "a"
    return " ".join([count, *words, noun])


def _subjects(things: tuple[Thing, ...], rng: np.random.Generator | None) -> str:
    parts = [describe_thing(t, rng) for t in things]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _fill(template: str, action: Action, subject_color: str, rng: np.random.Generator | None, np_text: str = "") -> str:
    out = template.replace("{from}", subject_color).replace("{to}", action.to_color).replace("{np}", np_text)
    if "{dir}" in out:
        out = out.replace("{dir}", _pick(rng, DIRECTION_PHRASES[action.direction]))
    return out


def _phrases(motion: str, event: str, plural: bool) -> list[VerbPhrase]:
    return [v for v in VERB_PHRASES if v.motion == motion and v.event == event and (v.plural if plural else v.singular)]


def describe_clause(clause: Clause, rng: np.random.Generator | None = None) -> str:
    """One clause: subjects, verb phrase and, where the action has one, a speed adverb before or after the verb."""
    a = clause.action
    plural = clause.count > 1
    color = clause.subjects[0].color

    def vps(motion: str, event: str) -> list[str]:
        return [(v.plural if plural else v.singular) for v in _phrases(motion, event, plural)]

    if a.motion == "collide" and len(clause.subjects) == 2 and (rng is None or rng.random() < 0.5):
        subject = describe_thing(clause.subjects[0], rng)
        vp = _pick(rng, [v.singular for v in _phrases("collide", "", False)])
        vp = _fill(vp, a, color, rng, describe_thing(clause.subjects[1], rng))
    else:
        subject = _subjects(clause.subjects, rng)
        if a.event == "color_change":
            vp = _pick(rng, vps("still", "color_change"))
            if len({t.color for t in clause.subjects}) > 1:  # "from X" only when every subject is X
                vp = vp.replace("from {from} ", "")
            if a.motion == "move":
                vp = _pick(rng, vps("move", "")) + " and " + vp
        else:
            motion = "pass_behind_dir" if a.motion == "pass_behind" and a.direction else a.motion
            vp = _pick(rng, vps(motion, a.event))
        vp = _fill(vp, a, color, rng)
    if not a.speed:
        return f"{subject} {vp}"
    adverb = _pick(rng, SPEED_PHRASES[a.speed])
    if rng is not None and adverb.endswith("ly") and rng.random() < 0.3:
        return f"{subject} {adverb} {vp}"
    return f"{subject} {vp} {adverb}"


def describe(scene: Scene, rng: np.random.Generator | None = None) -> str:
    """A caption for ``scene``: with ``rng`` a random phrasing, without it the canonical one."""
    text = describe_clause(scene.clauses[0], rng)
    for clause in scene.clauses[1:]:
        text += _pick(rng, CLAUSE_JOINERS) + describe_clause(clause, rng)
    if scene.camera:
        pan = f"the camera {_pick(rng, CAMERA_VERBS)} {_pick(rng, DIRECTION_PHRASES[scene.camera])}"
        form = 0 if rng is None else int(rng.integers(4))
        text = [f"{text} as {pan}", f"{text} while {pan}", f"as {pan}, {text}", f"{pan} while {text}"][form]
    if scene.background == "dark" or (rng is not None and rng.random() < 0.3):
        bg = _pick(rng, BACKGROUND_PHRASES[scene.background])
        text = f"{bg}, {text}" if rng is not None and rng.random() < 0.2 else f"{text} {bg}"
    return text
