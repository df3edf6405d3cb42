"""Exceptions raised by Kinema.

Library code raises these with the bad value and the allowed range in the message. The CLI prints
them on one line without a traceback and exits with status 2; the server maps them to OpenAI-style
error JSON.
"""

from __future__ import annotations


class KinemaError(Exception):
    """Base class for every error Kinema raises on purpose."""


class InvalidInputError(KinemaError, ValueError):
    """A user-supplied value (size, duration, option, file) is invalid. The message names it."""


class ModelLoadError(KinemaError):
    """A checkpoint folder is missing, unreadable or does not match its config."""


class VideoIOError(KinemaError):
    """A video or image file cannot be read or written."""


class CaptionParseError(InvalidInputError):
    """A caption contains words outside the Kinema World vocabulary."""


class RefusedPromptError(KinemaError):
    """A prompt was refused by moderation. ``category`` names the policy category."""

    def __init__(self, message: str, category: str) -> None:
        super().__init__(message)
        self.category = category
