"""Measured cost profiles: how many seconds a model needs per unit of work on this machine, stored with the hardware.

A profile holds `rates`, seconds per unit, under these keys (a model has the ones of its modality):
    s_per_1k_input_tokens    text, embedding: reading the prompt / the inputs
    s_per_1k_output_tokens   text: generating
    s_per_audio_second       speech: synthesizing one second of audio; transcription: reading one
    s_per_image              image: one image at `reference` size and steps; vision: one analysis
    s_per_video_second       video: one second of finished video
plus `reference` (the image size and steps the image rate was measured at), `load_seconds` and
`memory_mb`. Profiles live in <home>/profiles/<model>.json, written by `omniforge profile`.
A model without a profile gets a rough estimate from its weights' size, marked unmeasured.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError
from ..storage import write_atomic

if TYPE_CHECKING:
    from ..catalog.spec import ModelSpec

RATE_KEYS = ("s_per_1k_input_tokens", "s_per_1k_output_tokens", "s_per_audio_second", "s_per_image",
             "s_per_video_second")


def hardware(threads: int | None = None) -> dict[str, Any]:
    """What this machine is: CPU model and cores, memory, GPUs (none here), the engine thread setting."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        import psutil

        memory_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # psutil missing or restricted
        pass
    gpus: list[str] = []
    try:
        import torch

        if torch.cuda.is_available():
            gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # torch missing: no GPU we could use anyway
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": memory_gb, "gpus": gpus, "threads": threads,
            "system": f"{platform.system()} {platform.release()}"}


@dataclass
class Profile:
    model: str
    modality: str
    rates: dict[str, float] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)  # e.g. {"size": "256x256", "steps": 20}
    load_seconds: float = 0.0
    memory_mb: float = 0.0
    hardware: dict[str, Any] = field(default_factory=dict)
    measured_at: float = field(default_factory=time.time)
    measured: bool = True  # False: a guess from the weights' size (no `omniforge profile` run yet)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown or "model" not in data or "modality" not in data:
            raise InvalidRequestError(f"not a profile: unknown field(s) {sorted(unknown)} or no model/modality",
                                      param="profile")
        bad = [k for k in data.get("rates", {}) if k not in RATE_KEYS]
        if bad:
            raise InvalidRequestError(f"profile of {data['model']}: unknown rate(s) {', '.join(bad)}", param="rates")
        return cls(**data)

    def estimate(self, *, input_tokens: int = 0, output_tokens: int = 0, audio_seconds: float = 0.0,
                 images: int = 0, pixels: int | None = None, steps: int | None = None,
                 video_seconds: float = 0.0) -> float:
        """Seconds of compute for a request of these quantities. Image time scales with pixels x steps
        relative to the reference it was measured at."""
        r = self.rates
        seconds = (input_tokens / 1000 * r.get("s_per_1k_input_tokens", 0.0)
                   + output_tokens / 1000 * r.get("s_per_1k_output_tokens", 0.0)
                   + audio_seconds * r.get("s_per_audio_second", 0.0)
                   + video_seconds * r.get("s_per_video_second", 0.0))
        if images:
            scale = 1.0
            ref_size, ref_steps = self.reference.get("size"), self.reference.get("steps")
            if pixels and ref_size:
                w, h = (int(v) for v in str(ref_size).split("x"))
                scale *= pixels / (w * h)
            if steps and ref_steps:
                scale *= steps / int(ref_steps)
            seconds += images * r.get("s_per_image", 0.0) * scale
        return seconds


def profiles_dir(home: Path) -> Path:
    return Path(home) / "profiles"


def save_profile(home: Path, profile: Profile) -> Path:
    path = profiles_dir(home) / f"{profile.model}.json"
    write_atomic(path, (json.dumps(profile.to_dict(), indent=1) + "\n").encode())
    return path


def load_profile(home: Path, model_id: str) -> Profile | None:
    path = profiles_dir(home) / f"{model_id}.json"
    if not path.is_file():
        return None
    try:
        return Profile.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise InvalidRequestError(f"profile file {path} is unreadable ({exc}); run `omniforge profile "
                                  f"{model_id}` again", param="profile") from None


# Rough per-byte rates for a model nobody profiled yet: a 2-core CPU, weights size as the proxy.
_GUESS_PER_GB = {"s_per_1k_input_tokens": 4.0, "s_per_1k_output_tokens": 40.0, "s_per_audio_second": 0.5,
                 "s_per_image": 10.0, "s_per_video_second": 5.0}
_GUESS_KEYS = {"text": ("s_per_1k_input_tokens", "s_per_1k_output_tokens"), "embedding": ("s_per_1k_input_tokens",),
               "speech": ("s_per_audio_second",), "transcription": ("s_per_audio_second",),
               "image": ("s_per_image",), "vision": ("s_per_image",), "video": ("s_per_video_second",)}


def _weights_bytes(spec: ModelSpec, max_entries: int = 2000) -> int:
    """The weights' size, cheaply: a packaged model's recorded size, a file's, or a folder's first
    two levels (bounded: a guess must never walk a whole disk)."""
    if spec.source.startswith("package:"):
        return int(spec.options.get("size_bytes", 0))
    path, total, seen = Path(spec.source).expanduser(), 0, 0
    try:
        if path.is_file():
            return path.stat().st_size
        for level in (path, *(p for p in (path.iterdir() if path.is_dir() else ()) if p.is_dir())):
            for entry in os.scandir(level):
                seen += 1
                if seen > max_entries:
                    return total
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat().st_size
    except OSError:
        pass
    return total


def guess_profile(spec: ModelSpec) -> Profile:
    """An unmeasured profile from the weights' size (at least 100 MB's worth): better than nothing, said so."""
    gb = max(0.1, _weights_bytes(spec) / 1e9)
    rates = {k: round(_GUESS_PER_GB[k] * gb, 4) for k in _GUESS_KEYS.get(spec.modality, ())}
    return Profile(spec.id, spec.modality, rates, {"size": "512x512", "steps": 20} if spec.modality == "image" else {},
                   measured=False, notes=[f"not measured: guessed from {gb:.2f} GB of weights; "
                                          f"run `omniforge profile {spec.id}`"])


def profile_of(home: Path, spec: ModelSpec) -> Profile:
    """The measured profile of `spec` on this machine, or a guess marked unmeasured."""
    return load_profile(home, spec.id) or guess_profile(spec)


class ProfileCache:
    """Profiles for the per-request paths (metering, routing): each file read once per version
    (mtime and size), a guess when it is missing, a guess with the reason when it is unreadable."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self._dir = str(profiles_dir(self.home))
        self._entries: dict[str, tuple[ModelSpec, tuple[int, int] | None, Profile]] = {}

    def get(self, spec: ModelSpec) -> Profile:
        try:
            st = os.stat(os.path.join(self._dir, spec.id + ".json"))
            version: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            version = None
        hit = self._entries.get(spec.id)
        if hit is not None and hit[1] == version and (hit[0] is spec or hit[0] == spec):
            return hit[2]
        try:
            profile = profile_of(self.home, spec)
        except InvalidRequestError as exc:  # an unreadable file: guess, and say so
            profile = guess_profile(spec)
            profile.notes.append(exc.message)
        self._entries[spec.id] = (spec, version, profile)  # one dict store: safe across threads
        return profile


__all__ = ["RATE_KEYS", "Profile", "ProfileCache", "guess_profile", "hardware", "load_profile", "profile_of", "profiles_dir",
           "save_profile"]
