"""OpenAI-Videos-compatible HTTP server: FastAPI app, SQLite job store, generation worker.

``kinema serve`` (``kinema.serve.cli``) runs it; ``docs/server.md`` has the API, the size and
duration mapping, the retention policy and curl / ``openai`` SDK examples.
"""

from __future__ import annotations

from kinema.serve.config import ServerConfig
from kinema.serve.sizes import ModelInfo, resolve_seconds, resolve_size
from kinema.serve.store import Job, JobParams, Store

__all__ = ["Job", "JobParams", "ModelInfo", "ServerConfig", "Store", "resolve_seconds", "resolve_size"]
