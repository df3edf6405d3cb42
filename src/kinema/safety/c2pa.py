"""C2PA content credentials for Kinema outputs (MP4, PNG, GIF) with the ``c2pa-python`` package.

Each output gets a signed manifest with:

* ``c2pa.actions``: a ``c2pa.created`` action whose ``digitalSourceType`` is IPTC's
  ``trainedAlgorithmicMedia`` (the media was made by a trained model) and the software agent;
* ``org.kinema.generation``: the model id, the generation id, the sha256 of the prompt (not the
  prompt itself), the generation parameters (minus the prompt text) and the watermark payload.

Signing uses ES256 with a local certificate chain. On first use ``ensure_credentials`` creates a
CA and a signing certificate in ``$KINEMA_C2PA_DIR`` or ``$XDG_CONFIG_HOME/kinema/c2pa``
(default ``~/.config/kinema/c2pa``)::

    ca.pem        self-signed root (trust anchor for verification)
    ca.key        its private key (kept to re-issue the signer; 0600)
    signer.pem    signing certificate followed by its chain (leaf first)
    signer.key    the signer's private key, PKCS#8 PEM (0600)

To use your own credentials put ``signer.pem`` (leaf + intermediates, PEM) and ``signer.key``
(ES256 / P-256 private key, PKCS#8 PEM) there, and your root in ``ca.pem``; nothing is generated
when ``signer.pem`` and ``signer.key`` exist. Verification (``verify_file``) trusts ``ca.pem`` of
that folder; a certificate not chaining to it reads as "valid but untrusted".
"""

from __future__ import annotations

import datetime
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from kinema import __version__
from kinema.errors import InvalidInputError, KinemaError

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
GENERATION_LABEL = "org.kinema.generation"
MIME_TYPES: dict[str, str] = {".mp4": "video/mp4", ".png": "image/png", ".gif": "image/gif"}


class C2paSigningError(KinemaError):
    """Signing a file with C2PA content credentials failed (names the file and the reason)."""


def credentials_dir() -> Path:
    """``$KINEMA_C2PA_DIR``, else ``$XDG_CONFIG_HOME/kinema/c2pa``, else ``~/.config/kinema/c2pa``."""
    env = os.environ.get("KINEMA_C2PA_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "kinema" / "c2pa"


@dataclass(frozen=True)
class Credentials:
    """PEM text of the signing chain (leaf first), its private key and the trust anchor."""

    chain_pem: str
    key_pem: str
    anchor_pem: str
    folder: Path


def ensure_credentials(folder: str | Path | None = None) -> Credentials:
    """Load the signing credentials in ``folder``, creating a local CA + ES256 signer if absent."""
    folder = Path(folder) if folder is not None else credentials_dir()
    chain, key, anchor = folder / "signer.pem", folder / "signer.key", folder / "ca.pem"
    if not (chain.is_file() and key.is_file()):
        _create_local_chain(folder)
    anchor_pem = anchor.read_text() if anchor.is_file() else ""
    return Credentials(chain_pem=chain.read_text(), key_pem=key.read_text(), anchor_pem=anchor_pem, folder=folder)


def _create_local_chain(folder: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common: str) -> x509.Name:
        return x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, common),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kinema (local, self-issued)"),
        ])

    def usage(sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=sign, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False,
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("Kinema local CA")).issuer_name(name("Kinema local CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(False, True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(name("Kinema local signer")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(True, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def pem(cert: x509.Certificate) -> str:
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    def private(k: ec.EllipticCurvePrivateKey) -> str:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()

    _write(folder / "ca.pem", pem(ca), 0o644)
    _write(folder / "ca.key", private(ca_key), 0o600)
    _write(folder / "signer.key", private(key), 0o600)
    _write(folder / "signer.pem", pem(leaf) + pem(ca), 0o644)  # written last: its presence means "complete"


def _write(path: Path, text: str, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def build_manifest(*, title: str, model_id: str, generation: dict[str, object]) -> dict[str, object]:
    """The manifest definition (``c2pa`` JSON) for one Kinema output."""
    return {
        "claim_generator_info": [{"name": "kinema", "version": __version__}],
        "title": title,
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [{
                        "action": "c2pa.created",
                        "digitalSourceType": DIGITAL_SOURCE_TYPE,
                        "softwareAgent": {"name": "kinema", "version": __version__},
                        "parameters": {"description": f"generated by the Kinema model '{model_id}'"},
                    }]
                },
            },
            {"label": GENERATION_LABEL, "data": generation},
        ],
    }


def sign_file(path: str | Path, manifest: dict[str, object], credentials: Credentials | None = None) -> Path:
    """Embed a signed manifest into ``path`` (.mp4, .png, .gif) in place (temp file + rename)."""
    import c2pa

    path = Path(path)
    mime = MIME_TYPES.get(path.suffix.lower())
    if mime is None:
        raise InvalidInputError(
            f"cannot add C2PA credentials to '{path.name}': type '{path.suffix}' not supported; use one of {sorted(MIME_TYPES)}"
        )
    creds = credentials or ensure_credentials()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, creds.chain_pem.encode(), creds.key_pem.encode(), None)
        with c2pa.Signer.from_info(info) as signer, c2pa.Builder(json.dumps(manifest)) as builder:
            with path.open("rb") as source, tmp.open("w+b") as dest:
                builder.sign(signer, mime, source, dest)
        os.replace(tmp, path)
    except Exception as e:
        tmp.unlink(missing_ok=True)
        raise C2paSigningError(f"could not sign '{path}' with C2PA credentials from {creds.folder}: {e}") from e
    return path


@dataclass
class C2paReport:
    """What ``verify_file`` found.

    Attributes:
        present: a C2PA manifest is embedded.
        valid: the signature and every hash check out (the file was not modified after signing).
        trusted: the signing certificate chains to a trust anchor (``ca.pem``).
        state: the SDK's validation state (``Trusted``, ``Valid``, ``Invalid``) or ``absent``.
        failures: failure codes with explanations (e.g. ``assertion.bmffHash.mismatch``).
        generation: the ``org.kinema.generation`` assertion, when present.
        ai_generated: the manifest declares ``trainedAlgorithmicMedia``.
    """

    present: bool
    valid: bool = False
    trusted: bool = False
    state: str = "absent"
    failures: list[str] = field(default_factory=list)
    generation: dict[str, object] | None = None
    ai_generated: bool = False
    signer: str | None = None

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def verify_file(path: str | Path, trust_anchors: str | None = None) -> C2paReport:
    """Read and validate the C2PA manifest of ``path``; ``trust_anchors``: PEM roots (default: local ca.pem)."""
    import c2pa

    path = Path(path)
    if trust_anchors is None:
        anchor = credentials_dir() / "ca.pem"
        trust_anchors = anchor.read_text() if anchor.is_file() else None
    settings = {"verify": {"verify_trust": True}}
    if trust_anchors:
        settings["trust"] = {"user_anchors": trust_anchors}
    try:
        with c2pa.Context(c2pa.Settings.from_dict(settings)) as context:
            with path.open("rb") as handle:
                data = handle.read()
            mime = MIME_TYPES.get(path.suffix.lower())
            with c2pa.Reader(mime, io.BytesIO(data), context=context) as reader:
                state = reader.get_validation_state() or "unknown"
                results = reader.get_validation_results() or {}
                manifest = reader.get_active_manifest() or {}
    except Exception as e:  # no manifest (ManifestNotFound) or an unreadable one
        text = str(e)
        if "ManifestNotFound" in type(e).__name__ or "no JUMBF" in text or "not found" in text.lower():
            return C2paReport(present=False)
        return C2paReport(present=True, state="Invalid", failures=[f"unreadable manifest: {text}"])
    active = results.get("activeManifest", {}) if isinstance(results, dict) else {}
    failures = [f"{f.get('code')}: {f.get('explanation', '')}" for f in active.get("failure", [])]
    codes = [f.get("code", "") for f in active.get("failure", [])]
    report = C2paReport(present=True, state=state, failures=failures)
    report.trusted = state == "Trusted"
    untrusted_only = all(c.startswith("signingCredential.untrusted") for c in codes)
    report.valid = state in ("Valid", "Trusted") or (bool(codes) and untrusted_only)
    for assertion in manifest.get("assertions", []):
        if assertion.get("label") == GENERATION_LABEL:
            report.generation = assertion.get("data")
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            actions = assertion.get("data", {}).get("actions", [])
            report.ai_generated |= any(a.get("digitalSourceType") == DIGITAL_SOURCE_TYPE for a in actions)
    info = manifest.get("signature_info") or {}
    report.signer = info.get("common_name") or info.get("issuer")
    return report
