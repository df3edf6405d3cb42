"""The HTTP API: OpenAI's Videos endpoints under ``/v1``, served by FastAPI.

``create_app(config)`` builds the app; its lifespan takes ``data-dir/server.lock`` (one server per
data folder), runs the retention cleanup (:func:`kinema.serve.media.cleanup`) at start and every
``cleanup_interval_s``, and starts the worker process (:class:`kinema.serve.worker.WorkerSupervisor`).
The API process never generates: a request validates its input, saves uploads, inserts a queued
job into SQLite and wakes the worker.

| method and path                         | what                                                      |
|-----------------------------------------|-----------------------------------------------------------|
| ``POST /v1/videos``                     | text (+ ``input_reference`` first frame) to video          |
| ``GET /v1/videos/{id}``                 | the job, with ``openai-poll-after-ms`` while it runs       |
| ``GET /v1/videos``                      | cursor pages: ``after``, ``limit`` (1-100), ``order``      |
| ``DELETE /v1/videos/{id}``              | the job and its files (a running job is stopped)           |
| ``GET /v1/videos/{id}/content``         | ``variant=video`` (mp4), ``thumbnail`` (webp), ``spritesheet`` (jpeg) |
| ``POST /v1/videos/{id}/remix``          | SDEdit of a completed video with a new prompt, same seed   |
| ``POST /v1/videos/edits``               | SDEdit of a completed video (``video[id]``) or an upload   |
| ``POST /v1/videos/extensions``          | a completed video or an upload continued by ``seconds``    |
| ``GET /health``, ``GET /openapi.json``  | no key needed                                             |
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import logging
import math
import secrets
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse
from pydantic.json_schema import models_json_schema
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kinema import __version__
from kinema.errors import InvalidInputError, RefusedPromptError
from kinema.serve.bodies import Fields, link_file, read_fields, save_data_url, save_upload
from kinema.serve.config import ServerConfig
from kinema.serve.media import VARIANTS, cleanup, remove_job_files
from kinema.serve.schemas import (
    REQUEST_MODELS, ApiError, CreateVideoForm, CreateVideoJSON, EditForm, EditJSON, ErrorResponse, ExtendForm, ExtendJSON,
    Health, RemixJSON, VideoDeleted, VideoList, VideoObject, request_body,
)
from kinema.serve.sizes import (
    OPENAI_EXTENSION_SECONDS, ModelInfo, closest_size, format_seconds, format_size, resolve_model, resolve_seconds, resolve_size,
)
from kinema.serve.store import Job, JobParams, Store, is_video_id, new_video_id
from kinema.serve.worker import WorkerSupervisor

log = logging.getLogger("kinema.serve")

MAX_SEED = 2**63 - 1
ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 415, 429)}


def moderate(prompt: str) -> None:
    """Refuse a prompt before it is queued: raises ``RefusedPromptError`` (answered as 400 ``moderation_blocked``)."""
    from kinema.safety import check_prompt

    check_prompt(prompt)


class BodyTooLarge(Exception):
    """The request body passed ``max_request_bytes``."""


class BodyLimit:
    """ASGI middleware: 413 for a ``content-length`` over the limit, and stop reading a longer streamed body."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            err = ApiError(413, f"The request body is larger than {self.limit // (1024 * 1024)} MiB.", code="request_too_large")
            await JSONResponse(err.body(), status_code=413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge()
            return message

        await self.app(scope, limited, send)


@dataclass
class ServerState:
    cfg: ServerConfig
    info: ModelInfo
    store: Store
    supervisor: WorkerSupervisor | None


def owner_of(key: str) -> str:
    """Jobs belong to the key that made them: ``key:`` + 16 hex digits of its SHA-256."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def video_json(job: Job) -> dict[str, object]:
    """The SDK's ``Video`` object for a job."""
    error = None if job.error_code is None else {"code": job.error_code, "message": job.error_message or ""}
    return {
        "id": job.id, "object": "video", "model": job.model, "status": job.status, "progress": job.progress,
        "created_at": job.created_at, "completed_at": job.completed_at, "expires_at": job.expires_at, "prompt": job.prompt,
        "size": job.size, "seconds": job.seconds, "remixed_from_video_id": job.remixed_from_video_id, "error": error,
    }


def _lock_data_dir(path: Path) -> IO[bytes]:
    import fcntl

    f = open(path, "ab")  # noqa: SIM115 - held while the server runs
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        f.close()
        if e.errno in (errno.EAGAIN, errno.EACCES):
            raise RuntimeError(f"another 'kinema serve' is using the data folder '{path.parent}'") from e
        raise
    return f


def create_app(cfg: ServerConfig, *, start_worker: bool = True) -> FastAPI:
    """The FastAPI app for ``cfg`` (already validated). ``start_worker=False`` serves the API alone."""
    info = ModelInfo.from_folder(cfg.model)
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    state = ServerState(cfg, info, Store(cfg.db_path), WorkerSupervisor(cfg) if start_worker else None)
    stop_janitor = threading.Event()

    def janitor() -> None:
        while not stop_janitor.wait(cfg.cleanup_interval_s):
            try:
                cleanup(cfg, state.store)
            except Exception:  # keep cleaning on the next round
                log.exception("cleanup failed")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lock = _lock_data_dir(cfg.data_dir / "server.lock")
        counts = cleanup(cfg, state.store)
        if any(counts.values()):
            log.info("cleanup: %s", counts)
        thread = threading.Thread(target=janitor, name="kinema-janitor", daemon=True)
        thread.start()
        threading.Thread(target=moderate, args=("a red ball",), name="kinema-moderation-warmup", daemon=True).start()
        if state.supervisor is not None:
            state.supervisor.start()
        try:
            yield
        finally:
            stop_janitor.set()
            if state.supervisor is not None:
                await run_in_threadpool(state.supervisor.stop)
            lock.close()

    app = FastAPI(
        title="Kinema video API", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
        description="OpenAI Videos API (Sora) compatible server for Kinema models. See docs/server.md.",
    )
    app.state.kinema = state
    app.add_middleware(BodyLimit, limit=cfg.max_request_bytes)
    _install_error_handlers(app)
    _install_openapi(app)

    def owner(request: Request) -> str:
        if cfg.no_auth:
            return "local"
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.", code="missing_api_key")
        for key in cfg.api_keys:
            if hmac.compare_digest(token.encode(), key.encode()):
                return owner_of(key)
        raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")

    def poll_headers(job: Job, response: Response) -> None:
        if job.status in ("queued", "in_progress"):
            response.headers["openai-poll-after-ms"] = str(cfg.poll_after_ms)

    def find(video_id: str, who: str, param: str = "video_id") -> Job:
        if not is_video_id(video_id):
            raise ApiError(400, f"Invalid '{param}': {video_id[:64]!r}; video ids look like 'video_' followed by 32 hex digits.", param=param, code="invalid_id")
        job = state.store.get(video_id, who)
        if job is None:
            raise ApiError(404, f"No video found with id '{video_id}'.", param=param, code="video_not_found")
        return job

    def completed_source(video_id: str, who: str, param: str) -> Job:
        job = find(video_id, who, param)
        if job.status != "completed":
            raise ApiError(400, f"Video '{video_id}' is {job.status}; only completed videos can be used here.", param=param, code="video_not_ready")
        if job.files_expired or not (cfg.videos_dir / video_id / VARIANTS["video"][0]).is_file():
            raise ApiError(404, f"The files of video '{video_id}' have expired.", param=param, code="video_expired")
        return job

    def retry_after() -> str:
        """Seconds until a queue slot frees: the mean duration of recent jobs (5 s before any ran)."""
        return str(max(1, math.ceil(state.store.mean_job_seconds() or 5.0)))

    def check_room() -> None:
        if state.store.active_count() >= cfg.max_queue:
            raise ApiError(429, f"The queue is full ({cfg.max_queue} videos queued or in progress); retry later.", type="rate_limit_error",
                           code="queue_full", headers={"retry-after": retry_after()})

    def valid_prompt(fields: Fields) -> str:
        prompt = fields.text("prompt", required=True, max_chars=cfg.max_prompt_chars)
        assert prompt is not None
        if not prompt.strip():
            raise ApiError(400, "'prompt' is empty.", param="prompt", code="invalid_value")
        try:
            moderate(prompt)
        except RefusedPromptError as e:
            raise ApiError(400, str(e), type="invalid_request_error", param="prompt", code="moderation_blocked") from e
        return prompt

    def steps_for(model: str) -> int | None:
        if "-pro" not in model:
            return cfg.steps
        return cfg.pro_steps or 2 * (cfg.steps or info.steps)

    def enqueue(job: Job) -> dict[str, object]:
        if not state.store.insert_if_room(job, cfg.max_queue):
            remove_job_files(cfg, job.id)
            raise ApiError(429, f"The queue is full ({cfg.max_queue} videos queued or in progress); retry later.", type="rate_limit_error",
                           code="queue_full", headers={"retry-after": retry_after()})
        if state.supervisor is not None:
            state.supervisor.notify()
        log.info("%s: queued (%s, %s, %s s)", job.id, job.params.mode, job.size, job.seconds)
        return video_json(job)

    def new_job(kind: str, prompt: str, model: str, params: JobParams, seconds: float, remixed_from: str | None, who: str, vid: str) -> Job:
        scale = info.refine_factor if params.refine else 1
        return Job(id=vid, owner=who, kind=kind, status="queued", model=model, prompt=prompt, size=format_size((params.width * scale, params.height * scale)),
                   seconds=format_seconds(seconds), params=params, created_at=int(time.time()), remixed_from_video_id=remixed_from)

    def bad_input(param: str, error: InvalidInputError) -> ApiError:
        return ApiError(400, str(error), param=param, code="invalid_value")

    # ------------------------------------------------------------------ jobs from requests (run in a thread)
    def create_job(fields: Fields, who: str) -> dict[str, object]:
        prompt = valid_prompt(fields)
        check_room()
        try:
            model, _ = resolve_model(fields.text("model"), info)
        except InvalidInputError as e:
            raise bad_input("model", e) from e
        try:
            frames = resolve_seconds(fields.text("seconds"), info)
        except InvalidInputError as e:
            raise bad_input("seconds", e) from e
        size_text = fields.text("size")
        try:
            size = resolve_size(size_text, info)
        except InvalidInputError as e:
            raise bad_input("size", e) from e
        seed = fields.integer("seed", 0, MAX_SEED)
        vid = new_video_id()
        upload_dir = cfg.uploads_dir / vid
        image = None
        try:
            if "input_reference" in fields.files:
                image = save_upload(fields.files["input_reference"], upload_dir, cfg, "image", "input_reference")
            elif fields.values.get("input_reference[file_id]") is not None:
                raise ApiError(400, "'input_reference.file_id' is not supported (this server has no Files API); upload the image or send a data URL.",
                               param="input_reference", code="unsupported_parameter")
            elif (url := fields.text("input_reference[image_url]")) is not None:
                image = save_data_url(url, upload_dir, cfg, "input_reference")
            elif fields.values.get("input_reference") is not None:
                raise ApiError(400, "'input_reference' must be an uploaded image file or {\"image_url\": \"data:image/...;base64,...\"}.",
                               param="input_reference", code="invalid_type")
            if image is not None and not size_text:
                size = closest_size(info, image[1].width, image[1].height)
            base, refine = info.base_of(size)
            params = JobParams(mode="i2v" if image else "t2v", width=base[0], height=base[1], frames=frames, fps=info.fps,
                               seed=secrets.randbelow(2**31) if seed is None else seed, steps=steps_for(model),
                               input=None if image is None else image[0].name, refine=refine)
            return enqueue(new_job("create", prompt, model, params, info.seconds_of(frames), None, who, vid))
        except BaseException:
            remove_job_files(cfg, vid)
            raise

    def source_input(fields: Fields, who: str, vid: str) -> tuple[Job | None, Path, float, tuple[int, int]]:
        """The ``video`` of an edit or extension: ``(source job or None, input path, seconds, size)``."""
        if "video" in fields.files:
            path, media = save_upload(fields.files["video"], cfg.uploads_dir / vid, cfg, "video", "video")
            seconds = min(media.seconds, cfg.max_input_frames / info.fps) if media.seconds else 0.0
            return None, path, seconds, closest_size(info, media.width, media.height)
        ref = fields.text("video[id]")
        if ref is None:
            raise ApiError(400, "Missing required parameter: 'video' (an uploaded video file, or video[id] with a completed video's id).",
                           param="video", code="missing_required_parameter")
        src = completed_source(ref, who, "video")
        path = link_file(cfg.videos_dir / src.id / VARIANTS["video"][0], cfg.uploads_dir / vid / "input.mp4")
        return src, path, float(src.seconds), (src.params.width, src.params.height)

    def remix_job(source_id: str, fields: Fields, who: str) -> dict[str, object]:
        prompt = valid_prompt(fields)
        src = completed_source(source_id, who, "video_id")
        check_room()
        strength = fields.number("strength", 0.0, 1.0) or cfg.remix_strength
        seed = fields.integer("seed", 0, MAX_SEED)
        vid = new_video_id()
        try:
            path = link_file(cfg.videos_dir / src.id / VARIANTS["video"][0], cfg.uploads_dir / vid / "input.mp4")
            params = JobParams(mode="edit", width=src.params.width, height=src.params.height, frames=src.params.frames, fps=src.params.fps,
                               seed=src.params.seed if seed is None else seed, steps=steps_for(src.model), strength=strength, input=path.name,
                               refine=src.params.refine)  # a refined video is remixed at its own size
            return enqueue(new_job("remix", prompt, src.model, params, float(src.seconds), src.id, who, vid))
        except BaseException:
            remove_job_files(cfg, vid)
            raise

    def edit_job(fields: Fields, who: str) -> dict[str, object]:
        prompt = valid_prompt(fields)
        check_room()
        strength = fields.number("strength", 0.0, 1.0) or cfg.edit_strength
        seed = fields.integer("seed", 0, MAX_SEED)
        vid = new_video_id()
        try:
            src, path, seconds, size = source_input(fields, who, vid)
            frames = info.frames_for(min(seconds, info.max_seconds)) if seconds else info.max_frames
            params = JobParams(mode="edit", width=size[0], height=size[1], frames=frames, fps=info.fps,
                               seed=(src.params.seed if src else secrets.randbelow(2**31)) if seed is None else seed,
                               steps=steps_for(src.model if src else info.name), strength=strength, input=path.name,
                               refine=bool(src and src.params.refine))  # a refined video is edited at its own size
            model = src.model if src else info.name
            return enqueue(new_job("edit", prompt, model, params, info.seconds_of(frames), None, who, vid))
        except BaseException:
            remove_job_files(cfg, vid)
            raise

    def extend_job(fields: Fields, who: str) -> dict[str, object]:
        prompt = valid_prompt(fields)
        check_room()
        seconds_text = fields.text("seconds", required=True)
        try:
            new_frames = resolve_seconds(seconds_text, info, openai_values=OPENAI_EXTENSION_SECONDS) - 1
        except InvalidInputError as e:
            raise bad_input("seconds", e) from e
        seed = fields.integer("seed", 0, MAX_SEED)
        vid = new_video_id()
        try:
            src, path, seconds, size = source_input(fields, who, vid)
            params = JobParams(mode="extend", width=size[0], height=size[1], frames=new_frames, fps=info.fps,
                               seed=secrets.randbelow(2**31) if seed is None else seed, steps=steps_for(src.model if src else info.name), input=path.name)
            model = src.model if src else info.name
            return enqueue(new_job("extend", prompt, model, params, seconds + new_frames / info.fps, None, who, vid))
        except BaseException:
            remove_job_files(cfg, vid)
            raise

    # ------------------------------------------------------------------ routes
    @app.post("/v1/videos", response_model=VideoObject, responses=ERRORS, openapi_extra=request_body(CreateVideoJSON, CreateVideoForm),
              summary="Create a video", tags=["videos"])
    async def create_video(request: Request, response: Response, who: str = Depends(owner)) -> dict[str, object]:
        fields = await read_fields(request, ("prompt", "model", "seconds", "size", "input_reference", "input_reference[image_url]",
                                             "input_reference[file_id]", "seed"))
        body = await run_in_threadpool(create_job, fields, who)
        response.headers["openai-poll-after-ms"] = str(cfg.poll_after_ms)
        return body

    @app.get("/v1/videos", response_model=VideoList, responses=ERRORS, summary="List videos", tags=["videos"])
    def list_videos(after: str | None = None, limit: int = 20, order: str = "desc", who: str = Depends(owner)) -> dict[str, object]:
        if not 1 <= limit <= 100:
            raise ApiError(400, f"Invalid 'limit': {limit}; expected an integer between 1 and 100.", param="limit", code="invalid_value")
        if order not in ("asc", "desc"):
            raise ApiError(400, f"Invalid 'order': {order[:16]!r}; expected 'asc' or 'desc'.", param="order", code="invalid_value")
        if after is not None and not is_video_id(after):
            raise ApiError(400, f"Invalid 'after': {after[:64]!r}; expected a video id.", param="after", code="invalid_id")
        jobs, has_more = state.store.page(who, after=after, limit=limit, order=order)
        data = [video_json(j) for j in jobs]
        return {"object": "list", "data": data, "first_id": jobs[0].id if jobs else None, "last_id": jobs[-1].id if jobs else None, "has_more": has_more}

    @app.get("/v1/videos/{video_id}", response_model=VideoObject, responses=ERRORS, summary="Retrieve a video", tags=["videos"])
    def retrieve_video(video_id: str, response: Response, who: str = Depends(owner)) -> dict[str, object]:
        job = find(video_id, who)
        poll_headers(job, response)
        return video_json(job)

    @app.delete("/v1/videos/{video_id}", response_model=VideoDeleted, responses=ERRORS, summary="Delete a video", tags=["videos"])
    def delete_video(video_id: str, who: str = Depends(owner)) -> dict[str, object]:
        find(video_id, who)
        job = state.store.delete(video_id, who)
        if job is None:
            raise ApiError(404, f"No video found with id '{video_id}'.", param="video_id", code="video_not_found")
        remove_job_files(cfg, video_id)
        return {"id": video_id, "object": "video.deleted", "deleted": True}

    @app.get("/v1/videos/{video_id}/content", responses={**ERRORS, 200: {"content": {"video/mp4": {}, "image/webp": {}, "image/jpeg": {}}}},
             response_class=FileResponse, summary="Download a video, its thumbnail or its spritesheet", tags=["videos"])
    def video_content(video_id: str, variant: str = Query("video", description="video (mp4), thumbnail (webp) or spritesheet (jpeg)"),
                      who: str = Depends(owner)) -> FileResponse:
        if variant not in VARIANTS:
            raise ApiError(400, f"Invalid 'variant': {variant[:32]!r}; expected one of {', '.join(VARIANTS)}.", param="variant", code="invalid_value")
        job = find(video_id, who)
        if job.status != "completed":
            raise ApiError(400, f"Video '{video_id}' is {job.status}; its content is available once it is completed.", param="video_id", code="video_not_ready")
        name, media_type = VARIANTS[variant]
        path = cfg.videos_dir / video_id / name
        if job.files_expired or not path.is_file():
            raise ApiError(404, f"The files of video '{video_id}' have expired.", param="video_id", code="video_expired")
        return FileResponse(path, media_type=media_type, filename=f"{video_id}{path.suffix}", content_disposition_type="inline")

    @app.post("/v1/videos/{video_id}/remix", response_model=VideoObject, responses=ERRORS, openapi_extra=request_body(RemixJSON, None),
              summary="Remix a completed video with a new prompt", tags=["videos"])
    async def remix_video(video_id: str, request: Request, response: Response, who: str = Depends(owner)) -> dict[str, object]:
        fields = await read_fields(request, ("prompt", "strength", "seed"))
        body = await run_in_threadpool(remix_job, video_id, fields, who)
        response.headers["openai-poll-after-ms"] = str(cfg.poll_after_ms)
        return body

    @app.post("/v1/videos/edits", response_model=VideoObject, responses=ERRORS, openapi_extra=request_body(EditJSON, EditForm),
              summary="Edit a video (a completed one by id, or an upload)", tags=["videos"])
    async def edit_video(request: Request, response: Response, who: str = Depends(owner)) -> dict[str, object]:
        fields = await read_fields(request, ("prompt", "video", "video[id]", "strength", "seed"))
        body = await run_in_threadpool(edit_job, fields, who)
        response.headers["openai-poll-after-ms"] = str(cfg.poll_after_ms)
        return body

    @app.post("/v1/videos/extensions", response_model=VideoObject, responses=ERRORS, openapi_extra=request_body(ExtendJSON, ExtendForm),
              summary="Extend a video (a completed one by id, or an upload)", tags=["videos"])
    async def extend_video(request: Request, response: Response, who: str = Depends(owner)) -> dict[str, object]:
        fields = await read_fields(request, ("prompt", "seconds", "video", "video[id]", "seed"))
        body = await run_in_threadpool(extend_job, fields, who)
        response.headers["openai-poll-after-ms"] = str(cfg.poll_after_ms)
        return body

    @app.get("/health", response_model=Health, summary="Liveness and worker state (no key needed)", tags=["server"])
    def health() -> dict[str, object]:
        sup = state.supervisor
        alive = sup is not None and sup.alive
        meta = state.store.get_meta("worker")
        ready = alive and meta is not None and sup is not None and sup.proc is not None and f'"pid": {sup.proc.pid},' in meta
        return {"status": "ok" if ready else "starting", "model": info.name, "worker_alive": alive, "worker_ready": ready,
                "worker_pid": sup.proc.pid if alive and sup is not None and sup.proc is not None else None,
                "worker_restarts": 0 if sup is None else sup.restarts, "queued_or_running": state.store.active_count()}

    return app


def _install_error_handlers(app: FastAPI) -> None:
    """Every error is OpenAI-style JSON; no traceback reaches a client."""

    def respond(err: ApiError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return respond(exc)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return respond(ApiError(413, "The request body is too large.", code="request_too_large"))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = str(first["loc"][-1]) if first.get("loc") else None
        return respond(ApiError(400, f"Invalid '{param}': {first['msg']}.", param=param, code="invalid_value"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 400: "invalid_request"}
        message = "Unknown URL: " + request.url.path[:128] if exc.status_code == 404 else str(exc.detail)[:200]
        return respond(ApiError(exc.status_code, message, code=codes.get(exc.status_code)))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return respond(ApiError(500, "The server had an error while processing the request.", type="server_error", code="internal_error"))


def _install_openapi(app: FastAPI) -> None:
    """``/openapi.json`` with the request-body models (JSON and multipart) as components."""

    def openapi() -> dict[str, object]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _, defs = models_json_schema([(m, "validation") for m in REQUEST_MODELS], ref_template="#/components/schemas/{model}")
        schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
        schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        schema["security"] = [{"bearer": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

