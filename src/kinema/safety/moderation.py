"""Prompt moderation: rules plus a semantic classifier on the bundled text encoder's embeddings.

Every path that makes a video calls ``check_prompt`` (or ``Moderator.check``) on the prompt, the
negative prompt and any uploaded text field before generating. A refusal raises
``RefusedPromptError`` naming the policy category; nothing is generated.

Policy categories (``CATEGORIES``): ``sexual``, ``minors`` (minors in sexual or harmful contexts),
``violence`` (graphic), ``hate``, ``self_harm``, ``real_people`` (real public figures or a real
person's likeness).

Three layers, in order:

1. **Allow-list**: idioms that share words with blocked content ("kill the lights", "shooting
   star", "photo shoot") are cut out of the prompt first (``rules.json`` ``allow`` plus
   ``ModerationConfig.allow``).
2. **Rules** (``data/rules.json``): whole-word regular expressions that refuse on their own, a
   co-occurrence rule for minors (a minor word *and* a sexual/abuse word) and a list of public
   figures' names.
3. **Semantic classifier**: the prompt's mean-pooled MiniLM sentence embedding is compared with
   exemplar prompts per category (``data/exemplars.json``) and with benign anchors. A category is
   flagged when its best cosine similarity is ``>= thresholds[category]`` and beats the best benign
   anchor by ``margin``.

A stronger classifier plugs in through ``PromptClassifier`` (any object with
``classify(text) -> list[Flag]``), passed as ``Moderator(config, extra=[...])`` and installed with
``set_moderator``; see ``docs/safety.md``.
"""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from typing import Protocol

import torch

from kinema.errors import InvalidInputError, RefusedPromptError

CATEGORIES: tuple[str, ...] = ("sexual", "minors", "violence", "hate", "self_harm", "real_people")
CATEGORY_NAMES: dict[str, str] = {
    "sexual": "sexual content",
    "minors": "minors in sexual or harmful contexts",
    "violence": "graphic violence",
    "hate": "hate",
    "self_harm": "self-harm",
    "real_people": "real people's likeness",
}
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})


@dataclass(frozen=True)
class ModerationConfig:
    """Thresholds and lists of the built-in moderator.

    Attributes:
        thresholds: per category, the minimum cosine similarity to the category's exemplars.
        margin: the category's best similarity must exceed the best benign anchor by this much.
        allow: extra allow-listed phrases (regular expressions, whole words) removed before checks.
        categories: categories that are enforced (drop one to permit it, e.g. for research use).
        use_classifier: False keeps only the rules (no text encoder is loaded).
    """

    thresholds: dict[str, float] = field(
        default_factory=lambda: {
            "sexual": 0.45, "minors": 0.50, "violence": 0.45, "hate": 0.45, "self_harm": 0.45, "real_people": 0.50,
        }
    )
    margin: float = 0.03
    allow: tuple[str, ...] = ()
    categories: tuple[str, ...] = CATEGORIES
    use_classifier: bool = True

    def __post_init__(self) -> None:
        unknown = (set(self.thresholds) | set(self.categories)) - set(CATEGORIES)
        if unknown:
            raise InvalidInputError(f"unknown moderation categories {sorted(unknown)}; allowed: {list(CATEGORIES)}")
        for name, value in self.thresholds.items():
            if not -1.0 <= value <= 1.0:
                raise InvalidInputError(f"thresholds[{name!r}]={value} out of range; allowed [-1, 1] (cosine)")


MODERATION_PRESETS: dict[str, ModerationConfig] = {
    "default": ModerationConfig(),
    "permissive": ModerationConfig(  # fewer refusals of borderline prompts, lower recall (see docs/safety.md)
        thresholds={"sexual": 0.50, "minors": 0.55, "violence": 0.50, "hate": 0.50, "self_harm": 0.50, "real_people": 0.55},
        margin=0.06,
    ),
    "rules_only": ModerationConfig(use_classifier=False),
}


@dataclass(frozen=True)
class Flag:
    """One reason to refuse: ``category``, which layer found it (``source``) and the evidence."""

    category: str
    source: str  # "rule", "classifier" or a plugged classifier's name
    evidence: str
    score: float = 1.0


class PromptClassifier(Protocol):
    """A pluggable prompt classifier: returns the flags it raises for ``text`` (empty = allowed)."""

    def classify(self, text: str) -> list[Flag]: ...


def normalize(text: str) -> str:
    """Lower-case, NFKC, undo common character swaps (``s3x`` -> ``sex``), collapse spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"(?<=\w)[0-9@$!](?=\w)|(?<=\s)[0-9@$](?=[a-z])", lambda m: m.group(0).translate(_LEET), text)
    text = re.sub(r"[_*.\-](?=\w)", lambda m: " " if m.group(0) == "_" else m.group(0), text)
    return re.sub(r"\s+", " ", text).strip()


def _data(name: str) -> dict:
    return json.loads(resources.files("kinema.safety").joinpath("data", name).read_text(encoding="utf-8"))


def _words(pattern: str) -> str:
    return rf"(?<![\w]){pattern}(?![\w])"


def _category_of(rule_name: str) -> str:
    """``real_people_role`` -> ``real_people``: a rule name is its category plus an optional suffix."""
    for cat in CATEGORIES:
        if rule_name == cat or rule_name.startswith(cat + "_"):
            return cat
    raise InvalidInputError(f"rule '{rule_name}' names no category; allowed prefixes: {list(CATEGORIES)}")


class RuleClassifier:
    """The rule layer (``data/rules.json``)."""

    def __init__(self) -> None:
        rules = _data("rules.json")
        self.block = {cat: re.compile("|".join(_words(p) for p in pats)) for cat, pats in rules["block"].items()}
        self.requires = {
            cat: [re.compile("|".join(_words(p) for p in group)) for group in groups]
            for cat, groups in rules["requires"].items()
        }
        self.public_figures = re.compile("|".join(_words(p) for p in rules["public_figures"]))
        self.allow_patterns: list[str] = list(rules["allow"])

    def classify(self, text: str) -> list[Flag]:
        flags = []
        for cat, pattern in self.block.items():
            m = pattern.search(text)
            if m:
                flags.append(Flag(cat, "rule", m.group(0)))
        for name, groups in self.requires.items():
            hits = [g.search(text) for g in groups]
            if all(hits):
                flags.append(Flag(_category_of(name), "rule", " + ".join(h.group(0) for h in hits if h)))
        m = self.public_figures.search(text)
        if m:
            flags.append(Flag("real_people", "rule", m.group(0)))
        return flags


class EmbeddingClassifier:
    """Nearest-exemplar classifier on mean-pooled, L2-normalised MiniLM sentence embeddings."""

    def __init__(self, config: ModerationConfig, encoder: object | None = None) -> None:
        from kinema.text import TextEncoder

        self.config = config
        self.encoder = encoder if encoder is not None else TextEncoder()
        data = _data("exemplars.json")
        self.labels: list[str] = []
        texts: list[str] = []
        for cat in (*CATEGORIES, "benign"):
            for t in data[cat]:
                self.labels.append(cat)
                texts.append(normalize(t))
        self.texts = texts
        self.bank = self.embed(texts)  # (n, d)

    @torch.no_grad()
    def embed(self, texts: list[str]) -> torch.Tensor:
        """Sentence embeddings ``(b, d)``: token states mean-pooled over the mask, unit length."""
        emb = self.encoder.encode(texts)  # states (b, l, d), mask (b, l)
        m = emb.mask.unsqueeze(-1).float()  # (b, l, 1)
        pooled = (emb.states * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)  # (b, d)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def scores(self, text: str) -> dict[str, float]:
        """Best cosine similarity per category (and ``benign``)."""
        sims = (self.bank @ self.embed([text])[0]).tolist()  # (n,)
        best: dict[str, float] = {}
        for label, s in zip(self.labels, sims, strict=True):
            best[label] = max(best.get(label, -1.0), s)
        return best

    def classify(self, text: str) -> list[Flag]:
        if not text.strip():
            return []
        best = self.scores(text)
        flags = []
        for cat in CATEGORIES:
            s = best[cat]
            if s >= self.config.thresholds[cat] and s - best["benign"] >= self.config.margin:
                flags.append(Flag(cat, "classifier", f"similarity {s:.2f} (benign {best['benign']:.2f})", s))
        return flags


@dataclass(frozen=True)
class Verdict:
    """Outcome of ``Moderator.review``: ``allowed`` and the flags (enforced categories only)."""

    allowed: bool
    flags: tuple[Flag, ...]

    @property
    def category(self) -> str | None:
        return self.flags[0].category if self.flags else None


class Moderator:
    """Allow-list, rules, the embedding classifier and any extra plugged classifiers."""

    def __init__(self, config: ModerationConfig | None = None, extra: list[PromptClassifier] | None = None) -> None:
        self.config = config or ModerationConfig()
        self.rules = RuleClassifier()
        allow = [*self.rules.allow_patterns, *self.config.allow]
        self.allow = re.compile("|".join(_words(p) for p in allow)) if allow else None
        self.extra = list(extra or [])
        self._lock = threading.Lock()

    @cached_property
    def embedding(self) -> EmbeddingClassifier:
        return EmbeddingClassifier(self.config)

    def prepare(self, text: str) -> str:
        """Normalised text with allow-listed phrases removed."""
        text = normalize(text)
        if self.allow is not None:
            text = re.sub(r"\s+", " ", self.allow.sub(" ", text)).strip()
        return text

    def review(self, text: str) -> Verdict:
        """All flags for ``text`` (rules first, then the classifiers)."""
        if not isinstance(text, str):
            raise InvalidInputError(f"moderation takes a string, got {type(text).__name__}")
        prepared = self.prepare(text)
        flags = self.rules.classify(prepared)
        if not flags and self.config.use_classifier and prepared:
            with self._lock:
                flags = self.embedding.classify(prepared)
        for clf in self.extra:
            flags.extend(clf.classify(text))
        enforced = tuple(f for f in flags if f.category in self.config.categories)
        return Verdict(allowed=not enforced, flags=enforced)

    def check(self, text: str, *, field_name: str = "prompt") -> None:
        """Raise ``RefusedPromptError`` when ``text`` is refused; the message names the category."""
        verdict = self.review(text)
        if not verdict.allowed:
            cat = verdict.flags[0].category
            raise RefusedPromptError(
                f"{field_name} refused by Kinema's content policy: {CATEGORY_NAMES[cat]} ({cat}). "
                "Nothing was generated. See docs/safety.md.",
                cat,
            )


_MODERATOR: Moderator | None = None
_MODERATOR_LOCK = threading.Lock()


def get_moderator() -> Moderator:
    """The process-wide moderator (built on first use with ``ModerationConfig()``)."""
    global _MODERATOR
    with _MODERATOR_LOCK:
        if _MODERATOR is None:
            _MODERATOR = Moderator()
        return _MODERATOR


def set_moderator(moderator: Moderator) -> None:
    """Install a moderator (other thresholds, allow-list, or a plugged stronger classifier)."""
    global _MODERATOR
    with _MODERATOR_LOCK:
        _MODERATOR = moderator


def check_prompt(text: str, *, field_name: str = "prompt") -> None:
    """Refuse ``text`` with ``RefusedPromptError(message, category)`` if the policy blocks it."""
    get_moderator().check(text, field_name=field_name)
