"""``kinema ui``: serve the web page on this machine (default http://127.0.0.1:7860)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

PLAYER_CHOICES = ("webm", "mp4")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ui", help="open the web UI (Gradio) for text/image/video-to-video",
        description="Serve Kinema's web page: every generation mode, settings, progress, the playing result, "
        "a history of this session's clips, and provenance. Nothing is shared publicly; the page loads nothing from the internet.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 serves the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--model", type=Path, default=None, help="model folder (default: $KINEMA_MODEL or the bundled model)")
    p.add_argument("--refiner", type=Path, default=None, help="refiner folder (refiner/, vae/, refiner.json) to use instead of the model's own MODEL/refiner")
    p.add_argument("--output-dir", type=Path, default=None, help="where clips are written, one folder each (default: a new temporary folder)")
    p.add_argument("--player-format", choices=PLAYER_CHOICES, default="webm",
                   help="what the page plays: webm (VP9, decoded by every Chromium build; default) or mp4 (H.264)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kinema.cli import default_model_path
    from kinema.errors import InvalidInputError
    from kinema.ui.app import AppOptions, launch_app
    from kinema.ui.clip import StudioModel

    if not 0 < args.port < 65536:
        raise InvalidInputError(f"--port {args.port} invalid; use 1..65535")
    model = StudioModel.load(args.model or default_model_path(), args.refiner)
    out_dir = args.output_dir or Path(tempfile.mkdtemp(prefix="kinema-ui-"))
    options = AppOptions(out_dir=Path(out_dir), player_format=f".{args.player_format}")
    print(f"kinema ui: model '{model.model_id}' ({'with' if model.has_refiner else 'no'} refiner); clips in {out_dir}")
    print(f"kinema ui: open http://{args.host}:{args.port} (Ctrl-C stops)", flush=True)
    launch_app(model, options, host=args.host, port=args.port, block=True)
    return 0
