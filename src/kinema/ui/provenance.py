"""Safety around UI generations: prompt moderation, watermark + content credentials, provenance.

The UI uses ``kinema.safety`` (``load_safety`` finds it):

- ``check_prompt(text, field_name=...)`` before generating; a refusal raises
  ``RefusedPromptError(message, category)`` and nothing is generated;
- ``finalize_output(video, path, params, *, model_id, generation_id)`` writes each file: the same
  invisible watermark in the frames of the MP4 and the WebM, the generation record in the
  container and a ``<file>.json`` sidecar, and signed C2PA content credentials (MP4 only: the C2PA
  SDK does not support WebM);
- ``kinema.safety.detect.inspect_file(path)`` for the provenance panel: the watermark is read back
  from both files (the MP4 download and the WebM the page plays), the content credentials from the MP4.

Without ``kinema.safety`` the files are written plainly and the panel says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kinema.video import Video

log = logging.getLogger(__name__)

NOT_INSTALLED = "not applied: kinema.safety is not installed"


@dataclass(frozen=True)
class SafetyHooks:
    """The safety functions the UI calls; each ``None`` means "not available" (the page says so)."""

    check_prompt: Callable[..., None] | None = None  # (text, *, field_name) -> None, or raises RefusedPromptError
    finalize_output: Callable[..., Path] | None = None  # (video, path, params, *, model_id, generation_id) -> path
    inspect_file: Callable[[Path], Any] | None = None  # path -> report with .to_dict() (watermark, c2pa, record)

    def check(self, text: str, field_name: str) -> None:
        """Raise ``RefusedPromptError`` when moderation refuses ``text``."""
        if self.check_prompt is not None:
            self.check_prompt(text, field_name=field_name)

    def write(self, video: Video, folder: Path, params: dict[str, object], *, model_id: str, generation_id: str) -> dict[str, Path]:
        """Write ``clip.mp4`` and ``clip.webm`` (finalised when ``kinema.safety`` is there); by suffix."""
        out = {".mp4": folder / "clip.mp4", ".webm": folder / "clip.webm"}
        for path in out.values():
            if self.finalize_output is None:
                video.save(path)
            else:
                self.finalize_output(video, path, params, model_id=model_id, generation_id=generation_id)
        return out

    def describe(self, written: dict[str, Path], *, model_id: str, generation_id: str) -> dict[str, object]:
        """Provenance for the panel: ids, the watermark read back from each file, the MP4's credentials."""
        out: dict[str, object] = {"model_id": model_id, "generation_id": generation_id}
        if self.inspect_file is None:
            out["watermark"] = out["content_credentials"] = NOT_INSTALLED
            return out
        download = self.inspect_file(written[".mp4"]).to_dict()
        played = self.inspect_file(written[".webm"]).to_dict()
        out["verdict"] = download.get("verdict")
        out["watermark"] = {"mp4": download.get("watermark"), "webm": played.get("watermark")}
        out["record_matches_watermark"] = {"mp4": download.get("matches_record"), "webm": played.get("matches_record")}
        out["content_credentials"] = download.get("c2pa")
        return out


def load_safety() -> SafetyHooks:
    """The hooks ``kinema.safety`` provides; empty hooks (and a warning) when it is missing."""
    try:
        from kinema.safety import check_prompt, finalize_output
        from kinema.safety.detect import inspect_file
    except ImportError as e:
        log.warning("kinema.safety not available (%s): prompts are not moderated and outputs carry no watermark", e)
        return SafetyHooks()
    return SafetyHooks(check_prompt=check_prompt, finalize_output=finalize_output, inspect_file=inspect_file)


def provenance_markdown(provenance: dict[str, object]) -> str:
    """The provenance panel's text (Markdown)."""
    lines = [f"**Model** `{provenance.get('model_id')}` · **generation** `{provenance.get('generation_id')}`"]
    if provenance.get("verdict"):
        lines.append(f"**Verdict:** {provenance['verdict']}")
    marks = provenance.get("watermark")
    if not isinstance(marks, dict):
        lines.append(f"**Watermark:** {marks}")
    else:
        matches = provenance.get("record_matches_watermark") or {}
        parts = []
        for name, label in (("mp4", "MP4 download"), ("webm", "played WebM")):
            mark = marks.get(name) or {}
            if mark.get("present"):
                match = {True: ", matches the record", False: ", does NOT match the record"}.get(matches.get(name), "")  # type: ignore[union-attr]
                parts.append(f"{label}: present, payload `{mark.get('payload')}`, confidence {float(mark.get('confidence') or 0.0):.4f}{match}")
            else:
                parts.append(f"{label}: not detected (score {float(mark.get('score') or 0.0):.2f})")
        lines.append("**Watermark read back:** " + "; ".join(parts))
    cred = provenance.get("content_credentials")
    if not isinstance(cred, dict):
        lines.append(f"**Content credentials (C2PA):** {cred}")
    elif not cred.get("present"):
        lines.append("**Content credentials (C2PA, MP4 download):** none")
    else:
        state = "valid" if cred.get("valid") else "INVALID"
        trust = "trusted" if cred.get("trusted") else "untrusted signer"
        ai = ", declares AI-generated media" if cred.get("ai_generated") else ""
        lines.append(f"**Content credentials (C2PA, MP4 download):** {state}, {trust} ({cred.get('state')}){ai}; signer {cred.get('signer')}")
    return "\n\n".join(lines)
