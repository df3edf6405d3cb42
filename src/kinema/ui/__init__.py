"""``kinema ui``: a Gradio web page for every generation mode (see ``docs/ui.md``).

``kinema.ui.clip`` holds the logic (no Gradio import): ``generate_clip(model, request, out_dir)``.
``kinema.ui.app`` builds and serves the page; importing it imports Gradio.
"""

from __future__ import annotations

from kinema.ui.clip import MODE_LABELS, ClipRequest, ClipResult, StudioModel, generate_clip
from kinema.ui.provenance import SafetyHooks, load_safety

__all__ = ["MODE_LABELS", "ClipRequest", "ClipResult", "SafetyHooks", "StudioModel", "generate_clip", "load_safety"]
