"""Provenance of generated media: a signed C2PA manifest (model, software, AI-generated) and an
invisible image watermark, written by `label` and read back by `verify`.

The manifest is signed with ES256 by the user's certificate (settings `provenance_cert`, a PEM
chain starting with the signing certificate, and `provenance_key`), or else by a local one made on
first use under <home>/provenance/: a local CA and a signing certificate it issued (extended key
usage emailProtection, as C2PA requires), the key readable by the owner only. The local CA's key
is not kept. `verify` trusts the local CA and any PEM in setting `provenance_trust_anchors`, so
"trusted" means "signed by this installation (or an anchor you named)"; "valid" means the signature
and every hash check pass whoever signed.

The watermark (invisible-watermark's dwtDctSvd) carries 8 bytes: b"OMNF" + the first 4 bytes of
sha256(model id). On images of 512x512 or more it is embedded at half the image's resolution and
upsampled, so it lives in the low frequencies that survive JPEG and downscaling; smaller images
get it at full resolution; images under 256x256 (the library's minimum) get none. `verify` looks
for it at 1x, 0.5x and 2x the file's size. bench/watermark.py measures the detection rates.

c2pa, cv2 and imwatermark are imported inside the functions that use them.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import InvalidRequestError, MissingDependencyError

__all__ = ["DIGITAL_SOURCE_TYPE", "SUPPORTED_TYPES", "label", "sniff_media_type", "verify", "watermark_payload"]

log = logging.getLogger(__name__)

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
GENERATION_LABEL = "org.omniforge.generation"  # our assertion: model id and prompt hash
MAGIC = b"OMNF"
WM_METHOD = "dwtDctSvd"
WM_SCALES = [0, 60, 0]  # embedding strength per YUV channel (U only); the library default 36 lost "both" (bench)
WM_MIN_PIXELS = 256 * 256  # invisible-watermark refuses smaller images
WM_BASE = 2  # the watermark is embedded at 1/WM_BASE of the image's resolution
SUPPORTED_TYPES = {  # what we label -> the MIME type c2pa is told
    "image/png": "image/png", "image/jpeg": "image/jpeg", "image/webp": "image/webp",
    "audio/wav": "audio/wav", "audio/x-wav": "audio/wav", "audio/wave": "audio/wav", "audio/mpeg": "audio/mpeg",
    "audio/mp3": "audio/mpeg", "audio/flac": "audio/flac", "audio/mp4": "audio/mp4", "video/mp4": "video/mp4",
}
_IMAGE_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
_INSTALL = "pip install c2pa-python invisible-watermark"


# -- media types -----------------------------------------------------------------------------------


def sniff_media_type(data: bytes) -> str | None:
    """The MIME type of a file from its first bytes, for the types `label` writes."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] == b"fLaC":
        return "audio/flac"
    if head[4:8] == b"ftyp":
        return "audio/mp4" if head[8:11] == b"M4A" else "video/mp4"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    return None


# -- signing credentials ---------------------------------------------------------------------------


def _import_c2pa() -> Any:
    try:
        import c2pa
    except ImportError as exc:
        raise MissingDependencyError(f"provenance labels need c2pa-python: {_INSTALL}") from exc
    return c2pa


def _setting_path(settings: Any, name: str) -> Path | None:
    value = getattr(settings, name, None) if settings is not None else None
    return Path(value).expanduser() if value else None


def _local_dir(settings: Any) -> Path:
    return Path(settings.home) / "provenance"


def _make_local(target: Path) -> None:
    """A local CA and a signing certificate it issued, written atomically into `target`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    host = os.uname().nodename if hasattr(os, "uname") else "local"

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"omniforge on {host}")])

    def usage(**on: bool) -> x509.KeyUsage:
        flags = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                               "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"), False)
        return x509.KeyUsage(**{**flags, **on})

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("omniforge local CA")).issuer_name(name("omniforge local CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(usage(key_cert_sign=True, crl_sign=True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(name("omniforge signer")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (target / "ca.pem").write_bytes(ca.public_bytes(pem))
    (target / "signer.pem").write_bytes(cert.public_bytes(pem) + ca.public_bytes(pem))
    fd = os.open(target / "signer.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def _ensure_local(settings: Any) -> Path:
    """<home>/provenance with ca.pem, signer.pem and signer.key, made on first use."""
    folder = _local_dir(settings)
    if (folder / "signer.key").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".provenance-", dir=folder.parent))
    try:
        _make_local(tmp)
        os.rename(tmp, folder)  # atomic; fails if another process made it first
        log.info("made a local provenance signing certificate in %s", folder)
    except OSError:
        if not (folder / "signer.key").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def signing_credentials(settings: Any) -> tuple[bytes, bytes]:
    """(PEM certificate chain, PEM private key) to sign with: the user's, or the local ones."""
    cert, key = _setting_path(settings, "provenance_cert"), _setting_path(settings, "provenance_key")
    if bool(cert) != bool(key):
        missing = "provenance_key" if cert else "provenance_cert"
        raise InvalidRequestError(f"provenance_cert and provenance_key go together: set {missing} too", param=missing)
    if cert is None:
        folder = _ensure_local(settings)
        cert, key = folder / "signer.pem", folder / "signer.key"
    for setting, path in (("provenance_cert", cert), ("provenance_key", key)):
        if not path.is_file():
            raise InvalidRequestError(f"{setting}: no file at {path}", param=setting)
    return cert.read_bytes(), key.read_bytes()


def _trust_anchors(settings: Any) -> str:
    anchors = []
    if settings is not None:
        local = _local_dir(settings) / "ca.pem"
        if local.is_file():
            anchors.append(local.read_text())
        extra = _setting_path(settings, "provenance_trust_anchors")
        if extra is not None and extra.is_file():
            anchors.append(extra.read_text())
    return "".join(anchors)


# -- watermark -------------------------------------------------------------------------------------


def watermark_payload(model_id: str) -> bytes:
    """The 8 bytes an image by `model_id` carries: b"OMNF" and 4 bytes of sha256(model id)."""
    return MAGIC + hashlib.sha256(model_id.encode()).digest()[:4]


def _import_wm() -> tuple[Any, Any]:
    try:
        import cv2
        import imwatermark
    except ImportError as exc:
        raise MissingDependencyError(f"image watermarks need invisible-watermark and opencv: {_INSTALL}") from exc
    return cv2, imwatermark


def embed_watermark(img: Any, payload: bytes, base: int | None = None) -> Any:
    """`img` (PIL RGB) with `payload` embedded at 1/`base` of its resolution (default: half when
    that is still 256x256 or more, else full); unchanged when too small to carry it."""
    import numpy as np
    from PIL import Image

    cv2, imwatermark = _import_wm()
    if base is None:
        base = WM_BASE if (img.width // WM_BASE) * (img.height // WM_BASE) >= WM_MIN_PIXELS else 1
    w, h = img.width // base, img.height // base
    if w * h < WM_MIN_PIXELS:
        log.debug("image %dx%d too small for a watermark at 1/%d scale", img.width, img.height, base)
        return img
    small = img.resize((w, h), Image.Resampling.BICUBIC) if base > 1 else img
    encoder = imwatermark.WatermarkEncoder()
    encoder.set_watermark("bytes", payload)
    marked = encoder.encode(cv2.cvtColor(np.asarray(small), cv2.COLOR_RGB2BGR), WM_METHOD, scales=WM_SCALES)
    residual = cv2.cvtColor(marked, cv2.COLOR_BGR2RGB).astype(np.float32) - np.asarray(small, dtype=np.float32)
    if base > 1:
        residual = cv2.resize(residual, img.size, interpolation=cv2.INTER_CUBIC)
    out = np.asarray(img, dtype=np.float32) + residual
    return Image.fromarray(np.clip(out, 0, 255).round().astype(np.uint8))


def detect_watermark(img: Any, length: int = 8) -> bytes | None:
    """The payload found in `img` (PIL), trying 1x, 0.5x and 2x its size; None if none starts with OMNF."""
    import numpy as np
    from PIL import Image

    cv2, imwatermark = _import_wm()
    img = img.convert("RGB")
    decoder = imwatermark.WatermarkDecoder("bytes", length * 8)
    for k in (1.0, 0.5, 2.0):
        size = (round(img.width * k), round(img.height * k))
        if size[0] * size[1] < WM_MIN_PIXELS or max(size) > 8192:
            continue
        candidate = img if k == 1.0 else img.resize(size, Image.Resampling.BICUBIC)
        found = decoder.decode(cv2.cvtColor(np.asarray(candidate), cv2.COLOR_RGB2BGR), WM_METHOD, scales=WM_SCALES)
        if found[:4] == MAGIC:
            return bytes(found)
    return None


def _watermark_image(data: bytes, media_type: str, model_id: str) -> bytes:
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img.load()
    alpha = img.getchannel("A") if "A" in img.getbands() else None
    marked = embed_watermark(img.convert("RGB"), watermark_payload(model_id))
    if alpha is not None:
        marked.putalpha(alpha)
    out = io.BytesIO()
    fmt = _IMAGE_FORMATS[media_type]
    options = {"quality": 95} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    marked.save(out, fmt, **options)
    return out.getvalue()


# -- label -----------------------------------------------------------------------------------------


def _manifest(model_id: str, prompt_hash: str | None) -> dict[str, Any]:
    agent = {"name": "omniforge", "version": __version__}
    return {
        "claim_generator_info": [agent],
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": [{
                "action": "c2pa.created", "digitalSourceType": DIGITAL_SOURCE_TYPE, "softwareAgent": agent,
                "parameters": {"model": model_id},
            }]}},
            {"label": GENERATION_LABEL, "data": {"model": model_id, "prompt_sha256": prompt_hash}},
        ],
    }


def label(data: bytes, media_type: str, model_id: str, settings: Any, *, prompt_hash: str | None = None) -> bytes:
    """`data` with a signed C2PA manifest (and, for images, the watermark first).

    Types c2pa cannot carry (see SUPPORTED_TYPES) come back unchanged. `prompt_hash` is a hex
    digest of the prompt, recorded instead of the prompt itself.
    """
    kind = (media_type or "").split(";")[0].strip().lower()
    if kind not in SUPPORTED_TYPES:
        log.debug("no provenance label for %s: c2pa cannot carry it here", media_type)
        return data
    c2pa = _import_c2pa()
    if kind in _IMAGE_FORMATS:
        data = _watermark_image(data, kind, model_id)
    chain, key = signing_credentials(settings)
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key, None))
    context = c2pa.Context(c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}}))
    out = io.BytesIO()
    with c2pa.Builder(_manifest(model_id, prompt_hash), context=context) as builder:
        builder.sign(signer, SUPPORTED_TYPES[kind], io.BytesIO(data), out)
    return out.getvalue()


# -- verify ----------------------------------------------------------------------------------------


def _read_manifest(c2pa: Any, data: bytes, kind: str | None, settings: Any) -> tuple[dict | None, str | None, list]:
    """(active manifest, validation state, failure codes); (None, None, []) when there is none."""
    config: dict[str, Any] = {"verify": {"verify_trust": True}}
    anchors = _trust_anchors(settings)
    if anchors:
        config["trust"] = {"user_anchors": anchors}
    context = c2pa.Context(c2pa.Settings.from_dict(config))
    try:
        with c2pa.Reader(SUPPORTED_TYPES.get(kind or "", kind), io.BytesIO(data), context=context) as reader:
            manifest = reader.get_active_manifest()
            state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
    except c2pa.C2paError as exc:
        if "ManifestNotFound" in type(exc).__name__ or "no JUMBF" in str(exc):
            return None, None, []
        return None, "Invalid", [{"code": "manifest.unreadable", "explanation": str(exc)}]
    failures = (results.get("activeManifest") or {}).get("failure", [])
    return manifest, state, [{"code": f.get("code"), "explanation": f.get("explanation")} for f in failures]


def _assertion(manifest: dict, label_: str) -> dict:
    for item in manifest.get("assertions", []):
        if item.get("label") == label_:
            return item.get("data") or {}
    return {}


def verify(data: bytes, media_type: str | None = None, settings: Any = None) -> dict[str, Any]:
    """What a file says about its origin: C2PA manifest (validity, signer, generator, model,
    digital source type) and, for images, the watermark."""
    kind = (media_type or "").split(";")[0].strip().lower() or sniff_media_type(data)
    c2pa = _import_c2pa()
    manifest, state, failures = _read_manifest(c2pa, data, kind, settings)
    report: dict[str, Any] = {
        "media_type": kind, "manifest": manifest is not None, "valid": state in ("Valid", "Trusted"),
        "trusted": state == "Trusted", "state": state,
        "failures": [f for f in failures if f["code"] != "signingCredential.untrusted"],
        "signer": None, "claim_generator": None, "model": None, "digital_source_type": None,
        "ai_generated": False, "prompt_sha256": None, "watermark": None,
    }
    if manifest:
        sig = manifest.get("signature_info") or {}
        report["signer"] = {"common_name": sig.get("common_name"), "issuer": sig.get("issuer"), "alg": sig.get("alg")}
        gen = (manifest.get("claim_generator_info") or [{}])[0]
        report["claim_generator"] = " ".join(str(gen[k]) for k in ("name", "version") if gen.get(k)) or None
        actions = _assertion(manifest, "c2pa.actions.v2").get("actions") or _assertion(manifest, "c2pa.actions").get(
            "actions") or []
        created = next((a for a in actions if a.get("action") == "c2pa.created"), {})
        ours = _assertion(manifest, GENERATION_LABEL)
        report["model"] = ours.get("model") or (created.get("parameters") or {}).get("model")
        report["prompt_sha256"] = ours.get("prompt_sha256")
        report["digital_source_type"] = created.get("digitalSourceType")
        report["ai_generated"] = report["digital_source_type"] == DIGITAL_SOURCE_TYPE
    if kind in _IMAGE_FORMATS:
        report["watermark"] = _verify_watermark(data, report["model"])
    return report


def _verify_watermark(data: bytes, model: str | None) -> dict[str, Any]:
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError) as exc:
        return {"found": False, "error": f"not a readable image: {exc}"}
    payload = detect_watermark(img)
    if payload is None:
        return {"found": False, "model_hash": None, "model_match": None}
    expected = watermark_payload(model)[4:] if model else None
    return {"found": True, "model_hash": payload[4:].hex(),
            "model_match": None if expected is None else payload[4:] == expected}
