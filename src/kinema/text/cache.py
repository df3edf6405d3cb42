"""Prompt caches around a ``TextEncoder``: an in-memory LRU and an optional folder on disk.

Both caches store each prompt's states unpadded, ``(l, d)`` with every token real, and pad on the
way out, so a cached batch is bit-for-bit what ``TextEncoder.encode`` returns for the same prompts
in any order or batch (with ``config.batch_invariant``, the default).

Disk layout: one safetensors file per prompt,
``<cache_dir>/<sha256(encoder identity, max_length, prompt)[:32]>.safetensors``, holding the
tensor ``states (l, d)`` float32 and metadata ``{format, encoder, max_length, prompt}``.
The metadata is checked on read, so a hash collision or a file from another encoder is a miss,
never a wrong answer. Writes are atomic (temporary file + rename); the folder is never pruned.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from kinema.errors import InvalidInputError
from kinema.text.config import TextEncoderConfig
from kinema.text.encoder import TextEmbedding, TextEncoder, check_prompts

logger = logging.getLogger(__name__)

DISK_FORMAT = "kinema.text.v1"


@dataclass
class CacheStats:
    """Counts since construction (or the last ``clear``)."""

    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0  # prompts that ran through the encoder

    @property
    def lookups(self) -> int:
        return self.memory_hits + self.disk_hits + self.misses


class CachedTextEncoder:
    """A ``TextEncoder`` behind an LRU cache of ``max_entries`` prompts and an optional disk cache.

    Same interface as ``TextEncoder`` (``config``, ``dim``, ``encode``, ``encode_unpadded``).
    Duplicate prompts within one call are encoded once.
    """

    def __init__(
        self,
        encoder: TextEncoder,
        max_entries: int = 1024,
        cache_dir: str | Path | None = None,
    ) -> None:
        if max_entries < 0:
            raise InvalidInputError(
                f"max_entries={max_entries} is invalid; allowed >= 0 (0 = no memory cache)"
            )
        self.encoder = encoder
        self.config: TextEncoderConfig = encoder.config
        self.max_entries = max_entries
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.stats = CacheStats()
        self._memory: OrderedDict[str, Tensor] = OrderedDict()

    @classmethod
    def from_config(
        cls,
        config: TextEncoderConfig | None = None,
        max_entries: int = 1024,
        cache_dir: str | Path | None = None,
    ) -> CachedTextEncoder:
        """Load ``TextEncoder(config)`` and wrap it."""
        return cls(TextEncoder(config), max_entries=max_entries, cache_dir=cache_dir)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def __len__(self) -> int:
        """Prompts held in memory."""
        return len(self._memory)

    def clear(self) -> None:
        """Empty the memory cache and reset the counters (the disk folder is kept)."""
        self._memory.clear()
        self.stats = CacheStats()

    def encode(self, prompts: list[str]) -> TextEmbedding:
        """Encode prompts -> ``TextEmbedding(states (b, l, d), mask (b, l))`` via the caches."""
        return TextEmbedding.from_unpadded(self._lookup(prompts))

    def encode_unpadded(self, prompts: list[str]) -> list[Tensor]:
        """States per prompt, ``(l_i, d)`` each (copies: safe to modify)."""
        return [s.clone() for s in self._lookup(prompts)]

    def _lookup(self, prompts: list[str]) -> list[Tensor]:
        prompts = check_prompts(prompts)
        found: dict[str, Tensor] = {}
        for prompt in dict.fromkeys(prompts):  # unique, in order
            states = self._memory_get(prompt)
            if states is not None:
                self.stats.memory_hits += 1
            else:
                states = self._disk_get(prompt)
                if states is not None:
                    self.stats.disk_hits += 1
                    self._memory_put(prompt, states)
            if states is not None:
                found[prompt] = states
        missing = [p for p in dict.fromkeys(prompts) if p not in found]
        if missing:
            self.stats.misses += len(missing)
            for prompt, states in zip(missing, self.encoder.encode_unpadded(missing), strict=True):
                found[prompt] = states
                self._memory_put(prompt, states)
                self._disk_put(prompt, states)
        return [found[p] for p in prompts]

    def _memory_get(self, prompt: str) -> Tensor | None:
        states = self._memory.get(prompt)
        if states is not None:
            self._memory.move_to_end(prompt)
        return states

    def _memory_put(self, prompt: str, states: Tensor) -> None:
        if self.max_entries == 0:
            return
        self._memory[prompt] = states
        self._memory.move_to_end(prompt)
        while len(self._memory) > self.max_entries:
            self._memory.popitem(last=False)  # least recently used

    def disk_path(self, prompt: str) -> Path | None:
        """The file that holds (or would hold) ``prompt``'s states; None without a cache_dir."""
        if self.cache_dir is None:
            return None
        key = f"{self.encoder.identity}\0{self.config.max_length}\0{prompt}"
        return self.cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.safetensors"

    def _expected_metadata(self, prompt: str) -> dict[str, str]:
        return {
            "format": DISK_FORMAT,
            "encoder": self.encoder.identity,
            "max_length": str(self.config.max_length),
            "prompt": prompt,
        }

    def _disk_get(self, prompt: str) -> Tensor | None:
        path = self.disk_path(prompt)
        if path is None or not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                if handle.metadata() != self._expected_metadata(prompt):
                    return None
                states = handle.get_tensor("states")  # (l, d)
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # corrupt: re-encode
            logger.warning("ignoring unreadable text cache file %s: %s", path, exc)
            return None
        return states.to(self.config.device)

    def _disk_put(self, prompt: str, states: Tensor) -> None:
        path = self.disk_path(prompt)
        if path is None:
            return
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            save_file(
                {"states": states.detach().cpu().contiguous()},
                tmp,
                metadata=self._expected_metadata(prompt),
            )
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
