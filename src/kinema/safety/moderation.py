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
3. **Semantic classifier** (only for prompts with at least ``min_content_words`` words of three or
   more letters, so "clip 0" cannot match anything by accident): the prompt's mean-pooled MiniLM
   sentence embedding is scored two ways against the exemplars (``data/exemplars.json``): the best
   cosine similarity per category (flagged at ``>= thresholds[category]`` when it beats the best
   benign exemplar by ``margin``), and a multinomial logistic regression over the six categories
   plus ``benign`` trained on the same exemplars (flagged at ``probability >= min_probability``).

Loading: the exemplar embeddings and the regression weights are precomputed into
``data/bank.safetensors``, keyed by a hash of ``exemplars.json``, the training settings and the text
encoder's identity; a stale bank is rebuilt (with a logged warning) and written back. The
moderator reuses an already-loaded bundled MiniLM (``Moderator(encoder=...)``,
``Moderator.use_encoder``, ``check_prompt(..., encoder=...)``) instead of loading a second copy.

A stronger classifier plugs in through ``PromptClassifier`` (any object with
``classify(text) -> list[Flag]``), passed as ``Moderator(config, extra=[...])`` and installed with
``set_moderator``; see ``docs/safety.md``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import unicodedata
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch
from safetensors.torch import load_file, save_file

from kinema.errors import InvalidInputError, ModelLoadError, RefusedPromptError

if TYPE_CHECKING:
    from kinema.text import PromptEncoder, TextEncoder

logger = logging.getLogger(__name__)

CATEGORIES: tuple[str, ...] = ("sexual", "minors", "violence", "hate", "self_harm", "real_people")
CATEGORY_NAMES: dict[str, str] = {
    "sexual": "sexual content",
    "minors": "minors in sexual or harmful contexts",
    "violence": "graphic violence",
    "hate": "hate",
    "self_harm": "self-harm",
    "real_people": "real people's likeness",
}
LABELS: tuple[str, ...] = (*CATEGORIES, "benign")  # the classes of the exemplar bank, in index order
BANK_VERSION = "2"  # bump when pooling, normalisation or training of the bank changes
_L2 = 5e-4  # weight decay of the logistic regression (chosen on the development sets)
_STOPWORDS = frozenset({"the", "and", "for", "with", "from", "into", "onto", "this", "that", "its", "his", "her",
                        "their", "are", "was", "our", "you", "your", "very", "some"})
# Words about the medium, not the content: "input video" or "a short clip of" alone are not a scene.
_MEDIA_WORDS = frozenset({"video", "videos", "clip", "clips", "scene", "scenes", "shot", "shots", "footage", "film",
                          "films", "movie", "movies", "frame", "frames", "take", "takes", "show", "shows", "showing",
                          "short", "long", "input", "output", "first", "second", "one", "two", "three", "four", "five",
                          "six", "seven", "eight", "nine", "ten"})
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})


@dataclass(frozen=True)
class ModerationConfig:
    """Thresholds and lists of the built-in moderator.

    Attributes:
        thresholds: per category, the minimum cosine similarity to the category's nearest exemplar.
        margin: that similarity must exceed the nearest benign exemplar's by this much.
        min_probability: the logistic-regression probability of a category that flags it alone.
        min_content_words: prompts with fewer words of 3+ letters (stop words aside) skip the
            classifier (rules still apply): "clip 0" or "video 3" carry no meaning to compare.
        allow: extra allow-listed phrases (regular expressions, whole words) removed before checks.
        categories: categories that are enforced (drop one to permit it, e.g. for research use).
        use_classifier: False keeps only the rules (no text encoder is loaded).
    """

    thresholds: dict[str, float] = field(
        default_factory=lambda: {
            "sexual": 0.50, "minors": 0.50, "violence": 0.50, "hate": 0.50, "self_harm": 0.50, "real_people": 0.50,
        }
    )
    margin: float = 0.05
    min_probability: float = 0.6
    min_content_words: int = 2
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
        if not 0.0 < self.min_probability <= 1.0:
            raise InvalidInputError(f"min_probability={self.min_probability} out of range; allowed (0, 1]")
        if self.min_content_words < 0:
            raise InvalidInputError(f"min_content_words={self.min_content_words} out of range; allowed >= 0")


MODERATION_PRESETS: dict[str, ModerationConfig] = {
    "default": ModerationConfig(),
    "permissive": ModerationConfig(  # fewer refusals of borderline prompts, lower recall (see docs/safety.md)
        thresholds={"sexual": 0.55, "minors": 0.55, "violence": 0.55, "hate": 0.55, "self_harm": 0.55, "real_people": 0.55},
        margin=0.08,
        min_probability=0.7,
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


def content_words(text: str) -> list[str]:
    """Words of three or more letters that are neither stop words nor words about the medium
    (``video``, ``clip``, ``scene``, number words): the classifier needs ``min_content_words`` of them."""
    return [w for w in re.findall(r"[a-z]{3,}", text) if w not in _STOPWORDS and w not in _MEDIA_WORDS]


def base_encoder(encoder: PromptEncoder) -> TextEncoder:
    """The ``TextEncoder`` behind ``encoder`` (a ``CachedTextEncoder`` is unwrapped, so moderation
    does not fill the pipeline's prompt cache)."""
    from kinema.text import CachedTextEncoder, TextEncoder

    inner = encoder.encoder if isinstance(encoder, CachedTextEncoder) else encoder
    if not isinstance(inner, TextEncoder):
        raise InvalidInputError(
            f"the moderator needs a kinema.text.TextEncoder or CachedTextEncoder; got {type(encoder).__name__}"
        )
    return inner


def is_moderation_encoder(encoder: PromptEncoder) -> bool:
    """True when ``encoder`` is the bundled MiniLM the exemplar bank and thresholds are made for."""
    from kinema.text import resolve_model_path

    try:
        inner = base_encoder(encoder)
    except InvalidInputError:
        return False
    return inner.path.resolve() == resolve_model_path(None).resolve()


@torch.no_grad()
def sentence_embeddings(encoder: TextEncoder, texts: list[str]) -> torch.Tensor:
    """Sentence embeddings ``(b, d)``: token states mean-pooled over the mask, unit length."""
    emb = encoder.encode(texts)  # states (b, l, d), mask (b, l)
    m = emb.mask.unsqueeze(-1).float()  # (b, l, 1)
    pooled = (emb.states * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)  # (b, d)
    return torch.nn.functional.normalize(pooled, dim=-1)


def train_logistic(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression with class-balanced cross-entropy and L2 weight decay.

    Args:
        x: ``(n, d)`` features; y: ``(n,)`` int64 class indices in ``[0, classes)``.
    Returns:
        ``weight (classes, d)`` and ``bias (classes,)``; probabilities are ``softmax(x @ weight.T + bias)``.
    """
    counts = torch.bincount(y, minlength=classes).float()  # (k,)
    if bool((counts == 0).any()):
        raise InvalidInputError(f"every class needs exemplars; counts per class {counts.tolist()}")
    class_weight = counts.sum() / (classes * counts)  # (k,)
    weight = torch.zeros(classes, x.shape[1], requires_grad=True)  # (k, d)
    bias = torch.zeros(classes, requires_grad=True)  # (k,)
    opt = torch.optim.LBFGS([weight, bias], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = x @ weight.T + bias  # (n, k)
        loss = torch.nn.functional.cross_entropy(logits, y, weight=class_weight) + l2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return weight.detach(), bias.detach()


def default_bank_path() -> Path:
    """``kinema/safety/data/bank.safetensors`` (shipped with the package)."""
    return Path(str(resources.files("kinema.safety").joinpath("data", "bank.safetensors")))


@dataclass
class ExemplarBank:
    """Exemplar embeddings and the logistic regression trained on them, for one text encoder.

    Attributes:
        embeddings: ``(n, d)`` unit-length exemplar sentence embeddings.
        labels: ``(n,)`` int64 index into ``LABELS``.
        weight: ``(k, d)`` and bias ``(k,)``: the regression over ``LABELS`` (k = 7).
        key: what the bank was built from (see ``bank_key``).
    """

    embeddings: torch.Tensor  # (n, d)
    labels: torch.Tensor  # (n,)
    weight: torch.Tensor  # (k, d)
    bias: torch.Tensor  # (k,)
    key: str

    @staticmethod
    def build(encoder: TextEncoder, exemplars: dict[str, list[str]], key: str) -> ExemplarBank:
        """Embed every exemplar (normalised like prompts) and train the regression."""
        texts = [normalize(t) for label in LABELS for t in exemplars[label]]
        labels = torch.tensor([i for i, label in enumerate(LABELS) for _ in exemplars[label]], dtype=torch.long)
        embeddings = sentence_embeddings(encoder, texts)  # (n, d)
        weight, bias = train_logistic(embeddings, labels, len(LABELS), _L2)
        return ExemplarBank(embeddings, labels, weight, bias, key)

    def save(self, path: Path) -> None:
        tensors = {"embeddings": self.embeddings, "labels": self.labels, "weight": self.weight, "bias": self.bias}
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path),
                  metadata={"key": self.key, "labels": ",".join(LABELS)})

    @staticmethod
    def read(path: Path) -> ExemplarBank | None:
        """The bank stored at ``path``, or None when there is none or it cannot be read."""
        if not path.is_file():
            return None
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                key = (handle.metadata() or {}).get("key", "")
            t = load_file(str(path))
            return ExemplarBank(t["embeddings"], t["labels"], t["weight"], t["bias"], key)
        except (OSError, KeyError, SafetensorError) as exc:
            logger.warning("moderation bank %s is unreadable (%s: %s)", path, type(exc).__name__, exc)
            return None


def bank_key(exemplar_bytes: bytes, encoder: TextEncoder) -> str:
    """sha256 (16 hex) of the bank version, the training settings, ``exemplars.json`` and the encoder."""
    digest = hashlib.sha256(f"v{BANK_VERSION} l2={_L2} labels={','.join(LABELS)}\0".encode())
    digest.update(exemplar_bytes)
    digest.update(f"\0encoder={encoder.identity}".encode())
    return digest.hexdigest()[:16]


def load_bank(encoder: TextEncoder, path: Path | None = None, exemplar_bytes: bytes | None = None) -> ExemplarBank:
    """The bank for ``encoder`` and the exemplars: read from ``path`` when its key matches, else rebuilt.

    A stale or missing bank is rebuilt from the exemplars (logged as a warning) and written back to
    ``path`` when that is writable. ``exemplar_bytes`` defaults to the shipped ``exemplars.json``.
    """
    path = default_bank_path() if path is None else Path(path)
    if exemplar_bytes is None:
        exemplar_bytes = resources.files("kinema.safety").joinpath("data", "exemplars.json").read_bytes()
    key = bank_key(exemplar_bytes, encoder)
    bank = ExemplarBank.read(path)
    if bank is not None and bank.key == key:
        return bank
    exemplars = json.loads(exemplar_bytes.decode("utf-8"))
    missing = [label for label in LABELS if label not in exemplars]
    if missing:
        raise ModelLoadError(f"exemplars lack the labels {missing}; expected a list of prompts per label in {list(LABELS)}")
    found = "missing" if bank is None else f"stale (key {bank.key!r}, expected {key!r})"
    logger.warning("moderation bank %s is %s: exemplars, training settings or text encoder changed; "
                   "recomputing %d exemplar embeddings", path, found, sum(len(exemplars[label]) for label in LABELS))
    bank = ExemplarBank.build(encoder, exemplars, key)
    try:
        bank.save(path)
    except OSError as exc:
        logger.warning("could not write the moderation bank to %s (%s); it is rebuilt in every process", path, exc)
    return bank


@dataclass(frozen=True)
class Scores:
    """Classifier evidence for one prompt: ``nearest`` best cosine per label in ``LABELS`` and the
    regression's ``probability`` per label."""

    nearest: dict[str, float]
    probability: dict[str, float]


class EmbeddingClassifier:
    """Nearest-exemplar similarity plus logistic regression on MiniLM sentence embeddings."""

    def __init__(self, config: ModerationConfig, encoder: PromptEncoder | None = None, bank_path: Path | None = None) -> None:
        from kinema.text import TextEncoder

        self.config = config
        self.encoder: TextEncoder = base_encoder(encoder) if encoder is not None else TextEncoder()
        self.bank = load_bank(self.encoder, bank_path)

    def scores(self, text: str) -> Scores:
        """Best cosine per label and the regression's probabilities for ``text`` (already normalised)."""
        x = sentence_embeddings(self.encoder, [text])[0]  # (d,)
        sims = self.bank.embeddings @ x  # (n,)
        best = torch.full((len(LABELS),), -1.0).scatter_reduce(0, self.bank.labels, sims, reduce="amax")  # (k,)
        probs = torch.softmax(self.bank.weight @ x + self.bank.bias, dim=-1)  # (k,)
        return Scores(dict(zip(LABELS, best.tolist(), strict=True)), dict(zip(LABELS, probs.tolist(), strict=True)))

    def classify(self, text: str) -> list[Flag]:
        if len(content_words(text)) < max(1, self.config.min_content_words):
            return []
        s = self.scores(text)
        flags = []
        for cat in CATEGORIES:
            near, prob = s.nearest[cat], s.probability[cat]
            if near >= self.config.thresholds[cat] and near - s.nearest["benign"] >= self.config.margin:
                flags.append(Flag(cat, "classifier", f"similarity {near:.2f} (benign {s.nearest['benign']:.2f})", near))
            elif prob >= self.config.min_probability:
                flags.append(Flag(cat, "classifier", f"probability {prob:.2f}", prob))
        return sorted(flags, key=lambda f: -f.score)


@dataclass(frozen=True)
class Verdict:
    """Outcome of ``Moderator.review``: ``allowed`` and the flags (enforced categories only)."""

    allowed: bool
    flags: tuple[Flag, ...]

    @property
    def category(self) -> str | None:
        return self.flags[0].category if self.flags else None


class Moderator:
    """Allow-list, rules, the embedding classifier and any extra plugged classifiers.

    ``encoder``: an already-loaded bundled MiniLM (``TextEncoder`` or ``CachedTextEncoder``, e.g. the
    pipeline's) to share; without one, the classifier loads its own on first use. An encoder of
    another model is not used (the bank and thresholds are made for MiniLM).
    """

    def __init__(
        self,
        config: ModerationConfig | None = None,
        extra: list[PromptClassifier] | None = None,
        encoder: PromptEncoder | None = None,
    ) -> None:
        self.config = config or ModerationConfig()
        self.rules = RuleClassifier()
        allow = [*self.rules.allow_patterns, *self.config.allow]
        self.allow = re.compile("|".join(_words(p) for p in allow)) if allow else None
        self.extra = list(extra or [])
        self._lock = threading.RLock()
        self._encoder: PromptEncoder | None = None
        self._classifier: EmbeddingClassifier | None = None
        if encoder is not None:
            self.use_encoder(encoder)

    def use_encoder(self, encoder: PromptEncoder) -> bool:
        """Share ``encoder`` for the classifier if it is the bundled MiniLM and none is loaded yet.

        Returns True when the classifier uses (or already used) an encoder this call supplied.
        """
        with self._lock:
            if not is_moderation_encoder(encoder):
                logger.info("moderation keeps its own MiniLM: %r is another text encoder", encoder)
                return False
            if self._classifier is not None:
                return base_encoder(encoder) is self._classifier.encoder
            self._encoder = encoder
            return True

    @property
    def embedding(self) -> EmbeddingClassifier:
        """The embedding classifier, built on first use (shared encoder if given, precomputed bank)."""
        with self._lock:
            if self._classifier is None:
                self._classifier = EmbeddingClassifier(self.config, self._encoder)
            return self._classifier

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
            classifier = self.embedding
            with self._lock:
                flags = classifier.classify(prepared)
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


def check_prompt(text: str, *, field_name: str = "prompt", encoder: PromptEncoder | None = None) -> None:
    """Refuse ``text`` with ``RefusedPromptError(message, category)`` if the policy blocks it.

    ``encoder``: the caller's loaded text encoder; the process-wide moderator shares it when it is
    the bundled MiniLM (see ``Moderator.use_encoder``) instead of loading a second copy.
    """
    moderator = get_moderator()
    if encoder is not None:
        moderator.use_encoder(encoder)
    moderator.check(text, field_name=field_name)
