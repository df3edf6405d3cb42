"""Interrupted jobs: failed with a reason after two crashes; deleting a running job stops it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import openai
import pytest
from serve_util import LiveServer, pid_alive, wait_for

pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")

SLOW = ("--steps", "300", "--poll-after-ms", "50")


def attempts(data_dir: Path, video_id: str) -> int:
    with sqlite3.connect(data_dir / "kinema.db") as db:
        return int(db.execute("SELECT attempts FROM videos WHERE id = ?", (video_id,)).fetchone()[0])


def running(client: openai.OpenAI, video_id: str) -> None:
    wait_for(lambda: client.videos.retrieve(video_id).progress > 0, 60, 0.02)


def test_interrupted_twice_fails_with_reason_and_delete_stops_a_running_job(tiny_model_dir: Path, tmp_path: Path) -> None:
    srv = LiveServer(tiny_model_dir, tmp_path / "data", *SLOW).start()
    try:
        client = srv.client()
        doomed = client.videos.create(prompt="a red ball bounces", seconds="1")
        for _ in range(2):  # two kill -9 while it runs
            running(client, doomed.id)
            worker = srv.kill9()
            wait_for(lambda: not pid_alive(worker), 10)
            client = srv.start().client()
        failed = client.videos.retrieve(doomed.id)
        assert failed.status == "failed" and failed.error is not None and failed.error.code == "interrupted", failed
        assert "interrupted 2 times" in failed.error.message and attempts(srv.data_dir, doomed.id) == 2
        with pytest.raises(openai.BadRequestError) as e:
            client.videos.download_content(doomed.id)
        assert e.value.code == "video_not_ready"

        gone = client.videos.create(prompt="a yellow circle grows", seconds="1")
        running(client, gone.id)
        assert client.videos.delete(gone.id).deleted  # deleting a running job stops it
        wait_for(lambda: srv.health()["queued_or_running"] == 0, 30)
        assert not (srv.data_dir / "videos" / gone.id).exists() and not (srv.data_dir / "uploads" / gone.id).exists()
        with pytest.raises(openai.NotFoundError):
            client.videos.retrieve(gone.id)
        assert client.videos.create_and_poll(prompt="still working", seconds="0.25", poll_interval_ms=50).status == "completed"
    finally:
        srv.stop()
    assert "Traceback" not in srv.log(), srv.log()
