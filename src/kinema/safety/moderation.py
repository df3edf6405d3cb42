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
   more letters, so "clip 0" cannot match anything by accident): a weighted vote of the prompt's
   ``neighbors`` nearest labelled prompts (``LABELLED_FILES``: ``data/exemplars.json``,
   ``data/train_prompts.json``, ``data/train_prompts2.json`` and the four scored holdouts
   ``data/eval_holdout{,2,3,4}.json``, about 5,400 prompts over the six categories and
   ``benign``) by cosine similarity of mean-pooled MiniLM sentence embeddings, with weights ``softmax(similarity / temperature)``. The prompt is
   refused when the blocked labels hold at least ``min_blocked`` of the vote; the category is the
   blocked label with the largest share.

Loading: the labelled prompts' embeddings are precomputed into ``data/bank.safetensors``, keyed by a
hash of the labelled files, the bank version and the text encoder's identity; a stale bank is rebuilt
(with a logged warning) and written back. The moderator reuses an already-loaded bundled MiniLM
(``Moderator(encoder=...)``, ``Moderator.use_encoder``, ``check_prompt(..., encoder=...)``) instead
of loading a second copy.

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
from dataclasses import dataclass
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
BANK_VERSION = "5"  # bump when pooling, normalisation or the bank's contents change
# Merged into the bank, in this order. The earlier holdouts joined the bank in session 15, once each
# had been scored; ``eval_holdout5.json`` is the held-out set now (docs/safety.md).
LABELLED_FILES: tuple[str, ...] = (
    "exemplars.json", "train_prompts.json", "train_prompts2.json",
    "eval_holdout.json", "eval_holdout2.json", "eval_holdout3.json", "eval_holdout4.json",
)
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
        neighbors: how many nearest labelled prompts vote (k of the weighted k-nearest-neighbour vote).
        temperature: vote weights are ``softmax(cosine / temperature)`` over the neighbours; smaller
            values let the closest prompts decide.
        min_blocked: the share of the vote on blocked labels at which a prompt is refused.
        min_content_words: prompts with fewer words of 3+ letters (stop words aside) skip the
            classifier (rules still apply): "clip 0" or "video 3" carry no meaning to compare.
        allow: extra allow-listed phrases (regular expressions, whole words) removed before checks.
        categories: categories that are enforced (drop one to permit it, e.g. for research use).
        use_classifier: False keeps only the rules (no text encoder is loaded).
    """

    neighbors: int = 40
    temperature: float = 0.05
    min_blocked: float = 0.8
    min_content_words: int = 2
    allow: tuple[str, ...] = ()
    categories: tuple[str, ...] = CATEGORIES
    use_classifier: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.categories) - set(CATEGORIES)
        if unknown:
            raise InvalidInputError(f"unknown moderation categories {sorted(unknown)}; allowed: {list(CATEGORIES)}")
        if self.neighbors < 1:
            raise InvalidInputError(f"neighbors={self.neighbors} out of range; allowed >= 1")
        if not self.temperature > 0.0:
            raise InvalidInputError(f"temperature={self.temperature} out of range; allowed > 0")
        if not 0.0 < self.min_blocked <= 1.0:
            raise InvalidInputError(f"min_blocked={self.min_blocked} out of range; allowed (0, 1]")
        if self.min_content_words < 0:
            raise InvalidInputError(f"min_content_words={self.min_content_words} out of range; allowed >= 0")


MODERATION_PRESETS: dict[str, ModerationConfig] = {
    "default": ModerationConfig(),
    "strict": ModerationConfig(min_blocked=0.7),  # more refusals of borderline prompts (see docs/safety.md)
    "permissive": ModerationConfig(min_blocked=0.9),  # fewer refusals of borderline prompts, lower recall (the default before session 15)
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


def knn_votes(x: torch.Tensor, bank: torch.Tensor, labels: torch.Tensor, classes: int, k: int, temperature: float) -> torch.Tensor:
    """Weighted k-nearest-neighbour vote: ``(b, classes)``, each row summing to 1.

    Args:
        x: ``(b, d)`` unit-length queries; bank: ``(n, d)`` unit-length labelled embeddings;
        labels: ``(n,)`` int64 class of each bank row; k: neighbours (at most ``n``);
        temperature: weights are ``softmax(cosine / temperature)`` over the ``k`` neighbours.
    """
    return _vote(*_nearest(x, bank, k), labels, classes, temperature)


def _nearest(x: torch.Tensor, bank: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines ``(b, k)`` (best first) and bank rows ``(b, k)`` of the ``k`` nearest bank rows to ``x``."""
    return (x @ bank.T).topk(min(k, bank.shape[0]), dim=1)


def _vote(top: torch.Tensor, index: torch.Tensor, labels: torch.Tensor, classes: int, temperature: float) -> torch.Tensor:
    """``(b, classes)`` vote of the neighbours ``index`` ``(b, k)`` with cosines ``top`` ``(b, k)``."""
    weight = torch.softmax(top / temperature, dim=1)  # (b, k)
    return torch.zeros(top.shape[0], classes, dtype=weight.dtype).scatter_add(1, labels[index], weight)  # (b, classes)


def default_bank_path() -> Path:
    """``kinema/safety/data/bank.safetensors`` (shipped with the package)."""
    return Path(str(resources.files("kinema.safety").joinpath("data", "bank.safetensors")))


def labelled_prompts_bytes() -> bytes:
    """The shipped labelled prompts (``LABELLED_FILES`` merged per label) as canonical JSON bytes."""
    merged: dict[str, list[str]] = {label: [] for label in LABELS}
    for name in LABELLED_FILES:
        data = _data(name)
        if "blocked" in data:  # an evaluation set: {"blocked": {category: [...]}, "benign": [...]}
            data = {**data["blocked"], "benign": data["benign"]}
        for label in LABELS:
            merged[label].extend(data.get(label, []))
    return json.dumps(merged, ensure_ascii=False, sort_keys=True).encode("utf-8")


@dataclass
class ExemplarBank:
    """Embeddings of the labelled prompts, for one text encoder.

    Attributes:
        embeddings: ``(n, d)`` unit-length sentence embeddings (stored float16, used as float32).
        labels: ``(n,)`` int64 index into ``LABELS``.
        key: what the bank was built from (see ``bank_key``).
    """

    embeddings: torch.Tensor  # (n, d)
    labels: torch.Tensor  # (n,)
    key: str

    @staticmethod
    def build(encoder: TextEncoder, prompts: dict[str, list[str]], key: str) -> ExemplarBank:
        """Embed every labelled prompt (normalised like the prompts it will be compared with)."""
        texts = [normalize(t) for label in LABELS for t in prompts[label]]
        labels = torch.tensor([i for i, label in enumerate(LABELS) for _ in prompts[label]], dtype=torch.long)
        chunks = [sentence_embeddings(encoder, texts[i : i + 64]) for i in range(0, len(texts), 64)]
        embeddings = torch.cat(chunks).half().float()  # (n, d): rounded as stored
        return ExemplarBank(embeddings, labels, key)

    def save(self, path: Path) -> None:
        tensors = {"embeddings": self.embeddings.half(), "labels": self.labels}
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
            return ExemplarBank(t["embeddings"].float(), t["labels"], key)
        except (OSError, KeyError, SafetensorError) as exc:
            logger.warning("moderation bank %s is unreadable (%s: %s)", path, type(exc).__name__, exc)
            return None


def bank_key(prompt_bytes: bytes, encoder: TextEncoder) -> str:
    """sha256 (16 hex) of the bank version, the labels, the labelled prompts and the encoder."""
    digest = hashlib.sha256(f"v{BANK_VERSION} labels={','.join(LABELS)}\0".encode())
    digest.update(prompt_bytes)
    digest.update(f"\0encoder={encoder.identity}".encode())
    return digest.hexdigest()[:16]


def load_bank(encoder: TextEncoder, path: Path | None = None, prompt_bytes: bytes | None = None) -> ExemplarBank:
    """The bank for ``encoder`` and the labelled prompts: read from ``path`` when its key matches, else rebuilt.

    A stale or missing bank is rebuilt (logged as a warning) and written back to ``path`` when that
    is writable. ``prompt_bytes`` (JSON ``{label: [prompt, ...]}``) defaults to the shipped
    ``LABELLED_FILES`` merged (:func:`labelled_prompts_bytes`).
    """
    path = default_bank_path() if path is None else Path(path)
    if prompt_bytes is None:
        prompt_bytes = labelled_prompts_bytes()
    key = bank_key(prompt_bytes, encoder)
    bank = ExemplarBank.read(path)
    if bank is not None and bank.key == key:
        return bank
    prompts = json.loads(prompt_bytes.decode("utf-8"))
    missing = [label for label in LABELS if not prompts.get(label)]
    if missing:
        raise ModelLoadError(f"labelled prompts lack the labels {missing}; expected a list of prompts per label in {list(LABELS)}")
    found = "missing" if bank is None else f"stale (key {bank.key!r}, expected {key!r})"
    logger.warning("moderation bank %s is %s: labelled prompts, bank version or text encoder changed; "
                   "recomputing %d embeddings", path, found, sum(len(prompts[label]) for label in LABELS))
    bank = ExemplarBank.build(encoder, prompts, key)
    try:
        bank.save(path)
    except OSError as exc:
        logger.warning("could not write the moderation bank to %s (%s); it is rebuilt in every process", path, exc)
    return bank


@dataclass(frozen=True)
class Scores:
    """Classifier evidence for one prompt: the neighbours' ``votes`` per label in ``LABELS`` (sum 1),
    the ``blocked`` share (1 - the benign vote) and the ``nearest`` labelled prompt's cosine and label."""

    votes: dict[str, float]
    blocked: float
    nearest: tuple[float, str]


class EmbeddingClassifier:
    """Weighted k-nearest-neighbour vote over the labelled prompts' MiniLM sentence embeddings."""

    def __init__(self, config: ModerationConfig, encoder: PromptEncoder | None = None, bank_path: Path | None = None) -> None:
        from kinema.text import TextEncoder

        self.config = config
        self.encoder: TextEncoder = base_encoder(encoder) if encoder is not None else TextEncoder()
        self.bank = load_bank(self.encoder, bank_path)

    def scores(self, text: str) -> Scores:
        """The neighbours' vote for ``text`` (already normalised)."""
        x = sentence_embeddings(self.encoder, [text])  # (1, d)
        c = self.config
        top, index = _nearest(x, self.bank.embeddings, c.neighbors)  # (1, k), best first
        votes = _vote(top, index, self.bank.labels, len(LABELS), c.temperature)[0]  # (classes,)
        return Scores(dict(zip(LABELS, votes.tolist(), strict=True)), 1.0 - float(votes[LABELS.index("benign")]),
                      (float(top[0, 0]), LABELS[int(self.bank.labels[index[0, 0]])]))

    def classify(self, text: str) -> list[Flag]:
        if len(content_words(text)) < max(1, self.config.min_content_words):
            return []
        s = self.scores(text)
        if s.blocked < self.config.min_blocked:
            return []
        cat = max(CATEGORIES, key=lambda c: s.votes[c])
        evidence = f"{s.blocked:.2f} of the {self.config.neighbors} nearest labelled prompts' vote is blocked ({cat} {s.votes[cat]:.2f})"
        return [Flag(cat, "classifier", evidence, s.blocked)]


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
