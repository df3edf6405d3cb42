"""Settings of ``kinema serve``: one typed dataclass, shared by the API process and the worker.

Limits are the server's defences (see ``docs/server.md``): request and upload sizes, prompt length,
queue length, and how long finished files are kept.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from kinema.errors import InvalidInputError

MIB = 1024 * 1024


@dataclass
class ServerConfig:
    """Everything ``kinema serve`` needs. Paths are resolved by :meth:`validate`."""

    model: Path
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: list[str] = field(default_factory=list)  # bearer keys; empty + no_auth=True serves without keys (loopback only)
    no_auth: bool = False
    max_queue: int = 32  # queued + in-progress jobs; more gets 429 with retry-after
    max_prompt_chars: int = 2000
    max_upload_bytes: int = 50 * MIB  # one uploaded image or video
    max_request_bytes: int = 52 * MIB  # a whole request body
    max_image_pixels: int = 4096 * 4096  # an uploaded image (decompression-bomb guard)
    max_video_side: int = 4096  # width and height of an uploaded video
    max_input_frames: int = 600  # frames decoded from an uploaded video (after fps resampling)
    retention_s: int = 24 * 3600  # completed/failed files are deleted this long after the job ends (0 = keep)
    record_retention_s: int = 30 * 24 * 3600  # job records are deleted this long after their files expire (0 = keep)
    cleanup_interval_s: float = 60.0
    poll_after_ms: int = 1000  # `openai-poll-after-ms` sent with queued / in-progress jobs
    max_attempts: int = 2  # a job interrupted by a crash this many times is marked failed
    steps: int | None = None  # sampler steps for `sora-2` and the model's own name (None = the model's default)
    pro_steps: int | None = None  # steps for `sora-2-pro` (None = twice `steps`)
    remix_strength: float = 0.7  # SDEdit strength of remix
    edit_strength: float = 0.6  # SDEdit strength of edits
    threads: int | None = None  # torch threads in the worker (None = torch's default)
    compile: bool = False  # torch.compile the DiT in the worker (slow first video per size, faster after)
    log_level: str = "info"

    def validate(self) -> ServerConfig:
        """Resolve paths and check values; raises InvalidInputError naming the bad value."""
        self.model = Path(self.model).expanduser().resolve()
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        if not (self.model / "pipeline.json").is_file():
            raise InvalidInputError(f"model folder '{self.model}' has no pipeline.json")
        if not 0 < self.port < 65536:
            raise InvalidInputError(f"port={self.port} must be between 1 and 65535")
        if self.no_auth and self.api_keys:
            raise InvalidInputError("give either API keys or --no-auth, not both")
        if self.no_auth and not is_loopback(self.host):
            raise InvalidInputError(f"--no-auth is only allowed on a loopback host (127.0.0.1, ::1, localhost), not '{self.host}'")
        if not self.no_auth and not self.api_keys:
            raise InvalidInputError("an API key is required: pass --api-key KEY (or set KINEMA_API_KEY), or --no-auth on a loopback host")
        for key in self.api_keys:
            if len(key) < 8 or any(c.isspace() for c in key):
                raise InvalidInputError("API keys must be at least 8 characters without spaces")
        for name in ("max_queue", "max_prompt_chars", "max_upload_bytes", "max_image_pixels", "max_video_side", "max_input_frames", "max_attempts"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name}={getattr(self, name)} must be >= 1")
        if self.max_request_bytes < self.max_upload_bytes:
            raise InvalidInputError(f"max_request_bytes={self.max_request_bytes} must be >= max_upload_bytes={self.max_upload_bytes}")
        for name in ("remix_strength", "edit_strength"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise InvalidInputError(f"{name}={getattr(self, name)} must be in (0, 1]")
        for name in ("steps", "pro_steps"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= 1000:
                raise InvalidInputError(f"{name}={value} must be between 1 and 1000")
        if self.retention_s < 0 or self.record_retention_s < 0:
            raise InvalidInputError("retention times must be >= 0 seconds (0 = keep forever)")
        return self

    @property
    def db_path(self) -> Path:
        return self.data_dir / "kinema.db"

    @property
    def videos_dir(self) -> Path:
        return self.data_dir / "videos"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
