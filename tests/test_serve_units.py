"""Server parts without a server: the size/duration rule, the job store's recovery and pages, upload sniffing, previews."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kinema.errors import InvalidInputError
from kinema.serve.media import sniff, spritesheet_jpeg, thumbnail_webp
from kinema.serve.sizes import ModelInfo, format_seconds, resolve_model, resolve_seconds, resolve_size
from kinema.serve.store import Job, JobParams, Store, is_video_id, new_video_id

SQUARE = ModelInfo("demo", ((64, 64),), (64, 64), 16.0, 33, 4, 2.0, 20)
THREE = ModelInfo("tiny", ((32, 32), (48, 32), (32, 48)), (32, 32), 16.0, 17, 4, 0.5, 4)


def test_size_rule() -> None:
    assert resolve_size("720x1280", THREE) == (32, 48) and resolve_size("1792x1024", THREE) == (48, 32)
    assert all(resolve_size(s, SQUARE) == (64, 64) for s in ("720x1280", "1280x720", "1024x1792", "1792x1024"))
    assert resolve_size("48x32", THREE) == (48, 32) and resolve_size(None, THREE) == (32, 32)
    with pytest.raises(InvalidInputError, match="64x64.*720x1280"):
        resolve_size("640x480", SQUARE)


def test_seconds_rule() -> None:
    assert [resolve_seconds(s, SQUARE) for s in ("4", "8", "12")] == [33, 33, 33]  # capped at 2 s
    assert resolve_seconds("1", SQUARE) == 17 and resolve_seconds("0.3", SQUARE) == 5 and resolve_seconds(None, SQUARE) == 33
    assert resolve_seconds("0.01", SQUARE) == 5  # at least one latent step
    for bad in ("3", "16", "abc", "nan", "-1", "0"):
        with pytest.raises(InvalidInputError, match="4, 8, 12"):
            resolve_seconds(bad, SQUARE)
    assert resolve_seconds("20", SQUARE, openai_values=("4", "8", "12", "16", "20")) == 33
    assert format_seconds(SQUARE.seconds_of(33)) == "2" and format_seconds(0.75) == "0.75"
    assert resolve_model(None, SQUARE) == ("demo", False) and resolve_model("sora-2-pro", SQUARE) == ("sora-2-pro", True)
    with pytest.raises(InvalidInputError, match="sora-2, sora-2-pro"):
        resolve_model("gpt-4o", SQUARE)


def _job(vid: str, owner: str = "o") -> Job:
    return Job(id=vid, owner=owner, kind="create", status="queued", model="m", prompt="p", size="64x64", seconds="2",
               params=JobParams("t2v", 64, 64, 33, 16.0, 1), created_at=int(time.time()))


def test_store_pages_claims_and_recovers(tmp_path: Path) -> None:
    store = Store(tmp_path / "kinema.db")
    ids = [new_video_id(1_700_000_000 + i) for i in range(5)]
    assert all(is_video_id(i) for i in ids) and not is_video_id("video_../../x") and not is_video_id(ids[0] + "0")
    for vid in ids:
        store.insert(_job(vid))
    store.insert(_job(new_video_id(), owner="someone else"))
    page, more = store.page("o", after=None, limit=2, order="asc")
    assert [j.id for j in page] == ids[:2] and more
    page, more = store.page("o", after=ids[1], limit=10, order="asc")
    assert [j.id for j in page] == ids[2:] and not more
    assert [j.id for j in store.page("o", after=ids[3], limit=10, order="desc")[0]] == ids[2::-1]
    assert not store.insert_if_room(_job(new_video_id()), max_active=6)

    first = store.claim_next()
    assert first is not None and first.id == ids[0] and first.status == "in_progress" and first.attempts == 1
    assert store.set_progress(first.id, 40) and store.get(first.id).progress == 40
    assert store.recover(max_attempts=2, retention_s=60) == ([ids[0]], [])  # a dead worker's job: queued again
    again = store.claim_next()
    assert again.id == ids[0] and again.attempts == 2
    requeued, failed = Store(tmp_path / "kinema.db").recover(max_attempts=2, retention_s=60)  # a second process sees the same
    assert (requeued, failed) == ([], [ids[0]])
    gone = store.get(ids[0])
    assert gone.status == "failed" and gone.error_code == "interrupted" and gone.expires_at is not None
    assert store.delete(ids[1], "someone else") is None and store.delete(ids[1], "o").id == ids[1]
    assert not store.set_progress(ids[1], 10)  # deleted: the worker learns to stop


def test_sniff_and_previews() -> None:
    frames = np.random.default_rng(0).integers(0, 255, (17, 32, 48, 3), dtype=np.uint8)
    thumb = Image.open(io.BytesIO(thumbnail_webp(frames)))
    sheet = Image.open(io.BytesIO(spritesheet_jpeg(frames)))
    assert (thumb.format, thumb.size) == ("WEBP", (48, 32)) and (sheet.format, sheet.size) == ("JPEG", (240, 64))
    assert sniff(thumbnail_webp(frames)[:16]) == ".webp" and sniff(spritesheet_jpeg(frames)[:16]) == ".jpg"
    assert sniff(b"\x00\x00\x00\x20ftypisom") == ".mp4" and sniff(b"\x1a\x45\xdf\xa3") == ".webm" and sniff(b"GIF89a") == ".gif"
    assert sniff(b"<html>hello") is None
