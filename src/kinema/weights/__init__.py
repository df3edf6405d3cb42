"""The bundled default model, shipped as package data beside this file."""

from __future__ import annotations

from pathlib import Path

from kinema.errors import ModelLoadError

BUNDLED_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_NAME = "default"


def bundled_model_path(name: str = DEFAULT_MODEL_NAME) -> Path:
    """Folder of a bundled model (``default``); raises ModelLoadError if it is not installed."""
    path = BUNDLED_DIR / name
    if not (path / "pipeline.json").is_file():
        available = sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / "pipeline.json").is_file())
        raise ModelLoadError(f"bundled model '{name}' not found in {BUNDLED_DIR}; available: {available or 'none'}")
    return path
