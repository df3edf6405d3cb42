"""The server against the official ``openai`` SDK on loopback: create, poll, list, download, remix, edits, extensions, delete, errors."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import httpx2
import numpy as np
import openai
import pytest
from openai import omit
from openai.types import Video as SDKVideo
from PIL import Image
from serve_util import API_KEY, LiveServer

from kinema.safety import finalize_output
from kinema.video import Video, read_video

pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")

OTHER_KEY = "other-key-9876543210"


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    srv = LiveServer(tiny_model_dir, tmp_path_factory.mktemp("serve-api") / "data", "--api-key", OTHER_KEY, "--poll-after-ms", "50",
                     "--max-upload-mb", "1").start()
    yield srv
    srv.stop()
    assert "Traceback" not in srv.log(), srv.log()


@pytest.fixture(scope="module")
def client(server: LiveServer) -> openai.OpenAI:
    return server.client()


@pytest.fixture(scope="module")
def done(client: openai.OpenAI) -> SDKVideo:
    """One completed text-to-video job (landscape OpenAI size -> the model's 48x32)."""
    video = client.videos.create_and_poll(prompt="a red ball moves left", seconds="4", size="1280x720", poll_interval_ms=50)
    assert video.status == "completed", video
    return video


def png_bytes(width: int, height: int, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def decode_mp4(data: bytes, tmp_path: Path) -> Video:
    path = tmp_path / "downloaded.mp4"
    path.write_bytes(data)
    return read_video(path)


def test_create_poll_and_every_variant(client: openai.OpenAI, done: SDKVideo, tmp_path: Path) -> None:
    raw = client.videos.with_raw_response.create(prompt="a blue square", seconds="8", size="720x1280")
    assert raw.headers["openai-poll-after-ms"] == "50"
    created = raw.parse()
    assert created.status in ("queued", "in_progress") and created.progress < 100 and created.object == "video"
    assert (created.size, created.seconds, created.model) == ("32x48", "1", "kinema-tiny-test")  # portrait size; 8 s capped at 1 s
    final = client.videos.poll(created.id, poll_interval_ms=50)
    assert final.status == "completed" and final.progress == 100 and final.error is None
    assert final.completed_at >= final.created_at and final.expires_at > final.completed_at
    assert set(SDKVideo.model_fields) <= set(final.model_dump())

    assert (done.size, done.seconds, done.prompt) == ("48x32", "1", "a red ball moves left")
    clip = decode_mp4(client.videos.download_content(done.id).read(), tmp_path)
    assert (clip.num_frames, clip.width, clip.height) == (17, 48, 32)  # 1 s at 16 fps on the 1 + 4k grid
    assert clip.frames.std() > 0
    thumb = Image.open(io.BytesIO(client.videos.download_content(done.id, variant="thumbnail").read()))
    assert (thumb.format, thumb.size) == ("WEBP", (48, 32))
    sheet = Image.open(io.BytesIO(client.videos.download_content(done.id, variant="spritesheet").read()))
    assert (sheet.format, sheet.size) == ("JPEG", (5 * 48, 2 * 32))  # 10 frames, 5 a row


def test_input_reference_is_the_first_frame(client: openai.OpenAI, server: LiveServer, tiny_pipeline, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KINEMA_C2PA_DIR", str(tmp_path / "c2pa"))  # signing keys for the in-process reference
    red = png_bytes(60, 40, (230, 20, 20))
    video = client.videos.create_and_poll(prompt="a ball", input_reference=("red.png", red, "image/png"), seconds="0.5",
                                          extra_body={"seed": 7}, poll_interval_ms=50)
    assert video.status == "completed" and video.size == "48x32"  # size from the image's aspect
    clip = decode_mp4(client.videos.download_content(video.id).read(), tmp_path)
    assert clip.num_frames == 9
    image = np.asarray(Image.open(io.BytesIO(red)).convert("RGB"))
    expected = tiny_pipeline.generate("a ball", image=image, frames=9, width=48, height=32, seed=7)  # the same job in-process
    expected = read_video(finalize_output(expected, tmp_path / "expected.mp4", {}, model_id="kinema-tiny-test", generation_id=video.id))
    # The same frames, watermark and H.264: usually bit-identical. Occasionally (2 of 15 runs of this test
    # in session 15) float reductions in the server process round differently, the random tiny model amplifies
    # that over its steps and x264 picks other modes: 2.6 levels was seen, while another seed gives ~32.
    diff = np.abs(clip.frames.astype(float) - expected.frames.astype(float))  # (f, h, w, 3)
    assert diff[0].mean() < 1.0, diff[0].mean()  # the reference image itself
    assert diff.mean() < 6.0, diff.mean(axis=(1, 2, 3))
    other = tiny_pipeline.generate("a ball", image=np.full_like(image, 255), frames=9, width=48, height=32, seed=7)
    other = read_video(other.save(tmp_path / "other.mp4"))
    assert np.abs(clip.frames[0].astype(float) - other.frames[0].astype(float)).mean() > 2.0  # the image matters
    # The same as JSON with a base64 data URL (curl-style clients)
    url = "data:image/png;base64," + base64.b64encode(red).decode()
    r = httpx2.post(f"{server.base_url}/videos", json={"prompt": "a ball", "input_reference": {"image_url": url}, "size": "32x32"},
                    headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 200, r.text
    assert client.videos.poll(r.json()["id"], poll_interval_ms=50).status == "completed"


def test_list_pagination(server: LiveServer, tiny_model_dir: Path) -> None:
    other = server.client(api_key=OTHER_KEY)  # a second key sees only its own videos
    ids = [other.videos.create(prompt=f"a green square {i}", seconds="0.25").id for i in range(5)]
    assert ids == sorted(ids)
    first = other.videos.list(limit=2, order="asc")
    assert [v.id for v in first.data] == ids[:2] and first.has_more is True and first.last_id == ids[1]
    r = httpx2.get(f"{server.base_url}/videos", params={"limit": 2, "order": "asc", "after": ids[1]}, headers={"Authorization": f"Bearer {OTHER_KEY}"})
    body = r.json()
    assert [v["id"] for v in body["data"]] == ids[2:4] and (body["first_id"], body["last_id"], body["has_more"]) == (ids[2], ids[3], True)
    assert [v.id for v in other.videos.list(limit=2, order="asc")] == ids  # the SDK follows last_id / has_more
    assert [v.id for v in other.videos.list(limit=3)] == ids[::-1]  # default order: newest first
    last = other.videos.list(limit=2, order="asc", after=ids[3])
    assert [v.id for v in last.data] == ids[4:] and last.has_more is False
    mine = [v.id for v in server.client().videos.list(limit=100)]
    assert not set(ids) & set(mine)
    with pytest.raises(openai.NotFoundError):
        server.client().videos.retrieve(ids[0])  # another key's video does not exist for this key


def test_remix_edits_extensions(client: openai.OpenAI, done: SDKVideo, tmp_path: Path) -> None:
    remix = client.videos.poll(client.videos.remix(done.id, prompt="a blue ball moves left").id, poll_interval_ms=50)
    assert remix.status == "completed" and remix.remixed_from_video_id == done.id and remix.prompt == "a blue ball moves left"
    assert (remix.size, remix.seconds) == (done.size, done.seconds)
    source = decode_mp4(client.videos.download_content(done.id).read(), tmp_path)
    remixed = decode_mp4(client.videos.download_content(remix.id).read(), tmp_path)
    assert remixed.frames.shape == source.frames.shape and not np.array_equal(remixed.frames, source.frames)

    mp4 = client.videos.download_content(done.id).read()
    edit_upload = client.videos.poll(client.videos.edit(prompt="make it green", video=("clip.mp4", mp4, "video/mp4")).id, poll_interval_ms=50)
    assert edit_upload.status == "completed" and edit_upload.size == "48x32", edit_upload
    # A completed video by id: multipart field video[id] (the SDK's own dict form does not pass its file check, so extra_body)
    edit_id = client.videos.poll(client.videos.edit(prompt="make it green", video=omit, extra_body={"video": {"id": done.id}}).id, poll_interval_ms=50)
    assert edit_id.status == "completed" and edit_id.seconds == "1"

    ext = client.videos.poll(client.videos.extend(prompt="it keeps going", seconds="8", video=omit, extra_body={"video": {"id": done.id}}).id,
                             poll_interval_ms=50)
    assert ext.status == "completed" and ext.seconds == "2", ext  # 1 s + 8 s capped at the model's 1 s: the stitched total
    longer = decode_mp4(client.videos.download_content(ext.id).read(), tmp_path)
    assert longer.num_frames == 33
    ext_upload = client.videos.poll(client.videos.extend(prompt="more", seconds="0.5", video=("clip.mp4", mp4, "video/mp4")).id, poll_interval_ms=50)
    assert ext_upload.status == "completed" and ext_upload.seconds == "1.5"


def test_delete(client: openai.OpenAI, server: LiveServer) -> None:
    video = client.videos.create_and_poll(prompt="short lived", seconds="0.25", poll_interval_ms=50)
    deleted = client.videos.delete(video.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (video.id, True, "video.deleted")
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)
    with pytest.raises(openai.NotFoundError):
        client.videos.download_content(video.id)
    with pytest.raises(openai.NotFoundError):
        client.videos.delete(video.id)
    assert video.id not in [v.id for v in client.videos.list(limit=100)]
    assert not (server.data_dir / "videos" / video.id).exists()


def test_errors_are_sdk_exceptions(client: openai.OpenAI, server: LiveServer, done: SDKVideo) -> None:
    with pytest.raises(openai.AuthenticationError) as e:
        server.client(api_key="wrong-key-123456").videos.list()
    assert e.value.code == "invalid_api_key"
    cases = [
        (lambda: client.videos.create(prompt="x", size="100x100"), "size", "32x32, 48x32, 32x48"),
        (lambda: client.videos.create(prompt="x", seconds="30"), "seconds", "4, 8, 12"),
        (lambda: client.videos.create(prompt="x", model="dall-e-3"), "model", "sora-2"),
        (lambda: client.videos.create(prompt="x" * 2001), "prompt", "2000"),
        (lambda: client.videos.create(prompt="x", extra_body={"fps": "30"}), "fps", "This endpoint takes"),
        (lambda: client.videos.create(prompt="x", input_reference=("a.txt", b"hello there", "text/plain")), "input_reference", "PNG, JPEG or WebP"),
        (lambda: client.videos.create(prompt="x", input_reference=("a.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png")), "input_reference", "could not be read"),
        (lambda: client.videos.extend(prompt="x", seconds="99", video=omit, extra_body={"video": {"id": done.id}}), "seconds", "16, 20"),
        (lambda: client.videos.edit(prompt="x", video=omit), "video", "Missing required parameter"),
        (lambda: client.videos.retrieve("video_..%2F..%2Fkinema.db"), "video_id", "32 hex digits"),
        (lambda: client.videos.download_content(done.id, variant="poster"), "variant", "video, thumbnail, spritesheet"),  # type: ignore[arg-type]
        (lambda: client.videos.list(limit=500), "limit", "between 1 and 100"),
    ]
    for call, param, text in cases:
        with pytest.raises(openai.BadRequestError) as e:
            call()
        assert e.value.param == param and text in e.value.message, (param, e.value.body)
        assert set(e.value.body) == {"message", "type", "param", "code"} and e.value.type == "invalid_request_error"
    with pytest.raises(openai.APIStatusError) as e:
        client.videos.create(prompt="x", input_reference=("big.png", b"\x89PNG\r\n\x1a\n" + b"\0" * (1024 * 1024 + 10), "image/png"))
    assert e.value.status_code == 413 and e.value.code in ("file_too_large", "request_too_large")
    with pytest.raises(openai.NotFoundError) as e:
        client.videos.retrieve("video_" + "0" * 32)
    assert e.value.code == "video_not_found"

    auth = {"Authorization": f"Bearer {API_KEY}"}
    bad_json = httpx2.post(f"{server.base_url}/videos", content=b"{not json", headers={**auth, "Content-Type": "application/json"})
    missing = httpx2.get(f"{server.base_url}/videos")
    traversal = httpx2.get(f"{server.base_url}/videos/..%2F..%2Fkinema.db/content", headers=auth)
    remote = httpx2.post(f"{server.base_url}/videos", json={"prompt": "x", "input_reference": {"image_url": "http://169.254.169.254/x.png"}}, headers=auth)
    dotted = httpx2.get(f"{server.base_url}/videos/video_..%2F..%2F..%2Fkinema.db/content", headers=auth)
    for r, status in ((bad_json, 400), (missing, 401), (traversal, 404), (dotted, 404), (remote, 400)):
        assert r.status_code == status, (r.status_code, r.text)
        assert set(r.json()["error"]) == {"message", "type", "param", "code"} and "Traceback" not in r.text


def test_moderation_refusals_are_bad_requests(client: openai.OpenAI, done: SDKVideo, server: LiveServer) -> None:
    bad = "a man beheaded with blood everywhere"
    calls = [
        lambda: client.videos.create(prompt=bad),
        lambda: client.videos.remix(done.id, prompt=bad),
        lambda: client.videos.edit(prompt=bad, video=omit, extra_body={"video": {"id": done.id}}),
        lambda: client.videos.extend(prompt=bad, seconds="4", video=omit, extra_body={"video": {"id": done.id}}),
    ]
    for call in calls:
        with pytest.raises(openai.BadRequestError) as e:
            call()
        assert (e.value.code, e.value.param) == ("moderation_blocked", "prompt") and "violence" in e.value.message
    sidecar = server.data_dir / "videos" / done.id / "video.mp4.json"  # provenance record next to the watermarked, signed MP4
    assert sidecar.is_file() and done.id in sidecar.read_text()


def test_openapi_schema(server: LiveServer) -> None:
    schema = httpx2.get(f"http://127.0.0.1:{server.port}/openapi.json").json()
    for path in ("/v1/videos", "/v1/videos/{video_id}", "/v1/videos/{video_id}/content", "/v1/videos/{video_id}/remix",
                 "/v1/videos/edits", "/v1/videos/extensions"):
        assert path in schema["paths"], path
    create = schema["paths"]["/v1/videos"]["post"]["requestBody"]["content"]
    assert set(create) == {"application/json", "multipart/form-data"}
    assert {"CreateVideoJSON", "CreateVideoForm", "VideoObject", "ErrorResponse"} <= set(schema["components"]["schemas"])
    assert set(SDKVideo.model_fields) <= set(schema["components"]["schemas"]["VideoObject"]["properties"])


def test_request_latency(client: openai.OpenAI, done: SDKVideo) -> None:
    """Retrieve stays fast (the API process never generates); printed with -s."""
    t0 = time.perf_counter()
    for _ in range(20):
        client.videos.retrieve(done.id)
    per = (time.perf_counter() - t0) / 20
    print(f"\nretrieve: {per * 1000:.1f} ms per request")
    assert per < 0.5
