"""Safety and provenance: prompt moderation, invisible watermark, C2PA content credentials, records.

The two calls every generation path makes::

    check_prompt(prompt)                         # raises RefusedPromptError(message, category)
    finalize_output(video, path, params, model_id=..., generation_id=new_generation_id())

``kinema detect FILE`` (``kinema.safety.cli``) reports watermark, C2PA state and record.
"""

from __future__ import annotations

from kinema.safety.moderation import (
    CATEGORIES,
    MODERATION_PRESETS,
    Flag,
    ModerationConfig,
    Moderator,
    PromptClassifier,
    check_prompt,
    get_moderator,
    set_moderator,
)
from kinema.safety.provenance import finalize_output, load_record, new_generation_id, reproduce
from kinema.safety.watermark import WATERMARK_PRESETS, Payload, WatermarkConfig, detect_watermark, embed_watermark

__all__ = [
    "CATEGORIES", "MODERATION_PRESETS", "WATERMARK_PRESETS", "Flag", "ModerationConfig", "Moderator", "Payload",
    "PromptClassifier", "WatermarkConfig", "check_prompt", "detect_watermark", "embed_watermark", "finalize_output",
    "get_moderator", "load_record", "new_generation_id", "reproduce", "set_moderator",
]
