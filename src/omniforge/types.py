"""Internal request and result shapes shared by backends, the runtime and the service layer.

These are plain dataclasses, independent of any wire format: the server translates OpenAI's
JSON to and from them, the CLI and Python API build them directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "length"]


@dataclass
class Message:
    """One chat turn: text, plus the images (encoded bytes: PNG, JPEG, ...) and audio clips
    (encoded bytes in any container) attached to it, in order of appearance."""

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str
    images: list[bytes] = field(default_factory=list)
    audio: list[bytes] = field(default_factory=list)


@dataclass
class GenerationParams:
    """Sampling and constraint options for one text generation."""

    max_tokens: int | None = None  # None: up to the end of the context window
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    # Constrained output: {"type": "json_object"} or {"type": "json_schema", "schema": {...}}
    response_format: dict[str, Any] | None = None
    watermark: bool = False  # bias sampling toward a keyed green list (governance/textmark.py)


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class TextDelta:
    """A piece of streamed text. The last delta of a stream carries finish_reason and usage."""

    text: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None


@dataclass
class TextResult:
    text: str
    finish_reason: FinishReason
    usage: Usage


@dataclass
class Word:
    word: str
    start: float
    end: float
    probability: float | None = None


@dataclass
class Segment:
    id: int
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    seek: int | None = None  # decoder window offset, in 10 ms mel frames
    tokens: list[int] = field(default_factory=list)
    temperature: float = 0.0  # the decoding temperature that produced this segment
    compression_ratio: float | None = None


@dataclass
class Transcript:
    text: str
    language: str
    duration: float  # seconds of audio
    segments: list[Segment] = field(default_factory=list)


@dataclass
class EmbeddingResult:
    vectors: list[list[float]]
    prompt_tokens: int


ProgressFn = Callable[[int, int], None]  # (steps done, steps in all); called from the worker thread


@dataclass
class ImageParams:
    """One image request: text-to-image, or with `image` (image-to-image) and `mask` (inpainting:
    white pixels are repainted). Backends fill in their own defaults for the None fields."""

    prompt: str
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    quality: str | None = None  # OpenAI's low / medium / high (also standard / hd): scales steps
    guidance: float | None = None
    seed: int | None = None
    scheduler: str | None = None  # a diffusers scheduler class name, e.g. "EulerDiscreteScheduler"
    n: int = 1
    strength: float = 0.8  # image-to-image / inpainting: how much of the input is repainted
    image: Any = None  # PIL.Image.Image (RGB) or None
    mask: Any = None  # PIL.Image.Image (L) or None


@dataclass
class ImageResult:
    images: list[Any]  # PIL.Image.Image, RGB, at the requested size
    seed: int  # the seed of the first image; image i used seed + i
    steps: int


@dataclass
class VideoParams:
    prompt: str
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    seconds: float | None = None  # wanted duration; backends round to whole frames
    fps: int | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int | None = None
    image: Any = None  # image-to-video: the first frame (PIL.Image.Image) or None


@dataclass
class VideoResult:
    """An encoded MP4 (H.264, with an AAC voice-over track when the backend speaks)."""

    mp4: bytes
    width: int
    height: int
    seconds: float
    has_audio: bool = False
    narration: list[str] | None = None  # what the voice-over says, scene by scene (narrating backends)
