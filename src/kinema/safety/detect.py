"""``kinema detect FILE``: watermark, C2PA manifest and sidecar of a video or image, in one report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kinema.errors import VideoIOError
from kinema.safety.c2pa import MIME_TYPES, C2paReport, verify_file
from kinema.safety.provenance import load_record
from kinema.safety.watermark import Detection, Payload, WatermarkConfig, detect_watermark
from kinema.video import read_video


@dataclass
class DetectReport:
    """Everything ``kinema detect`` found about one file."""

    path: str
    watermark: Detection
    c2pa: C2paReport
    record: dict[str, object] | None = None
    matches_record: bool | None = None  # watermark payload equals the record's model/generation tags
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """``kinema-generated``, ``tampered``, ``not-detected``."""
        if self.c2pa.present and not self.c2pa.valid:
            return "tampered"
        if self.watermark.present or (self.c2pa.present and self.c2pa.ai_generated):
            return "kinema-generated"
        return "not-detected"

    def to_dict(self) -> dict[str, object]:
        wm = self.watermark
        return {
            "path": self.path,
            "verdict": self.verdict,
            "watermark": {
                "present": wm.present,
                "payload": wm.payload.hex() if wm.payload else None,
                "model_tag": f"{wm.payload.model_tag:04x}" if wm.payload else None,
                "generation_tag": f"{wm.payload.generation_tag:06x}" if wm.payload else None,
                "confidence": round(wm.confidence, 6),
                "score": round(wm.score, 3),
                "scale": wm.scale,
                "shift": list(wm.shift),
                "bit_errors": wm.bit_errors,
            },
            "c2pa": self.c2pa.to_dict(),
            "record": self.record,
            "matches_record": self.matches_record,
            "notes": self.notes,
        }


def inspect_file(path: str | Path, *, config: WatermarkConfig | None = None, trust_anchors: str | None = None) -> DetectReport:
    """Detect the watermark, verify C2PA and read the provenance record of ``path``."""
    path = Path(path)
    if not path.is_file():
        raise VideoIOError(f"no such file: '{path}'")
    c2pa = verify_file(path, trust_anchors) if path.suffix.lower() in MIME_TYPES else C2paReport(present=False)
    try:
        detection = detect_watermark(read_video(path).frames, config)
        decode_error = None
    except VideoIOError as e:  # a damaged file: still report its C2PA manifest (tampering), if any
        if not c2pa.present:
            raise
        detection = Detection(present=False, payload=None, score=0.0, confidence=0.0, scale=1.0, shift=(0, 0), bit_errors=0, crc_ok=False)
        decode_error = str(e)
    report = DetectReport(path=str(path), watermark=detection, c2pa=c2pa)
    if decode_error is not None:
        report.notes.append(f"frames could not be decoded, watermark not checked: {decode_error}")
    if path.suffix.lower() not in MIME_TYPES:
        report.notes.append(f"C2PA is not checked for {path.suffix} files")
    report.record = load_record(path)
    if report.record is not None and detection.payload is not None:
        expected = Payload.from_ids(str(report.record.get("model_id")), str(report.record.get("generation_id")))
        report.matches_record = expected == detection.payload
    return report


def format_report(report: DetectReport) -> str:
    """Human-readable lines for the terminal."""
    wm, c = report.watermark, report.c2pa
    lines = [f"{report.path}: {report.verdict}"]
    if wm.present and wm.payload is not None:
        lines.append(
            f"  watermark: present, payload {wm.payload.hex()} (model tag {wm.payload.model_tag:04x}, "
            f"generation tag {wm.payload.generation_tag:06x}), confidence {wm.confidence:.4f}"
        )
    else:
        lines.append(f"  watermark: not found (best score {wm.score:.2f})")
    if not c.present:
        lines.append("  C2PA: no manifest")
    else:
        status = "valid" if c.valid else "INVALID (modified after signing)"
        trust = "trusted signer" if c.trusted else "signer not in trust anchors"
        lines.append(f"  C2PA: {status}, {trust}, state {c.state}" + (", declares trainedAlgorithmicMedia" if c.ai_generated else ""))
        if c.generation:
            lines.append(f"    model {c.generation.get('model_id')}, generation {c.generation.get('generation_id')}, prompt sha256 {str(c.generation.get('prompt_sha256'))[:16]}...")
        for failure in c.failures:
            lines.append(f"    failure: {failure}")
    if report.record is not None:
        match = {True: "matches the watermark", False: "does NOT match the watermark", None: "watermark absent"}[report.matches_record]
        lines.append(f"  record: generation {report.record.get('generation_id')} by {report.record.get('model_id')} ({match})")
    lines.extend(f"  note: {n}" for n in report.notes)
    return "\n".join(lines)
