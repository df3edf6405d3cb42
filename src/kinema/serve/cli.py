"""``kinema serve``: the OpenAI-Videos-compatible HTTP server (FastAPI on uvicorn) with its worker.

Also runnable alone: ``python -m kinema.serve.cli --port 8000 --api-key KEY``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from kinema.serve.config import MIB, ServerConfig

DEFAULT_DATA_DIR = "kinema-data"


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--model", type=Path, default=None, help="model folder (default: $KINEMA_MODEL or the bundled model)")
    p.add_argument("--data-dir", type=Path, default=None, help=f"jobs database and files (default: $KINEMA_DATA_DIR or ./{DEFAULT_DATA_DIR})")
    p.add_argument("--api-key", action="append", default=None, metavar="KEY",
                   help="a bearer key clients must send (repeatable; default: $KINEMA_API_KEY, comma-separated)")
    p.add_argument("--no-auth", action="store_true", help="serve without API keys (only on a loopback host)")
    p.add_argument("--max-queue", type=int, default=32, help="queued + running videos before 429 (default 32)")
    p.add_argument("--max-upload-mb", type=float, default=50.0, help="largest uploaded image or video in MiB (default 50)")
    p.add_argument("--max-prompt-chars", type=int, default=2000, help="longest prompt (default 2000)")
    p.add_argument("--retention-hours", type=float, default=24.0, help="hours the files of a finished video are kept (0 = forever; default 24)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps for sora-2 and the model's name (default: the model's)")
    p.add_argument("--pro-steps", type=int, default=None, help="sampler steps for sora-2-pro (default: twice --steps)")
    p.add_argument("--poll-after-ms", type=int, default=1000, help="openai-poll-after-ms sent while a video is made (default 1000)")
    p.add_argument("--threads", type=int, default=None, help="torch threads in the worker (default: torch's)")
    p.add_argument("--compile", action="store_true", help="torch.compile the DiT in the worker: the first video of each size compiles (~20 s), later ones sample ~1.5x faster")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="server log level")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="serve the OpenAI Videos API (Sora-compatible) over HTTP",
        description="Serve a Kinema model through OpenAI's Videos API under /v1 (POST /v1/videos, ...). Clients written for "
                    "OpenAI's hosted Sora API work by changing base_url to http://HOST:PORT/v1. See docs/server.md.",
    )
    _add_arguments(p)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """A validated ServerConfig from parsed arguments and the environment."""
    from kinema.cli import default_model_path

    keys = list(args.api_key or [])
    if not keys and not args.no_auth and os.environ.get("KINEMA_API_KEY"):
        keys = [k.strip() for k in os.environ["KINEMA_API_KEY"].split(",") if k.strip()]
    data_dir = args.data_dir or Path(os.environ.get("KINEMA_DATA_DIR") or DEFAULT_DATA_DIR)
    upload = int(args.max_upload_mb * MIB)
    cfg = ServerConfig(
        model=args.model or default_model_path(), data_dir=data_dir, host=args.host, port=args.port, api_keys=keys,
        no_auth=args.no_auth, max_queue=args.max_queue, max_prompt_chars=args.max_prompt_chars, max_upload_bytes=upload,
        max_request_bytes=upload + 2 * MIB, retention_s=int(args.retention_hours * 3600), steps=args.steps,
        pro_steps=args.pro_steps, poll_after_ms=args.poll_after_ms, threads=args.threads, compile=args.compile, log_level=args.log_level,
    )
    return cfg.validate()


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from kinema.serve.app import create_app

    cfg = config_from_args(args)
    logging.getLogger("kinema").setLevel(cfg.log_level.upper())
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    app = create_app(cfg)
    auth = "no API key (loopback only)" if cfg.no_auth else f"{len(cfg.api_keys)} API key(s)"
    print(f"kinema serve: model '{cfg.model.name}', data in {cfg.data_dir}, {auth}; base_url http://{cfg.host}:{cfg.port}/v1", file=sys.stderr)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level, server_header=False, timeout_graceful_shutdown=20)
    return 0


def main(argv: list[str] | None = None) -> int:
    from kinema.errors import KinemaError

    parser = argparse.ArgumentParser(prog="kinema serve", description="Serve the OpenAI Videos API for a Kinema model. See docs/server.md.")
    _add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except KinemaError as e:
        print(f"kinema serve: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
