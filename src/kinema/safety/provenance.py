"""Provenance of every output: watermark, save, C2PA manifest, sidecar JSON; and reproduction.

``finalize_output`` is the one call every path that makes a video uses (CLI, Python API, server,
UI)::

    video = pipe.generate(prompt, ...)
    path = finalize_output(video, "out/ball.mp4", params.to_dict(), model_id=pipe.name,
                           generation_id=new_generation_id())

It watermarks every frame (payload: model tag + generation tag), writes the file with the
generation record in the container metadata (MP4 ``comment``; PNG ``kinema`` text chunk), adds a
signed C2PA manifest (MP4, PNG, GIF) and writes ``<file>.json`` next to it. ``load_record`` reads
the record back (sidecar first, else container metadata) and ``reproduce`` regenerates the same
frames from it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from kinema import __version__
from kinema.errors import InvalidInputError
from kinema.safety.c2pa import MIME_TYPES, Credentials, build_manifest, sign_file
from kinema.safety.watermark import Payload, WatermarkConfig, embed_watermark
from kinema.video import WRITE_SUFFIXES, Video, read_video

if TYPE_CHECKING:
    from kinema.pipeline import KinemaPipeline

log = logging.getLogger(__name__)

RECORD_FORMAT = "kinema.provenance.v1"
METADATA_KEY = "comment"  # MP4 container tag that carries the record (PyAV/FFmpeg write it)
PNG_TEXT_KEY = "kinema"
REPRODUCE_KEYS = ("prompt", "negative_prompt", "width", "height", "frames", "fps", "steps", "guidance", "sampler", "seed")


def new_generation_id() -> str:
    """A fresh generation id: 32 hex digits (uuid4)."""
    return uuid.uuid4().hex


def prompt_sha256(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def sidecar_path(path: str | Path) -> Path:
    """``out/ball.mp4`` -> ``out/ball.mp4.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def make_record(params: dict[str, object], *, model_id: str, generation_id: str, payload: Payload) -> dict[str, object]:
    """The generation record stored in the sidecar and the container metadata."""
    prompt = str(params.get("prompt", "")) if "prompt" in params else ""
    return {
        "format": RECORD_FORMAT,
        "generation_id": generation_id,
        "model_id": model_id,
        "kinema_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "ai_generated": True,
        "prompt_sha256": prompt_sha256(prompt),
        "params": params,
        "watermark": {"payload": payload.hex(), "model_tag": f"{payload.model_tag:04x}", "generation_tag": f"{payload.generation_tag:06x}"},
    }


WATERMARKED_KEY = "kinema:watermarked"  # Video.metadata: generation id whose watermark the frames carry


def finalize_output(
    video: Video,
    path: str | Path,
    params: dict[str, object],
    *,
    model_id: str,
    generation_id: str,
    credentials: Credentials | None = None,
    watermark: WatermarkConfig | None = None,
    crf: int = 18,
) -> Path:
    """Watermark ``video``, save it to ``path``, add C2PA credentials, write the sidecar; returns the path.

    ``params`` are the generation parameters (the pipeline's ``kinema:params`` record); they must be JSON
    serialisable. WebM has no C2PA support in the SDK: it gets the watermark, metadata and sidecar.
    A multi-frame PNG request writes ``name_0000.png``...: each frame file is signed.
    """
    path = Path(path)
    if path.suffix.lower() not in WRITE_SUFFIXES:
        raise InvalidInputError(f"cannot write '{path.name}': unknown output type '{path.suffix}'; use one of {', '.join(WRITE_SUFFIXES)}")
    try:
        json.dumps(params)
    except TypeError as e:
        raise InvalidInputError(f"generation params must be JSON serialisable: {e}") from e
    payload = Payload.from_ids(model_id, generation_id)
    record = make_record(params, model_id=model_id, generation_id=generation_id, payload=payload)
    record_json = json.dumps(record, sort_keys=True)
    already = video.metadata.get(WATERMARKED_KEY) == generation_id  # the pipeline marked it already
    marked = Video(
        frames=video.frames if already else embed_watermark(video.frames, payload, watermark),
        fps=video.fps,
        metadata={**video.metadata, METADATA_KEY: record_json, "title": f"Kinema {generation_id}"},
    )
    written = marked.save(path, crf=crf)
    files = [written]
    if path.suffix.lower() == ".png":
        files = [path] if marked.num_frames == 1 else [path.with_name(f"{path.stem}_{i:04d}.png") for i in range(marked.num_frames)]
        for f in files:
            _add_png_text(f, record_json)
    if path.suffix.lower() in MIME_TYPES:
        generation = {k: v for k, v in record.items() if k not in ("params", "format")}
        generation["params"] = {k: v for k, v in params.items() if k not in ("prompt", "negative_prompt")}
        manifest = build_manifest(title=path.name, model_id=model_id, generation=generation)
        for f in files:
            sign_file(f, manifest, credentials)
    else:
        log.info("'%s': C2PA is not available for %s; watermark, metadata and sidecar only", path, path.suffix)
    side = sidecar_path(path)
    record["files"] = {f.name: _sha256_file(f) for f in files}
    _write_text(side, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return written


def _add_png_text(path: Path, text: str) -> None:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    with Image.open(path) as img:
        img.load()
        info = PngInfo()
        info.add_text(PNG_TEXT_KEY, text)
        tmp = path.with_name(f".{path.name}.tmp")
        img.save(tmp, format="PNG", pnginfo=info)
    os.replace(tmp, path)


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def load_record(path: str | Path) -> dict[str, object] | None:
    """The generation record of a Kinema output: its sidecar JSON, else its container metadata."""
    path = Path(path)
    side = path if path.suffix == ".json" else sidecar_path(path)
    if side.is_file():
        record = json.loads(side.read_text())
        if record.get("format") == RECORD_FORMAT:
            return record
    if path.suffix.lower() == ".png" and path.is_file():
        from PIL import Image

        with Image.open(path) as img:
            text = img.info.get(PNG_TEXT_KEY)
        return _parse(text)
    if path.is_file() and path.suffix.lower() in (".mp4", ".webm", ".gif", ".mov"):
        try:
            meta = read_video(path, max_frames=1).metadata
        except Exception:  # an unreadable file has no record
            return None
        return _parse(meta.get(METADATA_KEY))
    return None


def _parse(text: str | None) -> dict[str, object] | None:
    if not text:
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and record.get("format") == RECORD_FORMAT else None


def generation_kwargs(record: dict[str, object]) -> dict[str, object]:
    """Keyword arguments of ``KinemaPipeline.generate`` that reproduce ``record``."""
    params = record.get("params")
    if not isinstance(params, dict):
        raise InvalidInputError("provenance record has no 'params'; cannot reproduce it")
    missing = [k for k in REPRODUCE_KEYS if k not in params]
    if missing:
        raise InvalidInputError(f"provenance record lacks {missing}; needs {list(REPRODUCE_KEYS)}")
    return {k: params[k] for k in REPRODUCE_KEYS}


def reproduce(record: dict[str, object], pipeline: KinemaPipeline, *, watermark: WatermarkConfig | None = None) -> Video:
    """Regenerate the (watermarked) frames of ``record`` with ``pipeline`` (same weights, same machine)."""
    model = record.get("model_id")
    if model != pipeline.name:
        log.warning("record was made by model '%s' but the pipeline is '%s'; frames may differ", model, pipeline.name)
    video = pipeline.generate(**generation_kwargs(record))  # type: ignore[arg-type]
    payload = Payload.from_ids(str(record["model_id"]), str(record["generation_id"]))
    return Video(frames=embed_watermark(video.frames, payload, watermark), fps=video.fps)
