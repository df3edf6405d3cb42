"""The job store: one SQLite database in WAL mode, shared by the API process and the worker.

Every state change is one transaction, so a crash (even ``kill -9``) at any point leaves each job
in exactly one of ``queued``, ``in_progress``, ``completed`` or ``failed``. A job found
``in_progress`` when a worker starts was interrupted: :meth:`Store.recover` queues it again, or
marks it failed once it has been tried ``max_attempts`` times.

Ids are ``video_`` + 32 lowercase hex digits: 12 of milliseconds since the epoch, then 20 random,
so sorting by id sorts by creation time and a pagination cursor stays valid after its video is
deleted. Anything else is refused before it reaches SQL or the file system.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STATUSES: tuple[str, ...] = ("queued", "in_progress", "completed", "failed")
KINDS: tuple[str, ...] = ("create", "remix", "edit", "extend")
ID_PATTERN = re.compile(r"^video_[0-9a-f]{32}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,
    size TEXT NOT NULL,
    seconds TEXT NOT NULL,
    remixed_from_video_id TEXT,
    params TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    started_at REAL,
    completed_at INTEGER,
    expires_at INTEGER,
    files_expired INTEGER NOT NULL DEFAULT 0,
    error_code TEXT,
    error_message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS videos_owner ON videos(owner, id);
CREATE INDEX IF NOT EXISTS videos_status ON videos(status, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def new_video_id(now: float | None = None) -> str:
    """``video_`` + 12 hex digits of epoch milliseconds + 20 random hex digits."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"video_{ms:012x}{secrets.token_hex(10)}"


def is_video_id(text: object) -> bool:
    return isinstance(text, str) and ID_PATTERN.fullmatch(text) is not None


@dataclass
class JobParams:
    """What the worker needs to make a video; stored as JSON with the job.

    ``mode``: ``t2v``, ``i2v``, ``edit`` or ``extend``. ``frames``: pixel frames of the clip
    (``t2v``/``i2v``) or of the new part (``extend``); unused by ``edit``, which keeps the input's
    length. ``input``: file name under ``uploads/{id}/`` (an image for ``i2v``, a video for
    ``edit``/``extend``). ``width``/``height`` are the sampled size; ``refine`` (``t2v``/``i2v``)
    runs the refiner on top.
    """

    mode: str
    width: int
    height: int
    frames: int
    fps: float
    seed: int
    steps: int | None = None
    strength: float | None = None
    input: str | None = None
    refine: bool = False  # run the model's refiner on the result (the job's size is then the refined one)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> JobParams:
        return cls(**json.loads(text))


@dataclass
class Job:
    """One row of the ``videos`` table."""

    id: str
    owner: str
    kind: str
    status: str
    model: str
    prompt: str
    size: str
    seconds: str
    params: JobParams
    created_at: int
    progress: int = 0
    remixed_from_video_id: str | None = None
    started_at: float | None = None
    completed_at: int | None = None
    expires_at: int | None = None
    files_expired: bool = False
    error_code: str | None = None
    error_message: str | None = None
    attempts: int = 0

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        data = {k: row[k] for k in row.keys()}
        data["params"] = JobParams.from_json(data["params"])
        data["files_expired"] = bool(data["files_expired"])
        return cls(**data)


class Store:
    """SQLite job store (WAL). Safe to use from many threads and from the worker process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._db().executescript(SCHEMA)  # idempotent; executescript manages its own transaction

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=True)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: takes the write lock up front)."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # ------------------------------------------------------------------ API side
    _INSERT = (
        "INSERT INTO videos (id, owner, kind, status, progress, model, prompt, size, seconds, remixed_from_video_id, params, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )

    @staticmethod
    def _values(job: Job) -> tuple[object, ...]:
        return (job.id, job.owner, job.kind, job.status, job.progress, job.model, job.prompt, job.size, job.seconds,
                job.remixed_from_video_id, job.params.to_json(), job.created_at)

    def insert(self, job: Job) -> None:
        with self._tx() as db:
            db.execute(self._INSERT, self._values(job))

    def insert_if_room(self, job: Job, max_active: int) -> bool:
        """Insert ``job`` unless ``max_active`` jobs are already queued or running (atomic check)."""
        with self._tx() as db:
            active = db.execute("SELECT COUNT(*) FROM videos WHERE status IN ('queued', 'in_progress')").fetchone()[0]
            if active >= max_active:
                return False
            db.execute(self._INSERT, self._values(job))
        return True

    def get(self, video_id: str, owner: str | None = None) -> Job | None:
        """The job, or None (also when it belongs to another owner)."""
        if not is_video_id(video_id):
            return None
        row = self._db().execute("SELECT * FROM videos WHERE id = ?", (video_id,)).fetchone()
        if row is None or (owner is not None and row["owner"] != owner):
            return None
        return Job.from_row(row)

    def page(self, owner: str, *, after: str | None, limit: int, order: str) -> tuple[list[Job], bool]:
        """A page of ``owner``'s jobs by creation time; ``(jobs, has_more)``."""
        if order not in ("asc", "desc"):
            raise ValueError(f"order must be 'asc' or 'desc', got {order!r}")
        op, direction = (">", "ASC") if order == "asc" else ("<", "DESC")
        sql = "SELECT * FROM videos WHERE owner = ?"
        args: list[object] = [owner]
        if after is not None:
            sql += f" AND id {op} ?"
            args.append(after)
        sql += f" ORDER BY id {direction} LIMIT ?"
        args.append(limit + 1)
        rows = self._db().execute(sql, args).fetchall()
        return [Job.from_row(r) for r in rows[:limit]], len(rows) > limit

    def delete(self, video_id: str, owner: str) -> Job | None:
        """Remove the job's record; returns it (None if absent). Files are the caller's to remove."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM videos WHERE id = ? AND owner = ?", (video_id, owner)).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM videos WHERE id = ?", (video_id,))
        return Job.from_row(row)

    def active_count(self) -> int:
        return int(self._db().execute("SELECT COUNT(*) FROM videos WHERE status IN ('queued', 'in_progress')").fetchone()[0])

    def queue_position(self, video_id: str) -> int:
        """How many jobs are queued or running ahead of this one."""
        row = self._db().execute("SELECT COUNT(*) FROM videos WHERE status IN ('queued', 'in_progress') AND id < ?", (video_id,)).fetchone()
        return int(row[0])

    def mean_job_seconds(self, last: int = 20) -> float | None:
        """Mean run time of the ``last`` completed jobs (None before any)."""
        row = self._db().execute(
            "SELECT AVG(d) FROM (SELECT completed_at - started_at AS d FROM videos WHERE status = 'completed' AND started_at IS NOT NULL "
            "ORDER BY completed_at DESC LIMIT ?)", (last,)
        ).fetchone()
        return None if row[0] is None else max(0.0, float(row[0]))

    # ------------------------------------------------------------------ worker side
    def claim_next(self) -> Job | None:
        """Take the oldest queued job: ``in_progress``, attempts + 1."""
        with self._tx() as db:
            row = db.execute("SELECT id FROM videos WHERE status = 'queued' ORDER BY id LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE videos SET status = 'in_progress', progress = 0, attempts = attempts + 1, started_at = ? WHERE id = ?",
                (time.time(), row["id"]),
            )
            job = db.execute("SELECT * FROM videos WHERE id = ?", (row["id"],)).fetchone()
        return Job.from_row(job)

    def set_progress(self, video_id: str, progress: int) -> bool:
        """Record progress (0-100) of a running job; False when the job is gone (deleted)."""
        db = self._db()
        cur = db.execute("UPDATE videos SET progress = ? WHERE id = ? AND status = 'in_progress'", (int(progress), video_id))
        return cur.rowcount == 1

    def complete(self, video_id: str, seconds: str, expires_at: int | None) -> bool:
        """Mark a running job completed (progress 100); False when it was deleted meanwhile."""
        now = int(time.time())
        with self._tx() as db:
            cur = db.execute(
                "UPDATE videos SET status = 'completed', progress = 100, seconds = ?, completed_at = ?, expires_at = ? "
                "WHERE id = ? AND status = 'in_progress'",
                (seconds, now, expires_at, video_id),
            )
        return cur.rowcount == 1

    def fail(self, video_id: str, code: str, message: str, expires_at: int | None) -> bool:
        now = int(time.time())
        with self._tx() as db:
            cur = db.execute(
                "UPDATE videos SET status = 'failed', error_code = ?, error_message = ?, completed_at = ?, expires_at = ? "
                "WHERE id = ? AND status IN ('queued', 'in_progress')",
                (code, message, now, expires_at, video_id),
            )
        return cur.rowcount == 1

    def release(self, video_id: str) -> None:
        """Put a running job back in the queue without counting the attempt (graceful shutdown)."""
        with self._tx() as db:
            db.execute(
                "UPDATE videos SET status = 'queued', progress = 0, attempts = MAX(0, attempts - 1) WHERE id = ? AND status = 'in_progress'",
                (video_id,),
            )

    def recover(self, max_attempts: int, retention_s: int) -> tuple[list[str], list[str]]:
        """Jobs left ``in_progress`` by a dead worker: queued again, or failed after ``max_attempts``.

        Call only while holding the worker lock (no other worker is running). Returns
        ``(requeued ids, failed ids)``.
        """
        now = int(time.time())
        expires = now + retention_s if retention_s else None
        with self._tx() as db:
            rows = db.execute("SELECT id, attempts FROM videos WHERE status = 'in_progress' ORDER BY id").fetchall()
            requeued = [r["id"] for r in rows if r["attempts"] < max_attempts]
            failed = [r["id"] for r in rows if r["attempts"] >= max_attempts]
            for vid in requeued:
                db.execute("UPDATE videos SET status = 'queued', progress = 0 WHERE id = ?", (vid,))
            for vid in failed:
                db.execute(
                    "UPDATE videos SET status = 'failed', error_code = 'interrupted', error_message = ?, completed_at = ?, expires_at = ? WHERE id = ?",
                    (f"generation was interrupted {max_attempts} times (the server or its worker stopped while making this video); not retried again",
                     now, expires, vid),
                )
        return requeued, failed

    # ------------------------------------------------------------------ cleanup
    def due_for_expiry(self, now: float) -> list[str]:
        """Finished jobs whose files are past ``expires_at`` and not yet removed."""
        rows = self._db().execute(
            "SELECT id FROM videos WHERE expires_at IS NOT NULL AND expires_at <= ? AND files_expired = 0 AND status IN ('completed', 'failed')",
            (int(now),),
        ).fetchall()
        return [r["id"] for r in rows]

    def mark_files_expired(self, video_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE videos SET files_expired = 1 WHERE id = ?", (video_id,))

    def purge_records(self, expired_before: float) -> list[str]:
        """Delete the records of jobs whose files expired before ``expired_before``."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT id FROM videos WHERE files_expired = 1 AND expires_at <= ?", (int(expired_before),)
            ).fetchall()
            ids = [r["id"] for r in rows]
            db.executemany("DELETE FROM videos WHERE id = ?", [(i,) for i in ids])
        return ids

    def known_ids(self) -> set[str]:
        return {r[0] for r in self._db().execute("SELECT id FROM videos").fetchall()}

    # ------------------------------------------------------------------ meta
    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def get_meta(self, key: str) -> str | None:
        row = self._db().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])
