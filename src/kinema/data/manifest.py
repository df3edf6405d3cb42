"""Dataset manifests: a CSV or JSONL file listing ``path, caption`` (optional ``fps, frames, width, height``).

CSV files need a header row naming the columns; JSONL files hold one JSON object per line. Relative
paths are resolved against the manifest's folder. Optional metadata lets the loader skip probing a
file; when it is absent the file is probed with PyAV/Pillow (see :mod:`kinema.data.decode`).

A manifest that is empty, or whose entries all point at missing files, fails fast with an
``InvalidInputError`` naming the manifest; individual missing files are skipped with a warning.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kinema.errors import InvalidInputError

log = logging.getLogger(__name__)

MANIFEST_SUFFIXES: tuple[str, ...] = (".csv", ".jsonl")
OPTIONAL_INT_FIELDS: tuple[str, ...] = ("frames", "width", "height")
KNOWN_FIELDS: tuple[str, ...] = ("path", "caption", "fps", *OPTIONAL_INT_FIELDS)
# Extra per-clip fields that dataset writers add and training ignores (Kinema World's ground-truth spec).
IGNORED_FIELDS = ("spec", "split", "seed", "index")


@dataclass(frozen=True)
class ManifestEntry:
    """One media file of a dataset. ``frames == 1`` (or an image suffix) marks a still image."""

    path: Path
    caption: str
    fps: float | None = None
    frames: int | None = None
    width: int | None = None
    height: int | None = None

    @property
    def has_metadata(self) -> bool:
        """True when frames, width and height are all known (no probing needed)."""
        return self.frames is not None and self.width is not None and self.height is not None


@dataclass
class Manifest:
    """The entries of a manifest plus the entries dropped while reading it."""

    source: Path
    entries: list[ManifestEntry]
    missing: list[Path]  # listed files that do not exist (skipped with a warning)

    def __len__(self) -> int:
        return len(self.entries)


def _optional_number(raw: Any, field_name: str, kind: type, where: str) -> Any:
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return None
    try:
        value = kind(float(raw)) if kind is int else kind(raw)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"{where}: field '{field_name}'={raw!r} is not a number") from e
    if value <= 0:
        raise InvalidInputError(f"{where}: field '{field_name}'={raw!r} invalid; allowed: > 0")
    return value


def _entry_from_row(row: dict[str, Any], root: Path, where: str) -> ManifestEntry:
    unknown = sorted(k for k in row if k not in KNOWN_FIELDS and k not in IGNORED_FIELDS)
    if unknown:
        raise InvalidInputError(f"{where}: unknown field(s) {unknown}; allowed: {list(KNOWN_FIELDS)} (ignored: {list(IGNORED_FIELDS)})")
    raw_path = row.get("path")
    if not isinstance(raw_path, str) or not raw_path.strip():
        raise InvalidInputError(f"{where}: missing or empty 'path' (got {raw_path!r})")
    caption = row.get("caption")
    if caption is None:
        caption = ""
    if not isinstance(caption, str):
        raise InvalidInputError(f"{where}: 'caption' must be a string, got {caption!r}")
    path = Path(raw_path.strip()).expanduser()
    if not path.is_absolute():
        path = root / path
    return ManifestEntry(
        path=path,
        caption=caption.strip(),
        fps=_optional_number(row.get("fps"), "fps", float, where),
        frames=_optional_number(row.get("frames"), "frames", int, where),
        width=_optional_number(row.get("width"), "width", int, where),
        height=_optional_number(row.get("height"), "height", int, where),
    )


def _read_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(where, row)`` pairs of a CSV or JSONL file; ``where`` is ``file:line`` for messages."""
    rows: list[tuple[str, dict[str, Any]]] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "path" not in reader.fieldnames:
                raise InvalidInputError(
                    f"manifest '{path}': the CSV header must name a 'path' column (and 'caption'); "
                    f"got {reader.fieldnames}; allowed columns: {list(KNOWN_FIELDS)}"
                )
            for row in reader:
                clean = {k.strip(): v for k, v in row.items() if k is not None}
                if all((v is None or not str(v).strip()) for v in clean.values()):
                    continue  # blank line
                rows.append((f"{path}:{reader.line_num}", clean))
    else:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InvalidInputError(f"manifest '{path}:{lineno}': invalid JSON ({e.msg})") from e
                if not isinstance(row, dict):
                    raise InvalidInputError(f"manifest '{path}:{lineno}': expected a JSON object, got {row!r}")
                rows.append((f"{path}:{lineno}", row))
    return rows


def read_manifest(path: str | Path) -> Manifest:
    """Parse a ``.csv`` / ``.jsonl`` manifest; missing media files are skipped with a warning.

    Raises:
        InvalidInputError: the manifest is missing, has a bad suffix or bad rows, is empty, or
            none of its files exist.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise InvalidInputError(f"manifest '{path}' has suffix {path.suffix!r}; allowed: {list(MANIFEST_SUFFIXES)}")
    if not path.is_file():
        raise InvalidInputError(f"manifest '{path}' does not exist")
    rows = _read_rows(path)
    if not rows:
        raise InvalidInputError(f"manifest '{path}' lists no files; it needs at least one row with a 'path'")
    entries: list[ManifestEntry] = []
    missing: list[Path] = []
    for where, row in rows:
        entry = _entry_from_row(row, path.parent, f"manifest '{where}'")
        if entry.path.is_file():
            entries.append(entry)
        else:
            log.warning("skipping missing file %s (listed in %s)", entry.path, where)
            missing.append(entry.path)
    if not entries:
        shown = ", ".join(str(p) for p in missing[:3])
        raise InvalidInputError(
            f"manifest '{path}' points at nothing: none of its {len(rows)} files exist (e.g. {shown}); "
            "paths are resolved relative to the manifest's folder"
        )
    return Manifest(source=path, entries=entries, missing=missing)


def write_manifest(entries: list[ManifestEntry], path: str | Path) -> Path:
    """Write entries as CSV or JSONL (by suffix), paths relative to the manifest folder when possible."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise InvalidInputError(f"manifest '{path}' has suffix {path.suffix!r}; allowed: {list(MANIFEST_SUFFIXES)}")

    def as_row(e: ManifestEntry) -> dict[str, Any]:
        try:
            rel = str(e.path.resolve().relative_to(path.parent.resolve()))
        except ValueError:
            rel = str(e.path)
        row: dict[str, Any] = {"path": rel, "caption": e.caption}
        for k in ("fps", *OPTIONAL_INT_FIELDS):
            if getattr(e, k) is not None:
                row[k] = getattr(e, k)
        return row

    rows = [as_row(e) for e in entries]
    if path.suffix.lower() == ".csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(KNOWN_FIELDS))
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
