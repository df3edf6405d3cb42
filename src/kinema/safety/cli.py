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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kinema.safety.detect import format_report, inspect_file

    anchors = Path(args.trust).read_text() if args.trust else None
    report = inspect_file(args.file, trust_anchors=anchors)
    print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else format_report(report))
    return 0
