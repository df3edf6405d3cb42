"""Request bodies: JSON or multipart into one flat field map, and uploads saved safely to disk.

JSON objects one level deep are flattened the way the ``openai`` SDK flattens them in forms, so
``{"video": {"id": "video_..."}}`` and the form field ``video[id]`` read the same. Unknown fields are
refused with a 400 that lists the endpoint's fields. Uploads are copied in chunks with a byte limit,
identified by their first bytes (:func:`kinema.serve.media.sniff`), and checked (image header and
pixel count, or video header and frame size) before a job is queued.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from starlette.datastructures import UploadFile
from starlette.requests import Request

from kinema.errors import InvalidInputError
from kinema.serve.config import ServerConfig
from kinema.serve.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, MediaInfo, check_image, probe_video, sniff
from kinema.serve.schemas import ApiError

CHUNK = 1024 * 1024
DATA_URL = re.compile(r"^data:(image/(?:png|jpeg|jpg|webp));base64,(.*)$", re.DOTALL)


@dataclass
class Fields:
    """A request body: scalar ``values`` (nested keys as ``name[key]``) and uploaded ``files``."""

    values: dict[str, object] = field(default_factory=dict)
    files: dict[str, UploadFile] = field(default_factory=dict)

    def text(self, name: str, *, required: bool = False, max_chars: int | None = None) -> str | None:
        value = self.values.get(name)
        if value is None:
            if required:
                raise ApiError(400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter")
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ApiError(400, f"Invalid type for '{name}': expected a string, got {type(value).__name__}.", param=name, code="invalid_type")
        text = str(value)
        if max_chars is not None and len(text) > max_chars:
            raise ApiError(400, f"'{name}' is {len(text)} characters long; the limit is {max_chars}.", param=name, code="string_above_max_length")
        return text

    def integer(self, name: str, lo: int, hi: int) -> int | None:
        value = self.values.get(name)
        if value is None:
            return None
        try:
            number = int(str(value)) if not isinstance(value, bool) else None
        except ValueError:
            number = None
        if number is None or not lo <= number <= hi:
            raise ApiError(400, f"Invalid '{name}': {str(value)[:32]!r}; expected an integer between {lo} and {hi}.", param=name, code="invalid_value")
        return number

    def number(self, name: str, lo: float, hi: float) -> float | None:
        value = self.values.get(name)
        if value is None:
            return None
        try:
            number = float(str(value)) if not isinstance(value, bool) else None
        except ValueError:
            number = None
        if number is None or not lo < number <= hi:
            raise ApiError(400, f"Invalid '{name}': {str(value)[:32]!r}; expected a number in ({lo:g}, {hi:g}].", param=name, code="invalid_value")
        return number


async def read_fields(request: Request, allowed: tuple[str, ...]) -> Fields:
    """Parse a JSON or multipart body; refuse other content types, duplicates and unknown fields."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    out = Fields()
    if ctype == "application/json":
        try:
            data = json.loads(await request.body() or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(400, f"The body is not valid JSON ({e.msg if hasattr(e, 'msg') else 'bad encoding'}).", code="invalid_json") from e
        if not isinstance(data, dict):
            raise ApiError(400, "The JSON body must be an object.", code="invalid_json")
        for key, value in data.items():
            if isinstance(value, dict):
                out.values.update({f"{key}[{k}]": v for k, v in value.items()})
            elif value is not None:
                out.values[key] = value
    elif ctype == "multipart/form-data":
        form = await request.form(max_files=4, max_fields=32)
        for key, value in form.multi_items():
            if key in out.values or key in out.files:
                raise ApiError(400, f"Parameter '{key}' was given more than once.", param=key, code="duplicate_parameter")
            if isinstance(value, UploadFile):
                out.files[key] = value
            else:
                out.values[key] = value
    elif ctype == "application/x-www-form-urlencoded":
        form = await request.form(max_files=0, max_fields=32)
        out.values.update({k: v for k, v in form.multi_items() if isinstance(v, str)})
    else:
        raise ApiError(415, f"Unsupported content type '{ctype[:64]}'; send application/json or multipart/form-data.", code="unsupported_media_type")
    unknown = sorted(k for k in (*out.values, *out.files) if k not in allowed)
    if unknown:
        raise ApiError(400, f"Unknown parameter: '{unknown[0][:64]}'. This endpoint takes: {', '.join(allowed)}.", param=unknown[0][:64], code="unknown_parameter")
    return out


def _copy_limited(src: BinaryIO, dest: Path, limit: int, param: str) -> int:
    size = 0
    with open(dest, "wb") as out:
        while chunk := src.read(CHUNK):
            size += len(chunk)
            if size > limit:
                out.close()
                dest.unlink(missing_ok=True)
                raise ApiError(413, f"The upload '{param}' is larger than {limit // (1024 * 1024)} MiB.", param=param, code="file_too_large")
            out.write(chunk)
    if size == 0:
        dest.unlink(missing_ok=True)
        raise ApiError(400, f"The upload '{param}' is empty.", param=param, code="invalid_file")
    return size


def _check(path: Path, cfg: ServerConfig, kind: str, param: str) -> MediaInfo:
    with open(path, "rb") as f:
        suffix = sniff(f.read(16))
    allowed = IMAGE_SUFFIXES if kind == "image" else VIDEO_SUFFIXES
    names = "PNG, JPEG or WebP" if kind == "image" else "MP4, MOV, WebM or GIF"
    if suffix not in allowed:
        path.unlink(missing_ok=True)
        raise ApiError(400, f"The upload '{param}' is not a {names} file.", param=param, code="invalid_file_type")
    final = path.with_name(f"input{suffix}")
    path.rename(final)
    try:
        return check_image(final, cfg.max_image_pixels) if kind == "image" else probe_video(final, cfg.max_video_side)
    except InvalidInputError as e:
        final.unlink(missing_ok=True)
        raise ApiError(400, f"Invalid '{param}': {e}.", param=param, code="invalid_file") from e


def save_upload(upload: UploadFile, dest_dir: Path, cfg: ServerConfig, kind: str, param: str) -> tuple[Path, MediaInfo]:
    """Copy an uploaded ``image`` or ``video`` to ``dest_dir/input.{ext}`` and check it."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir / "upload.part"
    upload.file.seek(0)
    _copy_limited(upload.file, tmp, cfg.max_upload_bytes, param)
    info = _check(tmp, cfg, kind, param)
    return dest_dir / f"input{info.suffix}", info


def save_data_url(url: str, dest_dir: Path, cfg: ServerConfig, param: str) -> tuple[Path, MediaInfo]:
    """Decode a base64 ``data:image/...`` URL to ``dest_dir/input.{ext}``; remote URLs are refused."""
    match = DATA_URL.match(url.strip())
    if match is None:
        raise ApiError(400, f"'{param}' must be a base64 data URL (data:image/png;base64,...); the server does not fetch remote URLs.", param=param, code="invalid_image_url")
    if len(match.group(2)) > cfg.max_upload_bytes * 4 // 3 + 4:
        raise ApiError(413, f"The image in '{param}' is larger than {cfg.max_upload_bytes // (1024 * 1024)} MiB.", param=param, code="file_too_large")
    try:
        data = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ApiError(400, f"'{param}' is not valid base64.", param=param, code="invalid_image_url") from e
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir / "upload.part"
    tmp.write_bytes(data)
    info = _check(tmp, cfg, "image", param)
    return dest_dir / f"input{info.suffix}", info


def link_file(src: Path, dest: Path) -> Path:
    """Hard-link ``src`` to ``dest`` (a copy across file systems), so a job keeps its input if the source is deleted."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        dest.hardlink_to(src)
    except OSError:
        shutil.copyfile(src, dest)
    return dest
