"""The registry of step kinds and the built-in ones: each a request to the Service, its binary results stored as artifacts.

A step kind is `fn(service, args, ctx) -> output dict` (JSON-able), with a signature the recipe
loader checks before anything runs: its arguments and their types ("text", "number", "audio",
"image", "video", "document", "any", or alternatives "text|document"; a trailing "?" marks an optional
one) and the fields of its output with theirs. `modality` names the kind of model it needs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError, OmniforgeError
from ..types import GenerationParams, ImageParams, Message, VideoParams
from .artifacts import ArtifactStore, is_ref

if TYPE_CHECKING:
    from ..service import Service

TYPES = ("text", "number", "audio", "image", "video", "document", "any")
BINARY = ("audio", "image", "video", "document")


class JobCancelled(Exception):
    """Raised inside a run when its cancel was requested; the engine marks the job cancelled."""


@dataclass
class StepContext:
    """What a step gets besides the service and its arguments."""

    artifacts: ArtifactStore
    job_id: str
    step: str
    progress: Callable[[float, str | None], None] = lambda fraction, message=None: None
    cancelled: Callable[[], bool] = lambda: False

    def check(self) -> None:
        """Raise JobCancelled if the run's cancel was requested (call it between long pieces of work)."""
        if self.cancelled():
            raise JobCancelled(f"run {self.job_id} was cancelled")

    def read(self, value: Any, arg: str) -> tuple[bytes, str, str | None]:
        """(bytes, media type, name) of the artifact `value` refers to; `arg` names it in errors."""
        if not is_ref(value):
            raise InvalidRequestError(f"argument '{arg}' of step '{self.step}' must be an artifact, "
                                      f"not {type(value).__name__}", param=arg)
        art = self.artifacts.get(value)
        return self.artifacts.read(art.sha256), art.media_type, art.name

    def put(self, data: bytes, media_type: str, name: str | None = None) -> dict[str, Any]:
        """Store a result of this step and return its reference."""
        return self.artifacts.put(data, media_type, name, job_id=self.job_id).ref()


StepFn = Callable[["Service", dict[str, Any], StepContext], dict[str, Any]]


@dataclass(frozen=True)
class StepKind:
    name: str
    fn: StepFn
    params: dict[str, str] = field(default_factory=dict)  # arg -> type ("text", "audio?", ...); empty: any args
    outputs: dict[str, str] = field(default_factory=dict)  # field -> type; empty: any fields
    modality: str | None = None  # the catalog modality it needs ("text", "speech", ...)
    description: str = ""

    def required(self) -> list[str]:
        return [a for a, t in self.params.items() if not t.endswith("?")]


_KINDS: dict[str, StepKind] = {}
_LOCK = threading.Lock()


def register_step(kind: str, fn: StepFn, *, params: dict[str, str] | None = None,
                  outputs: dict[str, str] | None = None, modality: str | None = None,
                  description: str = "", replace: bool = True) -> StepKind:
    """Add (or replace) a step kind; recipes may `uses:` it from then on."""
    for where, sig in (("params", params or {}), ("outputs", outputs or {})):
        for name, typ in sig.items():
            if any(t not in TYPES for t in typ.rstrip("?").split("|")):
                raise InvalidRequestError(f"step kind '{kind}': {where}.{name} has unknown type {typ!r}; "
                                          f"use {', '.join(TYPES)}", param=where)
    step = StepKind(kind, fn, dict(params or {}), dict(outputs or {}), modality, description)
    with _LOCK:
        if kind in _KINDS and not replace:
            raise InvalidRequestError(f"step kind '{kind}' is already registered", param="kind")
        _KINDS[kind] = step
    return step


def get_step(kind: str) -> StepKind:
    with _LOCK:
        step = _KINDS.get(kind)
        known = sorted(_KINDS)
    if step is None:
        raise InvalidRequestError(f"unknown step kind '{kind}'; known: {', '.join(known)}", param="uses")
    return step


def step_kinds() -> dict[str, StepKind]:
    with _LOCK:
        return dict(_KINDS)


def check_available(service: Service, kind: StepKind, step: str, model: Any = None) -> None:
    """Fail clearly when the model a step needs is not there."""
    if kind.modality is None:
        return
    try:
        service.pick(model if isinstance(model, str) else None, kind.modality)
    except OmniforgeError as exc:
        raise type(exc)(f"step '{step}' ({kind.name}) needs a {kind.modality} model, which is not available: "
                        f"{exc.message}", param=f"steps.{step}") from None


# -- built-in kinds ------------------------------------------------------------------------------
def _params(args: dict[str, Any], temperature: float, max_tokens: int) -> GenerationParams:
    return GenerationParams(temperature=float(args.get("temperature", temperature)),
                            max_tokens=int(args.get("max_tokens", max_tokens)),
                            seed=None if args.get("seed") is None else int(args["seed"]))


def transcribe_step(service: Service, args: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    data, _, _ = ctx.read(args["audio"], "audio")
    _, t = service.transcribe(data, args.get("model"), language=args.get("language"), prompt=args.get("prompt"))
    return {"text": t.text.strip(), "language": t.language, "duration": t.duration}


def chat_step(service: Service, args: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    messages = [Message("system", str(args["system"]))] if args.get("system") else []
    for i, shot in enumerate(args.get("examples") or []):  # worked examples: a small model needs them
        if not isinstance(shot, dict) or not isinstance(shot.get("user"), str) or not isinstance(
                shot.get("assistant"), str):
            raise InvalidRequestError(f"step '{ctx.step}': examples[{i}] needs 'user' and 'assistant' text",
                                      param="examples")
        messages += [Message("user", shot["user"]), Message("assistant", shot["assistant"])]
    messages.append(Message("user", str(args["prompt"])))
    result = service.chat(messages, args.get("model"), _params(args, 0.7, 256))[0]
    return {"text": result.text.strip(), "finish_reason": result.finish_reason}


def speak_step(service: Service, args: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    from ..audio.codec import finish_wav

    text = str(args["text"]).strip()
    if not text:
        raise InvalidRequestError(f"step '{ctx.step}' has no text to speak", param="text")
    spec, _, stream = service.speak(text, args.get("model"), args.get("voice"), float(args.get("speed", 1.0)), "wav")
    wav = service.label(finish_wav(b"".join(stream)), "audio/wav", spec.id, text)
    return {"audio": ctx.put(wav, "audio/wav", f"{ctx.step}.wav")}


def describe_step(service: Service, args: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    data, _, _ = ctx.read(args["image"], "image")
    result = service.describe(data, args.get("model"), args.get("prompt"))
    return {"text": result.text.strip()}


def image_size(args: dict[str, Any]) -> tuple[int | None, int | None]:
    """(width, height) from a step's "size" argument ("256x256"), or (None, None) for the model's default."""
    if not args.get("size"):
        return None, None
    try:
        width, height = (int(v) for v in str(args["size"]).lower().split("x"))
    except ValueError:
        raise InvalidRequestError(f"size must look like 256x256, not {args['size']!r}", param="size") from None
    return width, height


def _seed(args: dict[str, Any]) -> int | None:
    return None if args.get("seed") in (None, "") else int(args["seed"])


def image_step(service: Service, args: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    width, height = image_size(args)
    params = ImageParams(prompt=str(args["prompt"]), width=width, height=height, n=int(args.get("n") or 1),
                         steps=None if args.get("steps") is None else int(args["steps"]), seed=_seed(args))
    spec, result = service.generate_image(
        params, args.get("model"), lambda done, total: (ctx.check(), ctx.progress(done / max(total, 1), None)))
    images = []
    for i, picture in enumerate(result.images):
        png = service.encode_image(picture, "png", spec.id, params.prompt)
        images.append(ctx.put(png, "image/png", f"{ctx.step}-{i + 1}.png" if i else f"{ctx.step}.png"))
    return {"image": images[0], "images": images, "seed": result.seed}


def video_step(service: Service, args: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    width, height = image_size(args)
    seconds = args.get("seconds")
    params = VideoParams(prompt=str(args["prompt"]), width=width, height=height, seed=_seed(args),
                         seconds=None if seconds in (None, "") else float(seconds))
    _, result = service.generate_video(params, args.get("model"),
                                       lambda done, total: (ctx.check(), ctx.progress(done / max(total, 1), None)))
    return {"video": ctx.put(result.mp4, "video/mp4", f"{ctx.step}.mp4"), "seconds": round(result.seconds, 3),
            "size": f"{result.width}x{result.height}", "has_audio": result.has_audio,
            "narration": " ".join(result.narration or [])}


def extract_text_step(service: Service, args: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    from .documents import extract_text

    value = args["document"]
    if isinstance(value, str):  # plain text given where a document may be
        return {"text": value.strip(), "format": "text", "chars": len(value.strip())}
    data, media_type, name = ctx.read(value, "document")
    text, fmt = extract_text(data, media_type, name)
    return {"text": text, "format": fmt, "chars": len(text)}


def summarize_step(service: Service, args: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    from .summarize import summarize

    text = args["text"]
    if is_ref(text):
        text = extract_text_step(service, {"document": text}, ctx)["text"]
    chunk = args.get("chunk_tokens")
    return summarize(service, str(text), length=str(args.get("length") or "medium"), style=args.get("style"),
                     model=args.get("model"), chunk_tokens=None if chunk in (None, "") else int(chunk),
                     progress=ctx.progress, check=ctx.check)


_SAMPLING = {"model": "text?", "temperature": "number?", "max_tokens": "number?", "seed": "number?"}
register_step("transcribe", transcribe_step, modality="transcription",
              params={"audio": "audio", "model": "text?", "language": "text?", "prompt": "text?"},
              outputs={"text": "text", "language": "text", "duration": "number"},
              description="speech to text")
register_step("chat", chat_step, modality="text",
              params={"prompt": "text", "system": "text?", "examples": "any?", **_SAMPLING},
              outputs={"text": "text", "finish_reason": "text"}, description="a reply from the chat model")
register_step("speak", speak_step, modality="speech",
              params={"text": "text", "model": "text?", "voice": "text?", "speed": "number?"},
              outputs={"audio": "audio"}, description="text to speech (WAV)")
register_step("describe", describe_step, modality="text", params={"image": "image", "prompt": "text?", "model": "text?"},
              outputs={"text": "text"}, description="a description of an image")
register_step("image", image_step, modality="image",
              params={"prompt": "text", "size": "text?", "n": "number?", "steps": "number?", "seed": "number?",
                      "model": "text?"},
              outputs={"image": "image", "images": "any", "seed": "number"},
              description="text to image (PNG); with n, several (images)")
register_step("video", video_step, modality="video",
              params={"prompt": "text", "seconds": "number?", "size": "text?", "seed": "number?", "model": "text?"},
              outputs={"video": "video", "seconds": "number", "size": "text", "has_audio": "any", "narration": "text"},
              description="text to video (MP4); a narrating model adds voice-over and subtitles")
register_step("extract_text", extract_text_step, params={"document": "document|text"},
              outputs={"text": "text", "format": "text", "chars": "number"},
              description="plain text of a text, Markdown, HTML, DOCX or PDF document")
register_step("summarize", summarize_step, modality="text",
              params={"text": "text|document", "length": "text?", "style": "text?", "model": "text?",
                      "chunk_tokens": "number?"},
              outputs={"text": "text", "chunks": "number", "rounds": "number"},
              description="a map-reduce summary within the chat model's context")


# Step kinds that live in their own modules register themselves on import.
from . import code, knowledge, marketing, sessions, translate  # noqa: E402, F401
