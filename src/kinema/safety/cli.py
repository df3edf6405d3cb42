"""The ``kinema detect`` sub-command."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "detect",
        help="check a video or image for Kinema's watermark and C2PA content credentials",
        description="Report whether FILE carries Kinema's invisible watermark (payload and confidence), "
        "whether its C2PA manifest verifies (or was tampered with), and its generation record.",
    )
    p.add_argument("file", help="video or image: .mp4, .webm, .gif, .mov, .png, .jpg")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--trust", default=None, help="PEM file of trusted root certificates (default: the local Kinema CA)")
    p.add_argument(
        "--watermark", default="default", metavar="PRESET",
        help="watermark preset to read (kinema.safety.WATERMARK_PRESETS): default; v2 reads marks written by "
        "Kinema before the grid-free band (sessions 15-17), v1 those before the 2..10 band",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kinema.errors import InvalidInputError
    from kinema.safety.detect import format_report, inspect_file
    from kinema.safety.watermark import WATERMARK_PRESETS

    if args.watermark not in WATERMARK_PRESETS:
        raise InvalidInputError(f"unknown watermark preset '{args.watermark}'; choose one of {', '.join(WATERMARK_PRESETS)}")
    anchors = Path(args.trust).read_text() if args.trust else None
    report = inspect_file(args.file, config=WATERMARK_PRESETS[args.watermark], trust_anchors=anchors)
    print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else format_report(report))
    return 0
