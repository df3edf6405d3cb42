"""The generation worker: a separate process that loads the pipeline once and runs queued jobs.

The API process never generates; it queues jobs in SQLite and starts this process through
:class:`WorkerSupervisor`, which restarts it if it dies. The worker:

1. takes ``data-dir/worker.lock`` (so at most one worker uses a data folder; an orphan of a killed
   server exits first: it dies with its parent through ``PR_SET_PDEATHSIG`` on Linux, and checks
   its parent and the EOF of its stdin everywhere else);
2. recovers jobs a dead worker left ``in_progress`` (:meth:`Store.recover`: queued again, or failed
   after ``max_attempts``), and removes their partial files;
3. loads the pipeline once, then claims the oldest queued job, runs it with a step callback that
   writes progress (0-95 over the sampler steps, 97 after the MP4, 100 when completed) to SQLite,
   writes the files (:mod:`kinema.serve.media`) and marks the job completed or failed.

The API wakes it with a byte on its stdin when a job is queued (otherwise it polls every second).
SIGTERM (graceful stop) puts a running job back in the queue without counting the attempt.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import logging
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

from kinema.errors import InvalidInputError, KinemaError, RefusedPromptError, VideoIOError
from kinema.serve.config import ServerConfig
from kinema.serve.media import VARIANTS, remove_job_files, write_previews
from kinema.serve.sizes import format_seconds
from kinema.serve.store import Job, Store

if TYPE_CHECKING:
    from kinema.flow.samplers import StepInfo
    from kinema.pipeline import KinemaPipeline
    from kinema.video import Video

log = logging.getLogger("kinema.serve.worker")

EXIT_PARENT_GONE = 4


class JobCancelled(Exception):
    """The job was deleted while it ran."""


class Shutdown(Exception):
    """The worker was asked to stop (SIGTERM) while a job ran."""


class ParentGone(Exception):
    """The API process died; leave the job for the next worker's recovery."""


# ------------------------------------------------------------------------------------ job running
class Progress:
    """Step callback: progress 0-95 over ``windows`` sampler passes, written when it changes."""

    def __init__(self, store: Store, job_id: str, windows: int, stop: threading.Event, parent_pid: int | None) -> None:
        self.store, self.job_id, self.windows = store, job_id, max(1, windows)
        self.stop, self.parent_pid = stop, parent_pid
        self.window, self.last, self.first_at = 0, 0, None
        self._last_step = -1

    def __call__(self, info: StepInfo) -> None:
        if info.step <= self._last_step:  # a new sampler pass (extension windows)
            self.window += 1
        self._last_step = info.step
        done = min(self.window, self.windows - 1) * info.total + info.step + 1
        self.set(min(95, int(95 * done / (self.windows * info.total))))

    def set(self, progress: int) -> None:
        if self.stop.is_set():
            raise Shutdown()
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            raise ParentGone()
        if progress > self.last:
            if not self.store.set_progress(self.job_id, progress):
                raise JobCancelled()
            self.last = progress
            if self.first_at is None:
                self.first_at = time.time()


def extension_windows(pipe: KinemaPipeline, new_frames: int) -> int:
    """How many chained windows ``run_extend`` needs for ``new_frames`` (for the progress estimate)."""
    t = pipe.temporal_factor
    max_latents = 1 + (pipe.config.max_frames - 1) // t
    m = max(1, min(2, max_latents - 2))
    per_window = max(1, (max_latents - m - 1) * t)
    return max(1, math.ceil(new_frames / per_window))


def save_video(video: Video, path: Path, job: Job, model_id: str) -> Path:
    """Watermark, write the MP4 (atomically), sign it (C2PA) and write ``video.mp4.json`` (``kinema.safety``)."""
    from kinema.safety import finalize_output

    params = json.loads(video.metadata.get("kinema:params", "{}"))
    return finalize_output(video, path, params, model_id=model_id, generation_id=job.id)


def generate(pipe: KinemaPipeline, job: Job, cfg: ServerConfig, progress: Progress) -> Video:
    """Run the pipeline for ``job`` (modes: t2v, i2v, edit, extend)."""
    from kinema.video import read_video

    p = job.params
    upload = None if p.input is None else cfg.uploads_dir / job.id / p.input
    common = dict(width=p.width, height=p.height, fps=p.fps, seed=p.seed, steps=p.steps, callback=progress)
    if p.mode == "t2v":
        return pipe.generate(job.prompt, frames=p.frames, refine=p.refine, **common)  # type: ignore[arg-type]
    if upload is None:
        raise InvalidInputError(f"mode '{p.mode}' needs an input file, and the job has none")
    if p.mode == "i2v":
        image = read_video(upload, max_frames=1)
        return pipe.generate(job.prompt, frames=p.frames, image=image, mode="i2v", refine=p.refine, **common)  # type: ignore[arg-type]
    source = read_video(upload, max_frames=cfg.max_input_frames)
    if p.mode == "edit":
        return pipe.generate(job.prompt, video=source, mode="edit", strength=float(p.strength or cfg.edit_strength), refine=p.refine,
                             **common)  # type: ignore[arg-type]
    if p.mode == "extend":
        progress.windows = extension_windows(pipe, p.frames)
        return pipe.generate(job.prompt, video=source, frames=p.frames, mode="extend", **common)  # type: ignore[arg-type]
    raise InvalidInputError(f"unknown job mode '{p.mode}'; expected t2v, i2v, edit or extend")


def _public_message(error: BaseException, cfg: ServerConfig) -> str:
    """An error message safe to show a client: no server paths."""
    return str(error).replace(str(cfg.uploads_dir), "uploads").replace(str(cfg.data_dir), "data")[:1000]


def error_code(error: BaseException) -> str:
    if isinstance(error, RefusedPromptError):
        return "moderation_blocked"
    if isinstance(error, VideoIOError):
        return "invalid_media"
    if isinstance(error, InvalidInputError):
        return "invalid_input"
    return "generation_failed"


def expires_at(cfg: ServerConfig) -> int | None:
    return int(time.time()) + cfg.retention_s if cfg.retention_s else None


def run_job(pipe: KinemaPipeline, job: Job, cfg: ServerConfig, store: Store, stop: threading.Event, parent_pid: int | None) -> str:
    """Run one claimed job to its end; returns the final status (``completed``, ``failed``, ``cancelled``, ``released``)."""
    t0 = time.time()
    progress = Progress(store, job.id, 1, stop, parent_pid)
    out_dir = cfg.videos_dir / job.id
    remove_job_files(cfg, job.id, uploads=False)  # partial files of an interrupted attempt
    try:
        video = generate(pipe, job, cfg, progress)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_video(video, out_dir / VARIANTS["video"][0], job, pipe.name)
        progress.set(97)
        write_previews(video.frames, out_dir)
        progress.set(99)
        seconds = format_seconds((video.num_frames - 1) / video.fps)
        if not store.complete(job.id, seconds, expires_at(cfg)):
            raise JobCancelled()
    except JobCancelled:
        remove_job_files(cfg, job.id)
        log.info("%s: deleted while running", job.id)
        return "cancelled"
    except ParentGone:
        raise
    except Shutdown:
        store.release(job.id)
        remove_job_files(cfg, job.id, uploads=False)
        log.info("%s: put back in the queue (worker stopping)", job.id)
        return "released"
    except Exception as e:
        if isinstance(e, KinemaError):
            log.warning("%s failed: %s", job.id, e)
            message = _public_message(e, cfg)
        else:
            log.exception("%s failed", job.id)
            message = f"generation failed ({type(e).__name__}); the server log has the details"
        store.fail(job.id, error_code(e), message, expires_at(cfg))
        remove_job_files(cfg, job.id)
        return "failed"
    remove_job_files(cfg, job.id, outputs=False)
    first = f", first progress after {progress.first_at - t0:.2f}s" if progress.first_at else ""
    log.info("%s: completed in %.2fs%s", job.id, time.time() - t0, first)
    return "completed"


# ------------------------------------------------------------------------------------ process
def _die_with_parent(parent_pid: int) -> None:
    """Linux: get SIGKILL when the parent dies. Exit now if it already has."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            log.warning("could not set PR_SET_PDEATHSIG; relying on parent checks")
    if os.getppid() != parent_pid:
        sys.exit(EXIT_PARENT_GONE)


def _lock(path: Path, stop: threading.Event) -> IO[bytes] | None:
    """Take an exclusive lock on ``path`` (waiting for a previous worker to exit); None if stopped first."""
    import fcntl

    f = open(path, "ab")  # noqa: SIM115 - held for the process lifetime
    while not stop.is_set():
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            stop.wait(0.2)
    f.close()
    return None


def _wait_for_work(timeout: float) -> bool:
    """Sleep until the API writes to our stdin or ``timeout``; False when stdin hit EOF (parent gone)."""
    try:
        ready, _, _ = select.select([sys.stdin.fileno()], [], [], timeout)
    except (OSError, ValueError):
        time.sleep(timeout)
        return True
    if ready:
        try:
            return os.read(sys.stdin.fileno(), 4096) != b""
        except BlockingIOError:
            return True
    return True


def serve_jobs(cfg: ServerConfig, parent_pid: int | None, stop: threading.Event) -> int:
    """The worker's main loop (see the module docstring). Returns the exit status."""
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock(cfg.data_dir / "worker.lock", stop)
    if lock is None:
        return 0
    store = Store(cfg.db_path)
    requeued, failed = store.recover(cfg.max_attempts, cfg.retention_s)
    for vid in requeued:
        remove_job_files(cfg, vid, uploads=False)
    for vid in failed:
        remove_job_files(cfg, vid)
    if requeued or failed:
        log.warning("recovered interrupted jobs: %d queued again, %d failed after %d attempts", len(requeued), len(failed), cfg.max_attempts)
    import torch

    from kinema.pipeline import KinemaPipeline

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.time()
    pipe = KinemaPipeline.from_pretrained(cfg.model)
    if cfg.compile:
        pipe.compile()
    store.set_meta("worker", json.dumps({"pid": os.getpid(), "ready_at": time.time(), "model": pipe.name}))
    log.info("worker %d ready: model '%s' loaded in %.1fs", os.getpid(), pipe.name, time.time() - t0)
    while not stop.is_set():
        if parent_pid is not None and os.getppid() != parent_pid:
            return EXIT_PARENT_GONE
        job = store.claim_next()
        if job is None:
            if not _wait_for_work(1.0):
                return EXIT_PARENT_GONE
            continue
        log.info("%s: started (%s, attempt %d)", job.id, job.params.mode, job.attempts)
        try:
            run_job(pipe, job, cfg, store, stop, parent_pid)
        except ParentGone:
            return EXIT_PARENT_GONE
    return 0


def config_to_json(cfg: ServerConfig) -> str:
    """The config for the worker's command line, without API keys."""
    data = dataclasses.asdict(cfg)
    data.update(model=str(cfg.model), data_dir=str(cfg.data_dir), api_keys=[])
    return json.dumps(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kinema.serve.worker", description="Kinema server worker (started by 'kinema serve').")
    parser.add_argument("--config", required=True, help="ServerConfig as JSON")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is no longer the parent")
    args = parser.parse_args(argv)
    data = json.loads(args.config)
    cfg = ServerConfig(**{**data, "model": Path(data["model"]), "data_dir": Path(data["data_dir"])})
    logging.basicConfig(level=cfg.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if args.parent_pid is not None:
        _die_with_parent(args.parent_pid)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the server stops us with SIGTERM
    return serve_jobs(cfg, args.parent_pid, stop)


# ------------------------------------------------------------------------------------ supervisor
class WorkerSupervisor:
    """Runs the worker process from the API process; restarts it (1 s, doubling to 30 s) if it dies."""

    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="kinema-worker-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _spawn(self) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "kinema.serve.worker", "--config", config_to_json(self.cfg), "--parent-pid", str(os.getpid())]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, close_fds=True)
        assert proc.stdin is not None
        os.set_blocking(proc.stdin.fileno(), False)
        return proc

    def _run(self) -> None:
        # The worker is spawned from this long-lived thread: PR_SET_PDEATHSIG fires when the spawning thread exits.
        backoff = 1.0
        while not self._stop.is_set():
            started = time.monotonic()
            with self._lock:
                if self._stop.is_set():
                    break
                self.proc = self._spawn()
            rc = self.proc.wait()
            if self._stop.is_set():
                break
            self.restarts += 1
            if time.monotonic() - started > 60:
                backoff = 1.0
            log.error("worker exited with status %s; restarting in %.0fs", rc, backoff)
            self._stop.wait(backoff)
            backoff = min(30.0, backoff * 2)

    def notify(self) -> None:
        """Wake the worker: a job was queued."""
        proc = self.proc
        if proc is None or proc.stdin is None:
            return
        try:
            os.write(proc.stdin.fileno(), b"\n")
        except (BlockingIOError, BrokenPipeError, OSError, ValueError):
            pass

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the worker (a running job goes back to the queue), SIGKILL after ``timeout``."""
        with self._lock:
            self._stop.set()
            proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._thread.join(timeout=5)


if __name__ == "__main__":
    sys.exit(main())
