"""Wire formats of the OpenAI Videos API as Kinema serves them (pydantic models, for responses and ``/openapi.json``).

``VideoObject`` has every field of the ``openai`` SDK's ``Video`` type. Errors are OpenAI-style:
``{"error": {"message", "type", "param", "code"}}``, raised inside the app as :class:`ApiError`.
Request bodies come as JSON or as multipart forms (the SDK sends multipart for create, edits and
extensions, and JSON for remix); nested objects travel in forms as ``video[id]`` /
``input_reference[image_url]``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class VideoError(BaseModel):
    """Why a job failed. ``code``: ``moderation_blocked``, ``invalid_input``, ``invalid_media``, ``interrupted``, ``generation_failed``."""

    code: str
    message: str


class VideoObject(BaseModel):
    """A video job (the SDK's ``Video``)."""

    id: str = Field(description="video_ + 32 hex digits; sorts by creation time")
    object: Literal["video"] = "video"
    model: str = Field(description="the model name the request used (every name runs the served model)")
    status: Literal["queued", "in_progress", "completed", "failed"]
    progress: int = Field(ge=0, le=100, description="0-95 over the sampler steps, 100 when completed")
    created_at: int
    completed_at: int | None = None
    expires_at: int | None = Field(None, description="when the files are deleted (see docs/server.md, 'Retention')")
    prompt: str | None = None
    size: str = Field(description="WIDTHxHEIGHT that is (or will be) made, e.g. 64x64")
    seconds: str = Field(description="(frames - 1) / fps of the clip, e.g. '2'; for extensions the stitched total")
    remixed_from_video_id: str | None = None
    error: VideoError | None = None


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VideoObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok", "starting"]
    model: str
    worker_alive: bool
    worker_ready: bool
    worker_pid: int | None = None
    worker_restarts: int
    queued_or_running: int


# ------------------------------------------------------------------------------------ request bodies (documentation)
class ImageReference(BaseModel):
    image_url: str | None = Field(None, description="a base64 data URL (data:image/png;base64,...); remote URLs are not fetched")
    file_id: str | None = Field(None, description="not supported (no Files API); refused with 400")


class VideoReference(BaseModel):
    id: str = Field(description="a completed video's id")


class CreateVideoJSON(BaseModel):
    prompt: str
    model: str | None = Field(None, description="sora-2, sora-2-pro (more sampler steps), their dated names, or the served model's name")
    seconds: str | None = Field(None, description="4, 8, 12 or a number of seconds; capped at the model's longest clip")
    size: str | None = Field(None, description="an OpenAI size (mapped by aspect ratio) or one of the model's sizes")
    input_reference: ImageReference | None = Field(None, description="the first frame")
    seed: int | None = Field(None, description="Kinema extension: the sampling seed (random when omitted)")


class CreateVideoForm(BaseModel):
    prompt: str
    model: str | None = None
    seconds: str | None = None
    size: str | None = None
    input_reference: bytes | None = Field(None, description="a PNG, JPEG or WebP image: the first frame")
    seed: int | None = None


class RemixJSON(BaseModel):
    prompt: str
    strength: float | None = Field(None, description="Kinema extension: SDEdit strength in (0, 1] (default: the server's remix strength)")
    seed: int | None = Field(None, description="Kinema extension (default: the source video's seed)")


class EditJSON(BaseModel):
    prompt: str
    video: VideoReference
    strength: float | None = Field(None, description="Kinema extension: SDEdit strength in (0, 1]")
    seed: int | None = None


class EditForm(BaseModel):
    prompt: str
    video: bytes = Field(description="an MP4, MOV, WebM or GIF file, or send video[id] with a completed video's id")
    strength: float | None = None
    seed: int | None = None


class ExtendJSON(BaseModel):
    prompt: str
    seconds: str = Field(description="length of the new part: 4, 8, 12, 16, 20 or a number of seconds; capped at the model's longest clip")
    video: VideoReference
    seed: int | None = None


class ExtendForm(BaseModel):
    prompt: str
    seconds: str
    video: bytes = Field(description="an MP4, MOV, WebM or GIF file, or send video[id] with a completed video's id")
    seed: int | None = None


REQUEST_MODELS: tuple[type[BaseModel], ...] = (CreateVideoJSON, CreateVideoForm, RemixJSON, EditJSON, EditForm, ExtendJSON, ExtendForm)


def request_body(json_model: type[BaseModel], form_model: type[BaseModel] | None) -> dict[str, object]:
    """``openapi_extra`` declaring a JSON and (optionally) a multipart body by component reference."""
    content: dict[str, object] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{json_model.__name__}"}}}
    if form_model is not None:
        content["multipart/form-data"] = {"schema": {"$ref": f"#/components/schemas/{form_model.__name__}"}}
    return {"requestBody": {"required": True, "content": content}}


class ApiError(Exception):
    """An error answered as OpenAI-style JSON with ``status``; ``headers`` are added to the response."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
