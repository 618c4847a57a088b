"""Content-addressed artifact files (root/ab/abcdef..., by sha256), written atomically and indexed in the store.

A step output or job input refers to an artifact as {"artifact": sha256, "media_type": ..., "name": ...}.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import InvalidRequestError, NotFoundError
from ..storage import write_atomic
from .store import PipelineStore

_SHA = re.compile(r"^[0-9a-f]{64}$")
_MAGIC = (  # (prefix, media type) for sniffing bytes that came without a name
    (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"),
    (b"%PDF-", "application/pdf"), (b"OggS", "audio/ogg"), (b"fLaC", "audio/flac"), (b"ID3", "audio/mpeg"),
)


@dataclass(frozen=True)
class Artifact:
    sha256: str
    media_type: str
    size: int
    name: str | None
    created: float

    def ref(self) -> dict[str, Any]:
        return {"artifact": self.sha256, "media_type": self.media_type, "name": self.name}


def is_ref(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("artifact"), str)


def guess_media_type(data: bytes, name: str | None = None) -> str:
    """From the file name's suffix, else from the first bytes; application/octet-stream when unknown."""
    if name:
        suffix = Path(name).suffix.lower()
        known = {".md": "text/markdown", ".markdown": "text/markdown", ".wav": "audio/wav",
                 ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}
        guessed = known.get(suffix) or mimetypes.guess_type(name)[0]
        if guessed:
            return guessed
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    for prefix, media_type in _MAGIC:
        if data.startswith(prefix):
            return media_type
    return "application/octet-stream"


class ArtifactStore:
    def __init__(self, root: Path, store: PipelineStore) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.store = store

    def put(self, data: bytes, media_type: str | None = None, name: str | None = None,
            job_id: str | None = None) -> Artifact:
        """Store `data` once (same bytes, same file) and index it; `job_id` links it to a run."""
        if not isinstance(data, bytes | bytearray):
            raise InvalidRequestError("an artifact must be bytes", param="data")
        data = bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        path = self._file(sha)
        if not (path.is_file() and path.stat().st_size == len(data)):
            write_atomic(path, data)
        row = self.store.index_artifact(sha, media_type or guess_media_type(data, name), len(data), name, job_id)
        return Artifact(**row)

    def put_file(self, path: Path, media_type: str | None = None, job_id: str | None = None) -> Artifact:
        path = Path(path).expanduser()
        if not path.is_file():
            raise InvalidRequestError(f"no file at {path}", param="path")
        data = path.read_bytes()
        return self.put(data, media_type or guess_media_type(data, path.name), path.name, job_id)

    def get(self, sha256: str | dict[str, Any]) -> Artifact:
        sha = self._sha(sha256)
        row = self.store.artifact(sha)
        if row is None or not self._file(sha).is_file():
            raise NotFoundError(f"no artifact '{sha}'", param="artifact")
        return Artifact(**row)

    def path(self, sha256: str | dict[str, Any]) -> Path:
        return self._file(self.get(sha256).sha256)

    def open(self, sha256: str | dict[str, Any]) -> IO[bytes]:
        return self.path(sha256).open("rb")

    def read(self, sha256: str | dict[str, Any]) -> bytes:
        return self.path(sha256).read_bytes()

    def _file(self, sha: str) -> Path:
        return self.root / sha[:2] / sha

    @staticmethod
    def _sha(value: str | dict[str, Any]) -> str:
        """The sha256 of a reference or an id; anything else (a path, say) is refused."""
        sha = value.get("artifact") if isinstance(value, dict) else value
        if not isinstance(sha, str) or not _SHA.match(sha):
            raise InvalidRequestError(f"not an artifact id: {sha!r} (64 lowercase hex digits)", param="artifact")
        return sha
