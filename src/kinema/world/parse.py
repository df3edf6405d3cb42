"""Caption parser: a caption in the Kinema World vocabulary -> ``Scene``.

Accepts every phrasing ``captions.describe`` writes (and mixes of them): subjects joined by "and"
or commas, a verb phrase from ``VERB_PHRASES`` or ``ACCEPTED_VERB_PHRASES`` (longest match wins;
"a white box breaks" means it falls and breaks on the floor), an optional speed adverb
before or after the verb, clauses joined by "and" / "while", a camera pan and a background anywhere
between clauses. Words outside the vocabulary are reported all at once in a ``CaptionParseError``,
never skipped; a known word in the wrong place is reported with its position.
"""

from __future__ import annotations

import re
from typing import Final

from kinema.errors import CaptionParseError, InvalidInputError
from kinema.world.captions import (
    ACCEPTED_VERB_PHRASES,
    BACKGROUND_PHRASES,
    CAMERA_VERBS,
    DIRECTION_PHRASES,
    SPEED_PHRASES,
    VERB_PHRASES,
    VerbPhrase,
)
from kinema.world.palette import COLORS, COUNT_WORDS, SHAPE_SYNONYMS
from kinema.world.scene import ALL_SIZES, Action, Clause, Scene, Thing, validate_scene

COUNTS: Final[dict[str, int]] = {**COUNT_WORDS, "1": 1, "2": 2, "3": 3, "4": 4}
CONNECTORS: Final[tuple[str, ...]] = ("and", "while", "as", "then")
_CAMERA_VERBS: Final[tuple[str, ...]] = (*CAMERA_VERBS, "pan", "move")
_ALL_VERB_PHRASES: Final[list[VerbPhrase]] = [*VERB_PHRASES, *ACCEPTED_VERB_PHRASES]


def _vocabulary() -> frozenset[str]:
    words: set[str] = set(COLORS) | set(ALL_SIZES) | set(COUNTS) | set(SHAPE_SYNONYMS) | set(CONNECTORS)
    words |= {"the", "camera", *_CAMERA_VERBS}
    phrases = [p for v in _ALL_VERB_PHRASES for p in (v.singular, v.plural)]
    phrases += [p for ps in (*DIRECTION_PHRASES.values(), *SPEED_PHRASES.values(), *BACKGROUND_PHRASES.values()) for p in ps]
    for p in phrases:
        words |= {w for w in p.split() if not w.startswith("{")}
    return frozenset(words)


VOCABULARY: Final[frozenset[str]] = _vocabulary()


def tokenize(caption: str) -> list[str]:
    """Lower-case words; punctuation (, . ; : ! ?) separates words and is otherwise ignored."""
    return re.sub(r"[,.;:!?]", " ", caption.lower()).split()


def unknown_words(caption: str) -> list[str]:
    """Words of ``caption`` outside the vocabulary, in order, each once."""
    out: list[str] = []
    for w in tokenize(caption):
        if w not in VOCABULARY and w not in out:
            out.append(w)
    return out


class _Parser:
    def __init__(self, caption: str) -> None:
        self.caption = caption
        self.tokens = tokenize(caption)
        self.pos = 0

    # ---- helpers -------------------------------------------------------------------------
    def error(self, what: str) -> CaptionParseError:
        rest = " ".join(self.tokens[self.pos:self.pos + 6]) or "<end>"
        return CaptionParseError(f"{what} at word {self.pos + 1} ('{rest}') in caption {self.caption!r}")

    def peek(self, k: int = 0) -> str:
        return self.tokens[self.pos + k] if self.pos + k < len(self.tokens) else ""

    def at(self, words: list[str], pos: int | None = None) -> bool:
        p = self.pos if pos is None else pos
        return self.tokens[p:p + len(words)] == words

    def take_phrase(self, table: dict[str, tuple[str, ...]], pos: int | None = None) -> tuple[str, int] | None:
        """Longest phrase of ``table`` at ``pos``: (key, end position)."""
        p = self.pos if pos is None else pos
        best: tuple[str, int] | None = None
        for key, phrases in table.items():
            for ph in phrases:
                words = ph.split()
                if self.at(words, p) and (best is None or p + len(words) > best[1]):
                    best = (key, p + len(words))
        return best

    # ---- grammar -------------------------------------------------------------------------
    def parse(self) -> Scene:
        clauses: list[Clause] = []
        background: str | None = None
        camera: str | None = None
        while self.pos < len(self.tokens):
            while self.peek() in CONNECTORS:
                self.pos += 1
            if self.pos >= len(self.tokens):
                break
            if self.peek() == "the" and self.peek(1) == "camera":
                if camera is not None:
                    raise self.error("the camera pan is given twice")
                camera = self.parse_camera()
                continue
            bg = self.take_phrase(BACKGROUND_PHRASES)
            if bg is not None:
                if background is not None:
                    raise self.error("the background is given twice")
                background, self.pos = bg
                continue
            clauses.append(self.parse_clause())
        if not clauses:
            raise self.error("no object found; a caption names objects like 'a red ball'")
        return Scene(tuple(clauses), background=background or "light", camera=camera or "")

    def parse_camera(self) -> str:
        self.pos += 2
        if self.peek() not in _CAMERA_VERBS:
            raise self.error(f"expected one of {_CAMERA_VERBS} after 'the camera'")
        self.pos += 1
        d = self.take_phrase(DIRECTION_PHRASES)
        if d is None or d[0] not in ("left", "right"):
            raise self.error("the camera pans 'left' or 'right'")
        self.pos = d[1]
        return d[0]

    def parse_np(self) -> Thing:
        word = self.peek()
        if word not in COUNTS:
            raise self.error(f"expected an object starting with a count word {sorted(COUNT_WORDS)}")
        self.pos += 1
        size = color = None
        while self.peek() in ALL_SIZES or self.peek() in COLORS:
            w = self.peek()
            if w in ALL_SIZES:
                if size is not None:
                    raise self.error(f"two sizes ({size!r}, {w!r}) for one object")
                size = w
            else:
                if color is not None:
                    raise self.error(f"two colours ({color!r}, {w!r}) for one object")
                color = w
            self.pos += 1
        shape = SHAPE_SYNONYMS.get(self.peek())
        if shape is None:
            raise self.error(f"expected a shape, one of {sorted(SHAPE_SYNONYMS)}")
        if color is None:
            raise self.error(f"no colour for '{self.peek()}'; say one of {sorted(COLORS)}")
        self.pos += 1
        return Thing(shape=shape, color=color, size=size or "medium", count=COUNTS[word])

    def parse_speed(self) -> str:
        sp = self.take_phrase(SPEED_PHRASES)
        if sp is None:
            return ""
        self.pos = sp[1]
        return sp[0]

    def match_vp(self, vp: VerbPhrase, template: str) -> tuple[int, dict[str, object]] | None:
        """Match one template at the current position: (end, slot values) or None."""
        p, slots = self.pos, {}
        for word in template.split():
            if word == "{dir}":
                d = self.take_phrase(DIRECTION_PHRASES, p)
                if d is None:
                    return None
                slots["dir"], p = d
            elif word in ("{from}", "{to}"):
                if p >= len(self.tokens) or self.tokens[p] not in COLORS:
                    return None
                slots[word[1:-1]] = self.tokens[p]
                p += 1
            elif word == "{np}":
                save = self.pos
                self.pos = p
                try:
                    slots["np"] = self.parse_np()
                except CaptionParseError:
                    return None
                finally:
                    p, self.pos = self.pos, save
            elif p < len(self.tokens) and self.tokens[p] == word:
                p += 1
            else:
                return None
        return p, slots

    def best_vp(self, candidates: list[VerbPhrase]) -> tuple[VerbPhrase, int, dict[str, object]] | None:
        best = None
        for vp in candidates:
            for template in (vp.singular, vp.plural):
                if not template:
                    continue
                m = self.match_vp(vp, template)
                if m is not None and (best is None or m[0] > best[1]):
                    best = (vp, m[0], m[1])
        return best

    def parse_clause(self) -> Clause:
        subjects = [self.parse_np()]
        while True:
            if self.peek() == "and" and self.peek(1) in COUNTS:
                self.pos += 1
            elif self.peek() not in COUNTS:
                break
            subjects.append(self.parse_np())
        speed = self.parse_speed()
        m = self.best_vp(_ALL_VERB_PHRASES)
        if m is None:
            raise self.error("expected what the objects do (e.g. 'moves left', 'falls', 'bounces off the walls')")
        vp, self.pos, slots = m
        motion = "pass_behind" if vp.motion == "pass_behind_dir" else vp.motion
        event, to_color = vp.event, str(slots.get("to", ""))
        direction = str(slots.get("dir", ""))
        if "np" in slots:
            subjects.append(slots["np"])  # type: ignore[arg-type]
        if motion == "move" and self.peek() == "and":  # "moves left and turns blue"
            self.pos += 1
            cc = self.best_vp([v for v in VERB_PHRASES if v.event == "color_change"])
            if cc is None:
                self.pos -= 1
            else:
                _, self.pos, cslots = cc
                slots.update(cslots)
                event, to_color = "color_change", str(cslots["to"])
        if "from" in slots and any(t.color != slots["from"] for t in subjects):
            raise self.error(f"'from {slots['from']}' does not match the objects' colour")
        after = self.parse_speed()
        if speed and after:
            raise self.error("two speeds for one action")
        return Clause(tuple(subjects), Action(motion, direction, speed or after, event, to_color))  # type: ignore[arg-type]


def parse_caption(caption: str) -> Scene:
    """Parse a caption into a ``Scene``; raise ``CaptionParseError`` naming unknown words or the bad phrase."""
    unknown = unknown_words(caption)
    if unknown:
        raise CaptionParseError(
            f"unknown words {unknown} in caption {caption!r}; Kinema World knows colours {sorted(COLORS)}, "
            f"shapes {sorted(SHAPE_SYNONYMS)}, sizes {list(ALL_SIZES)}, counts {sorted(COUNT_WORDS)} and its "
            "verb phrases (see docs/world.md)"
        )
    scene = _Parser(caption).parse()
    try:
        return validate_scene(scene)
    except CaptionParseError:
        raise
    except InvalidInputError as e:
        raise CaptionParseError(f"{e} (caption {caption!r})") from e
