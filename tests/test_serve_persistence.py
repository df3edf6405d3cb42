"""Jobs and files survive restarts (graceful, and ``kill -9`` of the server mid-generation); the queue limit answers 429."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import openai
import pytest
from serve_util import LiveServer, pid_alive, wait_for

pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")

SLOW = ("--steps", "300", "--poll-after-ms", "50", "--max-queue", "2")  # ~1-3 s per job on one thread: long enough to interrupt


def attempts(data_dir: Path, video_id: str) -> int:
    with sqlite3.connect(data_dir / "kinema.db") as db:
        return int(db.execute("SELECT attempts FROM videos WHERE id = ?", (video_id,)).fetchone()[0])


def test_kill9_mid_generation_loses_nothing(tiny_model_dir: Path, tmp_path: Path) -> None:
    srv = LiveServer(tiny_model_dir, tmp_path / "data", *SLOW).start()
    try:
        client = srv.client()
        finished = client.videos.create_and_poll(prompt="a red ball moves left", seconds="0.25", poll_interval_ms=50)
        assert finished.status == "completed"
        mp4 = client.videos.download_content(finished.id).read()

        t0 = time.perf_counter()
        running = client.videos.create(prompt="a blue square falls", seconds="1")
        waiting = client.videos.create(prompt="a green triangle", seconds="0.5")
        with pytest.raises(openai.RateLimitError) as e:  # two queued or running is the limit here
            client.videos.create(prompt="one too many")
        assert e.value.code == "queue_full" and int(e.value.response.headers["retry-after"]) >= 1

        raw = wait_for(lambda: (r := client.videos.with_raw_response.retrieve(running.id)).parse().progress > 0 and r, 60, 0.02)
        first_progress = time.perf_counter() - t0
        seen = raw.parse()
        assert seen.status == "in_progress" and 0 < seen.progress < 100 and raw.headers["openai-poll-after-ms"] == "50"
        print(f"\ntime to first progress: {first_progress:.2f}s (progress {seen.progress})")

        worker = srv.kill9()  # kill -9 the API process mid-generation
        assert worker is not None
        wait_for(lambda: not pid_alive(worker), 10)  # the worker dies with it (PR_SET_PDEATHSIG)

        srv.start()  # same data folder, new process
        client = srv.client()
        again = client.videos.retrieve(finished.id)
        assert again.status == "completed" and client.videos.download_content(finished.id).read() == mp4
        rerun = client.videos.poll(running.id, poll_interval_ms=50)
        assert rerun.status == "completed" and rerun.progress == 100 and rerun.error is None, rerun
        assert attempts(srv.data_dir, running.id) == 2  # interrupted once, re-run once
        later = client.videos.poll(waiting.id, poll_interval_ms=50)
        assert later.status == "completed" and attempts(srv.data_dir, waiting.id) == 1
        assert {v.id for v in client.videos.list(limit=10)} == {finished.id, running.id, waiting.id}
        assert len(client.videos.download_content(running.id).read()) > 1000

        calm = client.videos.create(prompt="a blue square slides", seconds="1")
        wait_for(lambda: client.videos.retrieve(calm.id).progress > 0, 60, 0.02)
        srv.stop()  # graceful (SIGTERM): the running job goes back to the queue, the attempt does not count
        assert attempts(srv.data_dir, calm.id) == 0
        client = srv.start().client()
        assert client.videos.poll(calm.id, poll_interval_ms=50).status == "completed" and attempts(srv.data_dir, calm.id) == 1
    finally:
        srv.stop()
    assert "Traceback" not in srv.log(), srv.log()
