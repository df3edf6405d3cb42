"""The server makes the refined sizes of a model with a refiner (base size sampled, then refined),
through the official ``openai`` SDK against a real server on loopback."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from serve_util import LiveServer

from kinema.errors import InvalidInputError
from kinema.serve.sizes import ModelInfo, resolve_size
from kinema.video import read_video

pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")


@pytest.fixture(scope="module")
def refined_model_dir(tiny_refined_model_dir: Path) -> Path:
    """The tiny model (32x32, 48x32, 32x48) with a tiny random 2x refiner in ``refiner/``."""
    return tiny_refined_model_dir


def test_refined_sizes_resolve_to_their_base_size(refined_model_dir: Path, tiny_model_dir: Path) -> None:
    info = ModelInfo.from_folder(refined_model_dir)
    assert info.refine_factor == 2 and info.refined_sizes == ((64, 64), (96, 64), (64, 96))
    assert resolve_size("96x64", info) == (96, 64) and info.base_of((96, 64)) == ((48, 32), True)
    assert info.base_of((48, 32)) == ((48, 32), False)
    assert resolve_size("1280x720", info) == (48, 32)  # OpenAI sizes keep mapping to the (fast) model sizes
    plain = ModelInfo.from_folder(tiny_model_dir)
    assert plain.refine_factor == 0 and plain.refined_sizes == ()
    with pytest.raises(InvalidInputError, match="refined sizes"):
        resolve_size("128x128", info)
    with pytest.raises(InvalidInputError, match=r"32x32, 48x32, 32x48\) or an OpenAI size"):
        resolve_size("64x64", plain)


def test_create_and_remix_at_a_refined_size(refined_model_dir: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    srv = LiveServer(refined_model_dir, tmp_path_factory.mktemp("serve-refine") / "data", "--poll-after-ms", "50").start()
    try:
        client = srv.client()
        video = client.videos.create_and_poll(prompt="a red ball moves left", seconds="4", size="96x64", poll_interval_ms=50)
        assert video.status == "completed" and video.size == "96x64", video
        path = tmp_path / "refined.mp4"
        path.write_bytes(client.videos.download_content(video.id).read())
        clip = read_video(path)
        assert (clip.width, clip.height, clip.num_frames) == (96, 64, 17)
        remix = client.videos.remix(video.id, prompt="a blue ball moves left")
        assert remix.size == "96x64"
        assert client.videos.poll(remix.id, poll_interval_ms=50).status == "completed"
        with pytest.raises(openai.BadRequestError, match="refined sizes"):
            client.videos.create(prompt="a red ball", size="100x100")
    finally:
        srv.stop()
    assert "Traceback" not in srv.log(), srv.log()
