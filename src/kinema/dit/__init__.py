"""Diffusion transformer: spacetime patches, 3D RoPE, adaLN-zero blocks, text cross-attention."""

from __future__ import annotations

from kinema.dit.config import DIT_PRESETS, DiTConfig, dit_preset
from kinema.dit.model import DiT, TextCache
from kinema.dit.patch import patch_grid, patchify, position_ids, unpatchify
from kinema.dit.rope import Rope3D, apply_rope, rope_angles

__all__ = [
    "DIT_PRESETS",
    "DiT",
    "DiTConfig",
    "Rope3D",
    "TextCache",
    "apply_rope",
    "dit_preset",
    "patch_grid",
    "patchify",
    "position_ids",
    "rope_angles",
    "unpatchify",
]
