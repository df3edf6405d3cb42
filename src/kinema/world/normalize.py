"""Prompt normaliser: free-form English -> a caption in the Kinema World vocabulary.

The model is conditioned on, and the evaluation parses, captions written in the fixed vocabulary of
``../shared/WORLD.md`` (``kinema.world.parse.VOCABULARY``). People write "2 crimson spheres plummet",
"a video of a big red cube zooming left" or "the ball, blue, rolls to the right". ``normalize_prompt``
rewrites such prompts into the vocabulary and says what it did:

1. clean: lower-case, expand contractions ("doesn't" -> "does not"), sentence punctuation becomes a
   comma (the parser ignores commas; ``describe`` writes them), other punctuation separates words;
2. strip leading filler ("show me a video of", "there are") and meaningless words ("please");
3. rewrite, longest phrase first: numerals 1..4 -> number words, synonyms of colours, shapes, sizes,
   motion verbs, speed adverbs, backgrounds, directions, "is falling" -> "falls";
4. move post-modifiers into the noun phrase ("a ball that is red" / "a ball, red," -> "a red ball");
5. drop words still outside the vocabulary and list them in ``unknown`` (never silently: the
   ``warning`` names them); counts above four ("five", "7") are kept and listed, since dropping a count
   would change the meaning and Kinema World shows one to four objects;
6. noun phrases: "the" at a clause start -> "a", a bare "red ball" -> "a red ball", adjectives in
   size-colour order, the noun's number agreeing with its count, then "a"/"an" agreeing with the next word.

Steps 2-6 repeat until nothing changes (dropping a word can make a new phrase), so the result is a
fixed point: ``normalize_prompt(n.text).text == n.text``. Single-word synonyms are never vocabulary
words, and every phrase rewrite is one ``captions.describe`` never writes, so a generated caption
comes back unchanged with no rewrites and no unknown words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from kinema.errors import CaptionParseError, InvalidInputError
from kinema.world.captions import BACKGROUND_PHRASES, DIRECTION_PHRASES, NUMBER_WORDS, SHAPE_ALT, SHAPE_WORDS, SPEED_PHRASES
from kinema.world.palette import COLORS, COUNT_WORDS
from kinema.world.parse import CONNECTORS, VOCABULARY, parse_caption
from kinema.world.scene import ALL_SIZES

Words = tuple[str, ...]
MAX_PROMPT_WORDS: Final[int] = 1000  # above any prompt within the pipeline's 2,000-character limit
_MAX_ROUNDS: Final[int] = 4  # steps 2-6 reach their fixed point in two rounds in practice

# ---- single-word synonyms (keys are never vocabulary words; checked at import) ---------------------
COLOR_SYNONYMS: Final[dict[str, str]] = {
    **dict.fromkeys(("crimson", "scarlet", "ruby", "cherry", "maroon", "vermilion", "vermillion"), "red"),
    **dict.fromkeys(("violet", "magenta", "lilac", "lavender", "mauve", "plum", "fuchsia", "amethyst", "indigo"), "purple"),
    **dict.fromkeys(("teal", "turquoise", "aqua", "aquamarine"), "cyan"),
    **dict.fromkeys(("gold", "golden", "lemon", "amber", "mustard"), "yellow"),
    **dict.fromkeys(("navy", "azure", "cobalt", "sapphire", "ultramarine"), "blue"),
    **dict.fromkeys(("lime", "emerald", "jade", "mint"), "green"),
    **dict.fromkeys(("tangerine", "apricot"), "orange"),
    **dict.fromkeys(("ivory", "snow", "snowy", "cream", "pearl"), "white"),
}  # grey/gray, black, pink and brown are not object colours: they stay unknown and are reported
SHAPE_SYNONYMS_EXTRA: Final[dict[str, str]] = {
    **dict.fromkeys(("sphere", "orb", "dot", "disc", "disk", "marble", "bubble"), "ball"),
    **dict.fromkeys(("spheres", "orbs", "dots", "discs", "disks", "marbles", "bubbles"), "balls"),
    **dict.fromkeys(("cube", "block", "rectangle", "crate", "brick", "tile"), "square"),
    **dict.fromkeys(("cubes", "blocks", "rectangles", "crates", "bricks", "tiles"), "squares"),
    **dict.fromkeys(("pyramid", "wedge"), "triangle"),
    **dict.fromkeys(("pyramids", "wedges"), "triangles"),
}
SIZE_SYNONYMS: Final[dict[str, str]] = {  # "tiny" and "huge" are vocabulary (out-of-distribution sizes): kept
    **dict.fromkeys(("little", "mini", "miniature", "wee", "smaller", "petite"), "small"),
    **dict.fromkeys(("big", "giant", "enormous", "massive", "gigantic", "bigger", "larger", "jumbo"), "large"),
    **dict.fromkeys(("average", "mid", "midsize", "midsized", "moderate"), "medium"),
}
SPEED_SYNONYMS: Final[dict[str, str]] = {
    **dict.fromkeys(("swiftly", "speedily", "hastily", "briskly", "quick", "speedy", "hurriedly"), "quickly"),
    **dict.fromkeys(("gently", "leisurely", "lazily", "gradually", "sluggishly", "calmly", "slow", "unhurriedly"), "slowly"),
}
VERB_SYNONYMS: Final[dict[str, Words]] = {
    **{w: ("moves",) for w in ("rolls", "drifts", "heads", "shifts", "floats", "cruises", "coasts")},
    **{w: ("move",) for w in ("roll", "drift", "head", "shift", "float", "cruise", "coast")},
    **{w: ("quickly", "moves") for w in ("zooms", "races", "dashes", "darts", "rushes", "shoots", "whizzes", "hurtles")},
    **{w: ("quickly", "move") for w in ("zoom", "race", "dash", "dart", "rush", "shoot", "whizz", "hurtle")},
    **{w: ("slowly", "moves") for w in ("crawls", "creeps", "inches")},
    **{w: ("slowly", "move") for w in ("crawl", "creep")},
    **{w: ("moves", "up") for w in ("rises", "ascends", "climbs")},
    **{w: ("move", "up") for w in ("rise", "ascend", "climb")},
    **{w: ("moves", "down") for w in ("descends", "sinks")},
    **{w: ("move", "down") for w in ("descend", "sink")},
    **{w: ("falls",) for w in ("plummets", "tumbles", "plunges", "topples")},
    **{w: ("fall",) for w in ("plummet", "tumble", "plunge", "topple")},
    "ricochets": ("bounces",), "ricochet": ("bounce",),
    "remains": ("stays",), "remain": ("stay",), "stands": ("stays",), "stand": ("stay",),
    **dict.fromkeys(("launched", "flung", "hurled", "lobbed", "chucked"), ("thrown",)),
    "smashes": ("breaks",), "smash": ("crash",), "cracks": ("breaks",), "crack": ("break",),
    "splits": ("breaks",), "split": ("break",),
}
OTHER_SYNONYMS: Final[dict[str, Words]] = {
    "ground": ("floor",), "occluder": ("wall",), "barrier": ("wall",), "obstacle": ("wall",), "pillar": ("wall",),
    "leftwards": ("leftward",), "rightwards": ("rightward",), "colors": ("colour",), "colours": ("colour",),
    **dict.fromkeys(("stationary", "motionless", "static", "immobile"), ("still",)),
    "single": ("a",),
}
# Present participles: "-ing" -> (singular, plural) forms; bare ("a ball rolling left") or after is/are.
ING_FORMS: Final[dict[str, tuple[Words, Words]]] = {
    **{w: (("moves",), ("move",)) for w in ("moving", "rolling", "drifting", "heading", "floating", "shifting")},
    "sliding": (("slides",), ("slide",)), "gliding": (("glides",), ("glide",)),
    "traveling": (("travels",), ("travel",)), "travelling": (("travels",), ("travel",)),
    **{w: (("quickly", "moves"), ("quickly", "move"))
       for w in ("zooming", "racing", "dashing", "darting", "rushing", "speeding", "shooting")},
    **{w: (("slowly", "moves"), ("slowly", "move")) for w in ("crawling", "creeping", "inching")},
    **{w: (("moves", "up"), ("move", "up")) for w in ("rising", "ascending", "climbing")},
    **{w: (("moves", "down"), ("move", "down")) for w in ("descending", "sinking")},
    **{w: (("falls",), ("fall",)) for w in ("falling", "plummeting", "tumbling", "plunging", "toppling")},
    "dropping": (("drops",), ("drop",)), "bouncing": (("bounces",), ("bounce",)),
    "ricocheting": (("bounces",), ("bounce",)), "staying": (("stays",), ("stay",)),
    "sitting": (("sits",), ("sit",)), "resting": (("rests",), ("rest",)), "colliding": (("collides",), ("collide",)),
    "crashing": (("crashes",), ("crash",)), "bumping": (("bumps",), ("bump",)), "breaking": (("breaks",), ("break",)),
    "shattering": (("shatters",), ("shatter",)), "turning": (("turns",), ("turn",)), "changing": (("changes",), ("change",)),
    "passing": (("passes",), ("pass",)), "going": (("goes",), ("go",)), "flying": (("flies",), ("fly",)),
}
FILLER_WORDS: Final[tuple[str, ...]] = (  # understood and meaningless for the world: dropped, logged in changes
    "please", "colored", "coloured", "shaped", "sized", "its", "their", "just", "simply", "now", "also", "together",
    "that", "which",  # "a ball that is red" -> "a ball is red" -> (post-modifier) "a red ball"
)
LEADING_FILLERS: Final[tuple[str, ...]] = (
    "generate", "create", "make", "render", "draw", "animate", "show", "show me", "give me", "can you", "could you",
    "i want", "i want to see", "i would like", "i would like to see", "we see", "you see", "see",
    "video of", "a video of", "a short video of", "a video showing", "a video where", "a video in which", "a video with",
    "clip of", "a clip of", "a short clip of", "a clip showing", "footage of", "animation of", "an animation of",
    "a scene with", "a scene where", "a scene in which", "a scene of", "an image of", "a picture of",
    "there is", "there are", "here is", "here are", "it is", "this is",
)
UNSUPPORTED_COUNTS: Final[frozenset[str]] = frozenset(
    ("zero", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "twenty", "dozen", "hundred")
)

_SIZES: Final[frozenset[str]] = frozenset(ALL_SIZES)
_ADJECTIVES: Final[frozenset[str]] = _SIZES | frozenset(COLORS)
_SPEED_WORDS: Final[frozenset[str]] = frozenset(w for ps in SPEED_PHRASES.values() for p in ps for w in p.split())
_DIRECTION_FIRST: Final[frozenset[str]] = frozenset(p.split()[0] for ps in DIRECTION_PHRASES.values() for p in ps)
_NOUN_FORMS: Final[dict[str, tuple[str, str]]] = {
    w: forms for forms in (*SHAPE_WORDS.values(), *SHAPE_ALT.values()) for w in forms
}  # "balls" -> ("ball", "balls")
_COUNT_VALUES: Final[dict[str, int]] = {**COUNT_WORDS, **{v: k for k, v in NUMBER_WORDS.items()}}
_CLAUSE_BREAKS: Final[frozenset[str]] = frozenset((",", *CONNECTORS))
_SPEED_PHRASE_WORDS: Final[frozenset[Words]] = frozenset(tuple(p.split()) for ps in SPEED_PHRASES.values() for p in ps)
_DIRECTION_PHRASE_WORDS: Final[frozenset[Words]] = frozenset(
    tuple(p.split()) for ps in DIRECTION_PHRASES.values() for p in ps
)
_CAMERA_VERBS_KEPT: Final[tuple[str, ...]] = ("pans", "moves", "pan", "move")
NUMBER_WORDS_BY_DIGIT: Final[dict[str, str]] = {str(k): v for k, v in NUMBER_WORDS.items()}


def _phrase_table() -> dict[Words, Words]:
    """Multi-word rewrites (keys may contain vocabulary words; ``describe`` never writes a key).

    Entries mapping to themselves protect a canonical phrase from a shorter rewrite inside it.
    """
    t: dict[Words, Words] = {}

    def add(src: str, dst: str) -> None:
        t[tuple(src.split())] = tuple(dst.split())

    for key, phrases in BACKGROUND_PHRASES.items():
        for p in phrases:
            add(p, p)
        tones = {"dark": ("black", "dark", "dark gray", "dark grey", "darker", "night"),
                 "light": ("white", "light", "light gray", "light grey", "gray", "grey", "bright", "pale", "lighter")}[key]
        canonical = BACKGROUND_PHRASES[key][0]
        for tone in tones:
            for noun in ("background", "backdrop"):
                for prep in ("", "on", "against", "with", "over", "in front of"):
                    for art in ("", "a", "the"):
                        src = " ".join(w for w in (prep, art, tone, noun) if w)
                        if src not in phrases:
                            add(src, canonical)
            for prep in ("on", "against"):
                add(f"{prep} {tone}", canonical)
    camera_verbs = ("pans", "moves", "pan", "move", "tracks", "scrolls", "sweeps", "swings", "slides", "drifts", "rotates")
    for verb in camera_verbs:
        to = verb if verb in _CAMERA_VERBS_KEPT else ("pans" if verb.endswith("s") else "pan")
        add(f"the camera {verb}", f"the camera {to}")
        add(f"camera {verb}", f"the camera {to}")
    for colour in COLORS:
        for shade in ("dark", "light", "bright", "pale", "deep", "vivid", "royal", "forest", "neon", "pure", "plain"):
            if not (shade == "light" and colour == "blue"):
                add(f"{shade} {colour}", colour)
    for src in ("sky blue", "light blue", "baby blue"):
        add(src, "cyan")
    for side in ("left", "right"):
        for src in (f"towards the {side}", f"toward the {side}", f"to the {side} side", f"to {side}",
                    f"towards {side}", f"toward {side}", f"to the {side} of the screen"):
            add(src, f"to the {side}")
        add(f"from {side} to {'left' if side == 'right' else 'right'}", "left" if side == "right" else "right")
        add(f"from the {side} to the {'left' if side == 'right' else 'right'}", "left" if side == "right" else "right")
    for dir_phrases in DIRECTION_PHRASES.values():
        for p in dir_phrases:
            add(f"goes {p}", f"moves {p}")
            add(f"go {p}", f"move {p}")
    for ing, (sg, pl) in ING_FORMS.items():
        t[("is", ing)] = sg
        t[("are", ing)] = pl
    for very in ("really", "extremely", "super", "incredibly"):
        add(f"{very} quickly", "very quickly")
        add(f"{very} fast", "very fast")
        add(f"{very} slowly", "slowly")
    for src, dst in (("at high speed", "quickly"), ("at full speed", "quickly"), ("at great speed", "quickly"),
                     ("at a slow pace", "slowly"), ("at a leisurely pace", "slowly"), ("at a fast pace", "quickly")):
        add(src, dst)
    for verb in ("bounces", "bounce"):
        for src in ("off walls", "off the wall", "off a wall", "off of the walls", "back and forth"):
            add(f"{verb} {src}", f"{verb} {'between the walls' if 'forth' in src else 'off the walls'}")
    for sg, pl in (("falls", "fall"), ("drops", "drop")):
        for src in ("onto the floor", "on the floor", "to the bottom", "onto the ground", "to the ground"):
            if f"{sg} {src}" != "drops onto the floor":
                add(f"{sg} {src}", f"{sg} to the floor")
                add(f"{pl} {src}", f"{pl} to the floor")
    for src in ("crashes to the floor", "crashes to the ground", "crashes down", "crashes onto the floor"):
        add(src, "falls to the floor")
        add(src.replace("crashes", "crash"), "fall to the floor")
    for src, dst in (
        ("will not move", "does not move"), ("is not moving", "does not move"), ("are not moving", "do not move"),
        ("stays put", "stays still"), ("stay put", "stay still"), ("very slowly", "slowly"),
        ("turns into", "turns"), ("turn into", "turn"), ("changes into", "changes colour to"),
        ("change into", "change colour to"), ("changes to", "changes colour to"), ("change to", "change colour to"),
        ("changes from", "changes colour from"), ("change from", "change colour from"),
        ("smashes into", "crashes into"), ("collides into", "crashes into"),
        ("collide into each other", "crash into each other"), ("hit each other", "bump into each other"),
        ("breaks apart", "breaks into pieces"), ("break apart", "break into pieces"),
        ("hides behind", "passes behind"), ("hide behind", "pass behind"), ("a couple of", "two"), ("a pair of", "two"),
        ("pair of", "two"), ("a trio of", "three"), ("a single", "a"), ("one single", "one"),
    ):
        add(src, dst)
    for src in ("in the scene", "in the frame", "in the video", "on screen", "on the screen", "across the screen",
                "across the frame", "across the scene", "at the same time"):
        add(src, "")
    return t


PHRASES: Final[dict[Words, Words]] = _phrase_table()
WORDS: Final[dict[str, Words]] = {
    **{w: (c,) for w, c in {**COLOR_SYNONYMS, **SHAPE_SYNONYMS_EXTRA, **SIZE_SYNONYMS, **SPEED_SYNONYMS}.items()},
    **VERB_SYNONYMS, **OTHER_SYNONYMS, **{w: () for w in FILLER_WORDS},
}
_LEADING: Final[list[Words]] = sorted((tuple(f.split()) for f in LEADING_FILLERS), key=len, reverse=True)
_MAX_PHRASE: Final[int] = max(len(k) for k in PHRASES)

_clashes = sorted((set(WORDS) | set(ING_FORMS) | UNSUPPORTED_COUNTS) & VOCABULARY - {"moving"})
if _clashes:  # a synonym must never rewrite a word the parser already reads
    raise RuntimeError(f"normaliser synonyms clash with the world vocabulary: {_clashes}")
_bad_targets = sorted({w for ws in (*WORDS.values(), *PHRASES.values()) for w in ws} - VOCABULARY)
if _bad_targets:  # every rewrite must land in the vocabulary
    raise RuntimeError(f"normaliser rewrites to words outside the world vocabulary: {_bad_targets}")


@dataclass(frozen=True)
class NormalizedPrompt:
    """A prompt rewritten into the Kinema World vocabulary (see the module docstring)."""

    text: str  # the caption in world vocabulary: what the model is conditioned on
    original: str
    changes: tuple[tuple[str, str], ...]  # (from, to) rewrites in order; to == "" for dropped filler
    unknown: tuple[str, ...]  # words neither in the vocabulary nor understood, each once, in order
    parsed: bool  # whether kinema.world.parse.parse_caption(text) succeeds

    @property
    def kept_unknown(self) -> tuple[str, ...]:
        """Unknown words left in ``text`` (counts above four); the others were dropped."""
        words = set(self.text.replace(",", " ").split())
        return tuple(w for w in self.unknown if w in words)

    @property
    def warning(self) -> str | None:
        """One sentence naming the unknown words and what happened to them, or None when there are none."""
        if not self.unknown:
            return None
        kept = self.kept_unknown
        dropped = tuple(w for w in self.unknown if w not in kept)
        parts = []
        if dropped:
            parts.append(f"did not understand {_quote(dropped)} and dropped {'it' if len(dropped) == 1 else 'them'} "
                         "from the prompt")
        if kept:
            parts.append(f"kept the count {_quote(kept)}, which the model will not follow because Kinema World "
                         "shows one to four objects")
        return "Kinema World " + " and ".join(parts) + "."


def _quote(words: tuple[str, ...]) -> str:
    q = [f"'{w}'" for w in words]
    return q[0] if len(q) == 1 else ", ".join(q[:-1]) + " and " + q[-1]


# ---- step 1: cleaning -------------------------------------------------------------------------------
_CONTRACTION_WORDS: Final[dict[str, str]] = {"won't": "will not", "can't": "can not", "shan't": "shall not"}
_CONTRACTION_SUFFIXES: Final[dict[str, str]] = {
    "n't": " not", "'re": " are", "'d": " would", "'ll": " will", "'m": " am", "'ve": " have",
}
_IS_CONTRACTIONS: Final[frozenset[str]] = frozenset(("it", "there", "that", "what", "here", "this"))


def _expand(word: str) -> str:
    """ "doesn't" -> "does not", "it's" -> "it is", "ball's" -> "ball" (possessive)."""
    if word in _CONTRACTION_WORDS:
        return _CONTRACTION_WORDS[word]
    for suffix, repl in _CONTRACTION_SUFFIXES.items():
        if word.endswith(suffix):
            return word[:-len(suffix)] + repl
    if word.endswith("'s"):
        return word[:-2] + (" is" if word[:-2] in _IS_CONTRACTIONS else "")
    return word.replace("'", " ")


def _tokens(prompt: str, changes: list[tuple[str, str]]) -> list[str]:
    """Lower-case words, numbers and commas; sentence punctuation becomes a comma; contractions are logged."""
    text = prompt.lower().replace("\u2019", "'").replace("\u2018", "'")

    def expand(m: re.Match[str]) -> str:
        out = _expand(m.group(0))
        if out != m.group(0).replace("'", " "):  # a real contraction, not a stray apostrophe
            changes.append((m.group(0), out))
        return out

    text = re.sub(r"[a-z]+'[a-z]+", expand, text)
    text = re.sub(r"[;:!?]|\.(?!\d)|(?<!\d)\.", ",", text)
    return re.findall(r"\d+(?:\.\d+)?|[a-z]+|,", text)


def _tidy_commas(tokens: list[str]) -> list[str]:
    """No leading, trailing or doubled commas."""
    out: list[str] = []
    for tok in tokens:
        if tok != "," or (out and out[-1] != ","):
            out.append(tok)
    while out and out[-1] == ",":
        out.pop()
    return out


def _render(tokens: list[str]) -> str:
    """Words joined by spaces, commas attached to the word before."""
    return " ".join(_tidy_commas(tokens)).replace(" ,", ",")


# ---- steps 2-6 ----------------------------------------------------------------------------------------
class _Rewriter:
    """One round of steps 2-6 over a token list, logging changes and unknown words."""

    def __init__(self, changes: list[tuple[str, str]], unknown: list[str]) -> None:
        self.changes = changes
        self.unknown = unknown

    def log(self, src: Words | list[str], dst: Words | list[str]) -> None:
        self.changes.append((_render(list(src)), _render(list(dst))))

    def strip_leading(self, toks: list[str]) -> list[str]:
        toks = _tidy_commas(toks)
        changed = True
        while changed:
            changed = False
            for f in _LEADING:
                if tuple(toks[:len(f)]) == f and len(toks) > len(f):
                    self.log(f, ())
                    toks = toks[len(f):]
                    while toks and toks[0] == ",":
                        toks = toks[1:]
                    changed = True
                    break
        return toks

    def rewrite(self, toks: list[str]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(toks):
            match: tuple[Words, Words] | None = None
            for n in range(min(_MAX_PHRASE, len(toks) - i), 1, -1):
                key = tuple(toks[i:i + n])
                if key in PHRASES:
                    match = (key, PHRASES[key])
                    break
            if match is None:
                word = toks[i]
                if word in WORDS:
                    match = ((word,), WORDS[word])
                elif word in NUMBER_WORDS_BY_DIGIT:
                    match = ((word,), (NUMBER_WORDS_BY_DIGIT[word],))
                elif word in ING_FORMS and word not in VOCABULARY:
                    sg, pl = ING_FORMS[word]
                    match = ((word,), pl if self.plural_subject(out) else sg)
            if match is None:
                out.append(toks[i])
                i += 1
                continue
            src, dst = match
            i += len(src)
            dst = self.fit(dst, out, toks[i:])
            if dst != src:
                self.log(src, dst)
            out.extend(dst)
        return out

    @staticmethod
    def plural_subject(out: list[str]) -> bool:
        """Whether the clause being written has more than one subject object (for "-ing" verbs)."""
        clause = _clause_words(out, [], breaks=frozenset((",", "while", "as", "then")))
        return sum(_COUNT_VALUES.get(w, 0) for w in clause) > 1

    @staticmethod
    def fit(dst: Words, before: list[str], after: list[str]) -> Words:
        """Drop a speed adverb the clause already has, and a direction the next word repeats."""
        if any(w in _SPEED_WORDS for w in dst):
            clause = _clause_words(before, after)
            if any(w in _SPEED_WORDS or w in SPEED_SYNONYMS for w in clause):
                dst = tuple(w for w in dst if w not in _SPEED_WORDS)
        if len(dst) > 1 and dst[-1] in _DIRECTION_FIRST and after and after[0] in _DIRECTION_FIRST:
            dst = dst[:-1]
        return dst

    def post_modifiers(self, toks: list[str]) -> list[str]:
        """ "a ball (that) is red" / "a ball, red," / "a ball red" -> "a red ball" (when unambiguous)."""
        i = 0
        while i < len(toks):
            if toks[i] not in _NOUN_FORMS:
                i += 1
                continue
            j = i + 1
            comma = j < len(toks) and toks[j] == ","
            j += comma
            j += j < len(toks) and toks[j] in ("is", "are")
            adjs: list[str] = []
            while j < len(toks):
                if toks[j] in _ADJECTIVES:
                    adjs.append(toks[j])
                    j += 1
                elif toks[j] == "and" and adjs and j + 1 < len(toks) and toks[j + 1] in _ADJECTIVES and (
                        j + 2 >= len(toks) or toks[j + 2] not in _NOUN_FORMS):
                    j += 1
                else:
                    break
            nxt = toks[j] if j < len(toks) else ""
            start = _np_start(toks, i)
            pre = toks[start:i]
            both = adjs + pre
            if (not adjs or nxt in _NOUN_FORMS or sum(a in _SIZES for a in both) > 1
                    or sum(a in COLORS for a in both) > 1):
                i += 1
                continue
            if comma and nxt == ",":
                j += 1
            new = pre + adjs + [toks[i]]
            self.log(toks[start:j], new)
            toks = toks[:start] + new + toks[j:]
            i = start + len(new)
        return toks

    def drop_unknown(self, toks: list[str]) -> list[str]:
        out = []
        for tok in toks:
            if tok == "," or tok in VOCABULARY:
                out.append(tok)
                continue
            if tok not in self.unknown:
                self.unknown.append(tok)
            if _is_unsupported_count(tok):
                out.append(tok)
        return out

    def noun_phrases(self, toks: list[str]) -> list[str]:
        """Articles, size-colour order and noun number in every noun phrase.

        "the" before a count is dropped; "the" or nothing before a singular noun phrase becomes "a"
        at a clause start or when the phrase names a colour (a world object, not "the box" of
        "bounces around the box"); plural phrases without a count are left for the parser to reject.
        """
        out = list(toks)
        i = 0
        while i < len(out):
            tok = out[i]
            nxt = out[i + 1] if i + 1 < len(out) else ""
            if tok == "the" and (nxt in NUMBER_WORDS.values() or _is_unsupported_count(nxt)):
                self.log(out[i:i + 2], [nxt])
                del out[i]
                continue
            counted = tok in _COUNT_VALUES or _is_unsupported_count(tok)
            j = i + (counted or tok == "the")
            k = j
            while k < len(out) and out[k] in _ADJECTIVES:
                k += 1
            prev = out[i - 1] if i > 0 else ","
            if k >= len(out) or out[k] not in _NOUN_FORMS or (j == i and (prev in _COUNT_VALUES or prev == "the")):
                i += 1
                continue
            head, adjs, noun = out[i:j], out[j:k], out[k]
            named = prev in _CLAUSE_BREAKS or any(a in COLORS for a in adjs)
            if not counted and named and noun == _NOUN_FORMS[noun][0]:
                head = ["a"]
            ordered = [a for a in adjs if a in _SIZES] + [a for a in adjs if a not in _SIZES]
            if head and head != ["the"]:
                noun = _NOUN_FORMS[noun][0 if _count_value(head[0]) == 1 else 1]
            new = head + ordered + [noun]
            if new != out[i:k + 1]:
                self.log(out[i:k + 1], new)
                out[i:k + 1] = new
            i += len(new)
        return out

    def speed_after_direction(self, toks: list[str]) -> list[str]:
        """ "moves quickly left" -> "moves left quickly": the parser reads a speed before the verb or after its phrase."""
        out = list(toks)
        i = 0
        while i < len(out):
            speed = _longest(out, i, _SPEED_PHRASE_WORDS)
            direction = _longest(out, i + speed, _DIRECTION_PHRASE_WORDS) if speed else 0
            if not direction:
                i += 1
                continue
            src = out[i:i + speed + direction]
            new = src[speed:] + src[:speed]
            self.log(src, new)
            out[i:i + len(src)] = new
            i += len(src)
        return out

    def articles(self, toks: list[str]) -> list[str]:
        out = list(toks)
        for i in range(len(out) - 1):
            if out[i] in ("a", "an") and out[i + 1] != ",":
                want = "an" if out[i + 1][0] in "aeiou" else "a"
                if out[i] != want:
                    self.log(out[i:i + 2], [want, out[i + 1]])
                    out[i] = want
        return out

    def round(self, toks: list[str]) -> list[str]:
        toks = self.strip_leading(toks)
        toks = self.rewrite(toks)
        toks = self.post_modifiers(toks)
        toks = self.drop_unknown(toks)
        toks = self.noun_phrases(toks)
        toks = self.speed_after_direction(toks)
        return self.articles(toks)


def _is_unsupported_count(tok: str) -> bool:
    return tok in UNSUPPORTED_COUNTS or (tok.isdigit() and tok not in NUMBER_WORDS_BY_DIGIT)


def _count_value(tok: str) -> int:
    """1 for a/an/one, 2..4, and 0 (plural nouns) for an unsupported count."""
    return _COUNT_VALUES.get(tok, 0)


def _longest(toks: list[str], i: int, phrases: frozenset[Words]) -> int:
    """Length of the longest phrase of ``phrases`` starting at ``toks[i]`` (0 when none)."""
    return max((len(p) for p in phrases if tuple(toks[i:i + len(p)]) == p), default=0)


def _np_start(toks: list[str], noun: int) -> int:
    """Index of the first word of the noun phrase ending at ``noun`` (its count word, or first adjective)."""
    s = noun
    while s > 0 and toks[s - 1] in _ADJECTIVES:
        s -= 1
    if s > 0 and (toks[s - 1] in _COUNT_VALUES or toks[s - 1] == "the" or _is_unsupported_count(toks[s - 1])):
        s -= 1
    return s


def _clause_words(before: list[str], after: list[str], breaks: frozenset[str] = _CLAUSE_BREAKS) -> list[str]:
    """The words of the clause around a position: back to and forward to a comma or connector."""
    b = next((i for i in range(len(before) - 1, -1, -1) if before[i] in breaks), -1)
    a = next((i for i, w in enumerate(after) if w in breaks), len(after))
    return before[b + 1:] + after[:a]


def normalize_prompt(prompt: str) -> NormalizedPrompt:
    """Rewrite ``prompt`` into the Kinema World vocabulary; raise ``InvalidInputError`` for an empty prompt.

    ``text`` may be empty when no word was understood (``unknown`` lists them); ``parsed`` says
    whether the evaluation parser reads ``text`` as a scene.
    """
    if not isinstance(prompt, str):
        raise InvalidInputError(f"prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise InvalidInputError(f"prompt is empty ({prompt!r}); describe objects, e.g. 'two red balls fall'")
    changes: list[tuple[str, str]] = []
    toks = _tokens(prompt, changes)
    words = sum(t != "," for t in toks)
    if words == 0:
        raise InvalidInputError(f"prompt {prompt!r} has no words; describe objects, e.g. 'two red balls fall'")
    if words > MAX_PROMPT_WORDS:
        raise InvalidInputError(f"prompt has {words} words; the normaliser accepts at most {MAX_PROMPT_WORDS}")
    unknown: list[str] = []
    rw = _Rewriter(changes, unknown)
    for _ in range(_MAX_ROUNDS):
        new = rw.round(toks)
        if new == toks:
            break
        toks = new
    text = _render(toks)
    try:
        parse_caption(text)
        parsed = True
    except (CaptionParseError, InvalidInputError):
        parsed = False
    return NormalizedPrompt(text=text, original=prompt, changes=tuple(changes), unknown=tuple(unknown), parsed=parsed)
