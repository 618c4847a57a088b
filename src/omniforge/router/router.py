"""Model choice for `model: "auto"`: the cheapest model that fits a request, why the others lost, the fallback order.

The router knows the catalog, what is loaded now, the measured profiles and the cost model; it
knows nothing about engines (no torch, no model is loaded to decide). A chat whose model does not
see images or hear audio is still possible: the vision / transcription model's work is added to
its cost, as the Service would run it; a spoken reply adds the speech model's.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..catalog.spec import MODALITIES, QUALITY_TIERS, ModelSpec
from ..errors import InvalidRequestError, MissingDependencyError, ModelLoadError, OmniforgeError, OverloadedError
from .cost import Cost, CostModel
from .profiles import Profile, ProfileCache

if TYPE_CHECKING:
    from ..service import Service

T = TypeVar("T")

QUALITY_NAMES = {"basic": 1, "good": 2, "best": 3}
SEEING_BACKENDS = frozenset({"llama-cpp-vision", "transformers-vlm"})  # their TextModel.accepts_images
CHARS_PER_TOKEN = 4  # the rough estimate for English text
DEFAULT_OUTPUT_TOKENS = 256  # a chat without max_tokens
WAV_BYTES_PER_SECOND = 32_000  # 16 kHz 16-bit mono, when the header does not say
MP3_BYTES_PER_SECOND = 16_000  # 128 kbit/s
TOKENS_PER_IMAGE = 256  # context an image takes in a model that sees (spec option image_tokens overrides)
TOKENS_PER_IMAGE_FACTS = 80  # the vision model's findings, as text, per image
TOKENS_PER_HEARD_SECOND = 4  # a transcript: ~2.5 words a second, ~1.3 tokens a word
SPOKEN_TOKENS_PER_SECOND = 3.0  # speech: ~2.5 words a second
FALLBACK_ERRORS = (OverloadedError, ModelLoadError, MissingDependencyError)  # the next candidate may serve
HEADER_MAX_CHARS = 300


# -- the request -------------------------------------------------------------------------------
@dataclass
class RouteRequest:
    """What a request needs, as the router sees it (quantities are estimates, upper bounds for output).

    text: input_tokens read, output_tokens written, images_in / audio_in_seconds attached,
    audio_out (the reply is spoken too); embedding: input_tokens; speech: input_tokens of text to
    say; transcription: audio_in_seconds; vision: images_in; image: image_n images of image_size
    ("WxH") at image_steps; video: video_seconds.
    """

    modality: str = "text"
    task: str | None = None  # chat, completion, code, translation, ... (None: any)
    input_tokens: int = 0
    output_tokens: int = 0
    images_in: int = 0
    audio_in_seconds: float = 0.0
    audio_out: bool = False
    language: str | None = None  # ISO 639-1, e.g. "en"
    min_quality: int = 1  # 1 basic, 2 good, 3 best
    image_size: str | None = None
    image_steps: int | None = None
    image_n: int = 1
    video_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise InvalidRequestError(f"modality {self.modality!r} is not one of {', '.join(MODALITIES)}",
                                      param="modality")
        if self.min_quality not in QUALITY_TIERS:
            raise InvalidRequestError(f"min_quality must be 1, 2 or 3 (basic, good, best), not {self.min_quality!r}",
                                      param="min_quality")
        for name in ("input_tokens", "output_tokens", "images_in", "image_n"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidRequestError(f"{name} must be a whole number >= 0, not {value!r}", param=name)
        for name in ("audio_in_seconds", "video_seconds"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise InvalidRequestError(f"{name} must be a number of seconds >= 0, not {value!r}", param=name)
        if self.image_steps is not None and (not isinstance(self.image_steps, int) or self.image_steps < 1):
            raise InvalidRequestError(f"image_steps must be a whole number >= 1, not {self.image_steps!r}",
                                      param="image_steps")
        if self.image_size is not None:
            _pixels(self.image_size)
        if self.language is not None:
            self.language = _language(self.language, "language")

    @property
    def pixels(self) -> int | None:
        return _pixels(self.image_size) if self.image_size else None

    def describe(self) -> str:
        """One line: what was asked, for explanations."""
        parts = [self.modality + (f" {self.task}" if self.task else "")]
        if self.modality in ("text", "embedding", "speech"):
            parts.append(f"~{self.input_tokens} tokens in" + (f" + {self.output_tokens} out" if self.output_tokens else ""))
        if self.images_in:
            parts.append(f"{self.images_in} image(s) in")
        if self.audio_in_seconds:
            parts.append(f"{self.audio_in_seconds:.1f} s audio in")
        if self.audio_out:
            parts.append("spoken reply")
        if self.modality == "image":
            parts.append(f"{self.image_n} x {self.image_size or 'default size'}"
                         + (f" at {self.image_steps} steps" if self.image_steps else ""))
        if self.video_seconds:
            parts.append(f"{self.video_seconds:g} s of video")
        if self.language:
            parts.append(f"language {self.language}")
        if self.min_quality > 1:
            parts.append(f"quality >= {self.min_quality}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _pixels(size: str) -> int:
    try:
        w, h = (int(v) for v in str(size).lower().split("x"))
    except ValueError:
        raise InvalidRequestError(f"image_size must be WIDTHxHEIGHT, e.g. 512x512, not {size!r}",
                                  param="image_size") from None
    if w < 1 or h < 1:
        raise InvalidRequestError(f"image_size {size!r} must be positive", param="image_size")
    return w * h


def _language(value: Any, param: str) -> str:
    """An ISO 639 code, lower case; a region ("en-US") is dropped."""
    code = str(value).strip().lower().replace("_", "-").split("-")[0]
    if not (2 <= len(code) <= 3 and code.isalpha()):
        raise InvalidRequestError(f"{param} must be an ISO language code such as 'en', not {value!r}", param=param)
    return code


def _quality(value: Any, param: str) -> int:
    """1-3 or basic/good/best (OpenAI metadata values are strings: "2" is 2)."""
    if isinstance(value, str):
        key = value.strip().lower()
        if key in QUALITY_NAMES:
            return QUALITY_NAMES[key]
        if key.isdigit():
            value = int(key)
    if isinstance(value, int) and not isinstance(value, bool) and value in QUALITY_TIERS:
        return value
    raise InvalidRequestError(f"{param} must be basic, good or best (or 1-3), not {value!r}", param=param)


def _tokens(chars: int) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN)


def _audio_seconds(audio: Any) -> float:
    """Length of a base64 input_audio clip: from the WAV header's byte rate, else bytes / a typical rate."""
    data = audio.get("data") if isinstance(audio, dict) else None
    if not isinstance(data, str) or not data:
        return 0.0
    if data.startswith("data:"):
        data = data.partition(",")[2]
    n_bytes = len(data) * 3 // 4 - data[-2:].count("=")
    try:
        head = base64.b64decode(data[:64])  # 48 bytes: the RIFF header and the fmt chunk
    except (binascii.Error, ValueError):
        head = b""
    rate = MP3_BYTES_PER_SECOND if audio.get("format") == "mp3" else WAV_BYTES_PER_SECOND
    if head[:4] == b"RIFF" and head[8:16] == b"WAVEfmt ":
        byte_rate = int.from_bytes(head[28:32], "little")
        if byte_rate > 0:
            rate, n_bytes = byte_rate, n_bytes - 44
    return max(0.0, n_bytes / rate)


def _metadata(body: dict[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    if not isinstance(meta, dict):
        raise InvalidRequestError("metadata must be an object of strings", param="metadata")
    out: dict[str, Any] = {}
    if meta.get("language"):
        out["language"] = _language(meta["language"], "metadata.language")
    if meta.get("quality") not in (None, ""):
        out["min_quality"] = _quality(meta["quality"], "metadata.quality")
    if meta.get("task"):
        out["task"] = str(meta["task"])
    return out


def _output_tokens(body: dict[str, Any], default: int) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidRequestError(f"{key} must be a whole number >= 1", param=key)
            return value
    return default


def request_from_chat(body: dict[str, Any]) -> RouteRequest:
    """What an OpenAI chat-completions body needs: tokens (~characters / 4), attached images and
    audio, a spoken reply (`modalities` has "audio"), and `metadata` language / quality / task."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("a chat request needs a non-empty 'messages' list", param="messages")
    chars = images = 0
    audio_seconds = 0.0
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise InvalidRequestError(f"messages[{i}] must be an object", param=f"messages[{i}]")
        content = m.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind in ("text", "input_text"):
                    text = part.get("text")
                    chars += len(text) if isinstance(text, str) else 0
                elif kind in ("image_url", "input_image"):
                    images += 1
                elif kind == "input_audio":
                    audio_seconds += _audio_seconds(part.get("input_audio"))
    if body.get("tools"):
        chars += len(repr(body["tools"]))  # tool schemas go into the prompt too
    modalities = body.get("modalities") or []
    return RouteRequest(
        modality="text",
        task="chat",
        input_tokens=_tokens(chars),
        output_tokens=_output_tokens(body, DEFAULT_OUTPUT_TOKENS),
        images_in=images,
        audio_in_seconds=round(audio_seconds, 3),
        audio_out=isinstance(modalities, list) and "audio" in modalities,
        **_metadata(body),
    )


def request_from_completion(body: dict[str, Any]) -> RouteRequest:
    """What an OpenAI (legacy) completions body needs."""
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        chars = sum(len(p) if isinstance(p, str) else CHARS_PER_TOKEN * (len(p) if isinstance(p, list) else 1)
                    for p in prompt)
    else:
        chars = len(prompt) if isinstance(prompt, str) else 0
    return RouteRequest(modality="text", task="completion", input_tokens=_tokens(chars),
                        output_tokens=_output_tokens(body, 16), **_metadata(body))


_FIELDS = tuple(f.name for f in fields(RouteRequest))


def request_from_json(data: Any) -> RouteRequest:
    """A chat body (with `messages`), a completions body (with `prompt`), or RouteRequest fields
    with `modality` (min_quality may be basic/good/best) — the REQUEST.json of `omniforge route`."""
    if not isinstance(data, dict):
        raise InvalidRequestError("a route request is a JSON object", param="request")
    if "messages" in data:
        return request_from_chat(data)
    if "prompt" in data and "modality" not in data:
        return request_from_completion(data)
    if "modality" not in data:
        raise InvalidRequestError("a route request is an OpenAI chat body (with 'messages'), a completions body "
                                  "(with 'prompt'), or RouteRequest fields with 'modality'", param="modality")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise InvalidRequestError(f"unknown route request field(s) {', '.join(unknown)}; known: {', '.join(_FIELDS)}",
                                  param=unknown[0])
    values = dict(data)
    if "min_quality" in values:
        values["min_quality"] = _quality(values["min_quality"], "min_quality")
    return RouteRequest(**values)


# -- the decision ------------------------------------------------------------------------------
@dataclass
class Candidate:
    """One catalog model considered for a request: kept or dropped, and why."""

    id: str
    kept: bool
    reasons: list[str] = field(default_factory=list)  # why dropped, or what kept it costs beyond its own work
    estimate_seconds: float = 0.0  # load (when not loaded) + its work + helper models' work
    cost: Cost = field(default_factory=Cost)
    loaded: bool = False
    measured: bool = False  # its profile was measured here (not guessed from the weights' size)
    quality: int = 1
    helpers: list[str] = field(default_factory=list)  # vision / transcription / speech models it needs

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kept": self.kept, "reasons": list(self.reasons),
                "estimate_seconds": round(self.estimate_seconds, 4), "cost": self.cost.rounded(),
                "loaded": self.loaded, "measured": self.measured, "quality": self.quality,
                "helpers": list(self.helpers)}


@dataclass
class Decision:
    """The router's answer: the chosen model, every candidate best-first (dropped ones last), and,
    after route_and_run, which ones failed and which one served."""

    chosen: str
    candidates: list[Candidate]
    request: RouteRequest
    route_ms: float = 0.0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (model id, why) in the order tried
    served_by: str | None = None

    def order(self) -> list[Candidate]:
        """The kept candidates, best first: the fallback order."""
        return [c for c in self.candidates if c.kept]

    def candidate(self, model_id: str) -> Candidate:
        return next(c for c in self.candidates if c.id == model_id)

    @property
    def model(self) -> str:
        """The model that served (after fallback), or the chosen one before running."""
        return self.served_by or self.chosen

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "served_by": self.served_by, "request": self.request.to_dict(),
                "candidates": [c.to_dict() for c in self.candidates],
                "failed": [{"id": m, "error": why} for m, why in self.failed], "route_ms": round(self.route_ms, 3)}

    def header(self) -> str:
        """A compact ASCII line for the x-omniforge-route response header (at most ~300 characters)."""
        c = self.candidate(self.model)
        head = f"chose {c.id} ({c.estimate_seconds:.2f} s, ${c.cost.usd:.6f})"
        tail = [f"failed {m}: {why}" for m, why in self.failed]
        tail += [f"dropped {d.id}: {', '.join(d.reasons)}" for d in self.candidates if not d.kept]
        out = head
        for i, piece in enumerate(tail):
            more = f"; +{len(tail) - i} more"
            if len(out) + 2 + len(piece) + (len(more) if i < len(tail) - 1 else 0) > HEADER_MAX_CHARS:
                out += more
                break
            out += "; " + piece
        return out.encode("ascii", "replace").decode()

    def explain(self) -> str:
        """A table for people: every candidate, its estimate, cost, and why it was kept or dropped."""
        lines = [f"request: {self.request.describe()}", f"chosen: {self.chosen}"
                 + (f" (served by {self.served_by})" if self.served_by and self.served_by != self.chosen else "")]
        for m, why in self.failed:
            lines.append(f"failed: {m}: {why}")
        rows = [("", "model", "est. s", "usd", "energy Wh", "loaded", "profile", "why")]
        for c in self.candidates:
            mark = "*" if c.id == self.model else ("+" if c.kept else "x")
            rows.append((mark, c.id, f"{c.estimate_seconds:.3f}" if c.kept else "-",
                         f"{c.cost.usd:.8f}" if c.kept else "-", f"{c.cost.energy_wh:.4f}" if c.kept else "-",
                         "yes" if c.loaded else "no", "measured" if c.measured else "guessed",
                         "; ".join(c.reasons) or "fits"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for r in rows:
            lines.append("  ".join(v.ljust(w) for v, w in zip(r[:-1], widths)) + "  " + r[-1])
        lines.append("* chosen  + kept (fallback order)  x dropped")
        return "\n".join(lines)


def _short(exc: OmniforgeError) -> str:
    kind = {OverloadedError: "overloaded", ModelLoadError: "load failed",
            MissingDependencyError: "engine missing"}.get(type(exc), type(exc).__name__)
    message = exc.message if len(exc.message) <= 120 else exc.message[:117] + "..."
    return f"{kind}: {message}"


def route_and_run(decision: Decision, fn: Callable[[str], T]) -> T:
    """fn(model id) for the kept candidates in order until one answers; an overloaded model, or
    one that fails to load, passes to the next (recorded in decision.failed). The last error is
    raised when all fail; any other error is raised at once (the request itself is wrong)."""
    last: OmniforgeError | None = None
    for c in decision.order():
        try:
            result = fn(c.id)
        except FALLBACK_ERRORS as exc:
            decision.failed.append((c.id, _short(exc)))
            last = exc
            continue
        decision.served_by = c.id
        return result
    if last is None:  # a Decision always has a kept candidate; one built by hand may not
        raise InvalidRequestError("no model left to try", param="model", code="no_model_fits")
    raise last


# -- the router --------------------------------------------------------------------------------
@dataclass
class _Helper:
    """A model the Service runs before or after the chosen one (vision, transcription, speech)."""

    spec: ModelSpec | None
    seconds: float = 0.0
    cost: Cost = field(default_factory=Cost)
    note: str = ""  # the reason a candidate that needs it carries (why it is dropped when spec is None)


class Router:
    """Picks the cheapest fitting model. Profiles are read once and re-read when their file changes;
    nothing here loads a model or imports an engine."""

    def __init__(self, catalog: Any, runtime: Any, home: Path, cost_model: CostModel,
                 profiles: ProfileCache | None = None) -> None:
        self.catalog = catalog  # Catalog: all(), resolve(None, modality)
        self.runtime = runtime  # ModelManager (loaded()), or None: nothing loaded
        self.home = Path(home)
        self.cost_model = cost_model
        self.profiles = profiles or ProfileCache(self.home)

    @classmethod
    def for_service(cls, service: Service) -> Router:
        return cls(service.catalog, service.runtime, service.settings.home, CostModel.from_settings(service.settings),
                   service.meter.profiles)

    def profile(self, spec: ModelSpec) -> Profile:
        """spec's profile, cached; re-read when its file appears, changes or goes."""
        return self.profiles.get(spec)

    def _loaded(self) -> set[str]:
        if self.runtime is None:
            return set()
        return {m.id for m in self.runtime.loaded()}

    def _seconds(self, spec: ModelSpec, work: float, loaded: set[str]) -> tuple[float, Profile]:
        profile = self.profile(spec)
        return work if spec.id in loaded else work + profile.load_seconds, profile

    # -- helpers -------------------------------------------------------------------------------
    def _helper(self, modality: str, what: str, loaded: set[str], **quantities: Any) -> _Helper:
        """The default `modality` model's share of the request; `what` names its work ({} is its id)."""
        try:
            spec = self.catalog.resolve(None, modality)
        except OmniforgeError as exc:
            return _Helper(None, note=f"{what.format('no')} model: {exc.message}")
        profile = self.profile(spec)
        seconds = profile.estimate(**quantities) + (0.0 if spec.id in loaded else profile.load_seconds)
        note = f"{what.format(spec.id)} (+{seconds:.1f} s)"
        return _Helper(spec, seconds, self.cost_model.of_request(spec, seconds), note)

    def _helpers(self, req: RouteRequest, loaded: set[str]) -> dict[str, _Helper]:
        helpers: dict[str, _Helper] = {}
        if req.modality != "text":
            return helpers
        if req.images_in:
            helpers["vision"] = self._helper("vision", "does not take images: gets {} analysis", loaded,
                                             images=req.images_in)
        if req.audio_in_seconds:
            helpers["transcription"] = self._helper("transcription", "does not hear audio: gets {} transcript", loaded,
                                                    audio_seconds=req.audio_in_seconds)
        if req.audio_out:
            helpers["speech"] = self._helper("speech", "reply spoken by {}", loaded,
                                             audio_seconds=req.output_tokens / SPOKEN_TOKENS_PER_SECOND)
        return helpers

    # -- one candidate -------------------------------------------------------------------------
    def _work(self, spec: ModelSpec, profile: Profile, req: RouteRequest, input_tokens: int,
              own_images: int) -> float:
        """Seconds of the model's own work, by modality."""
        m = spec.modality
        if m == "text":
            return profile.estimate(input_tokens=input_tokens, output_tokens=req.output_tokens, images=own_images)
        if m == "embedding":
            return profile.estimate(input_tokens=req.input_tokens)
        if m == "speech":
            return profile.estimate(audio_seconds=req.input_tokens / SPOKEN_TOKENS_PER_SECOND)
        if m == "transcription":
            return profile.estimate(audio_seconds=req.audio_in_seconds)
        if m == "vision":
            return profile.estimate(images=max(1, req.images_in))
        if m == "image":
            return profile.estimate(images=req.image_n, pixels=req.pixels, steps=req.image_steps)
        return profile.estimate(video_seconds=req.video_seconds)

    def _consider(self, spec: ModelSpec, req: RouteRequest, loaded: set[str],
                  helpers: dict[str, _Helper]) -> Candidate:
        reasons: list[str] = []
        dropped: list[str] = []
        used: list[_Helper] = []
        context_tokens = req.input_tokens  # what the model reads, for the context check
        image_tokens = 0  # images read as tokens by a model that sees
        sees = spec.backend in SEEING_BACKENDS or bool(spec.options.get("accepts_images"))
        if spec.modality == "text":
            if req.images_in and sees:
                image_tokens = req.images_in * int(spec.options.get("image_tokens", TOKENS_PER_IMAGE))
                context_tokens += image_tokens
            elif req.images_in:
                context_tokens += req.images_in * TOKENS_PER_IMAGE_FACTS
                self._use(helpers["vision"], reasons, dropped, used)
            if req.audio_in_seconds:
                context_tokens += math.ceil(req.audio_in_seconds * TOKENS_PER_HEARD_SECOND)
                self._use(helpers["transcription"], reasons, dropped, used)
            if req.audio_out:
                self._use(helpers["speech"], reasons, dropped, used)
        # 1. The filters: every one that fails is said, not only the first.
        if req.task and spec.tasks and req.task not in spec.tasks:
            dropped.append(f"task {req.task} not in [{', '.join(spec.tasks)}]")
        need = context_tokens + req.output_tokens
        if spec.modality == "text" and spec.context_length and spec.context_length < need:
            dropped.append(f"context {spec.context_length} < {need} tokens needed")
        if req.language and spec.languages and req.language not in spec.languages:
            dropped.append(f"language {req.language} not in [{', '.join(spec.languages)}]")
        if spec.quality < req.min_quality:
            dropped.append(f"quality {spec.quality} < {req.min_quality} asked")
        settings = getattr(self.runtime, "settings", None)
        if settings is not None and not spec.accepted(settings.accept_licenses):
            dropped.append(f"license terms {spec.terms!r} not accepted")
        is_loaded = spec.id in loaded
        if dropped:
            return Candidate(spec.id, False, dropped, loaded=is_loaded, quality=spec.quality)
        # 2. The estimate: load (when not loaded) + its own work + the helpers' work.
        profile = self.profile(spec)
        own_images = req.images_in if image_tokens and "s_per_image" in profile.rates else 0
        read_tokens = context_tokens - image_tokens if own_images else context_tokens
        seconds = self._work(spec, profile, req, read_tokens, own_images)
        if spec.modality == "embedding" and spec.context_length and req.input_tokens > spec.context_length:
            reasons.append(f"input over context {spec.context_length}: truncated")
        if is_loaded:
            reasons.append("loaded")
        elif profile.load_seconds:
            seconds += profile.load_seconds
            reasons.append(f"not loaded: +{profile.load_seconds:.1f} s to load")
        if not profile.measured:
            reasons.append("profile guessed from weights' size")
        cost = self.cost_model.of_request(spec, seconds, read_tokens, req.output_tokens)
        for h in used:
            seconds += h.seconds
            cost = cost + h.cost
        return Candidate(spec.id, True, reasons, seconds, cost, is_loaded, profile.measured, spec.quality,
                         [h.spec.id for h in used if h.spec is not None])

    @staticmethod
    def _use(helper: _Helper, reasons: list[str], dropped: list[str], used: list[_Helper]) -> None:
        if helper.spec is None:
            dropped.append(helper.note)
        else:
            reasons.append(helper.note)
            used.append(helper)

    # -- the choice ----------------------------------------------------------------------------
    def route(self, req: RouteRequest) -> Decision:
        """The cheapest fitting model (usd, then seconds; ties: loaded, then higher quality), with
        every candidate and why. No fitting model: InvalidRequestError (code no_model_fits)."""
        t0 = time.perf_counter()
        specs = [s for s in self.catalog.all() if s.modality == req.modality]
        if not specs:
            raise InvalidRequestError(f"no {req.modality} model in the catalog; add one with `omniforge models add`",
                                      param="model", code="no_model_fits")
        loaded = self._loaded()
        helpers = self._helpers(req, loaded)
        considered = [self._consider(s, req, loaded, helpers) for s in specs]
        kept = sorted((c for c in considered if c.kept), key=_rank)
        if not kept:
            why = "; ".join(f"{c.id}: {', '.join(c.reasons)}" for c in considered)
            raise InvalidRequestError(f"no {req.modality} model fits this request ({req.describe()}): {why}",
                                      param="model", code="no_model_fits")
        dropped = [c for c in considered if not c.kept]
        return Decision(kept[0].id, kept + dropped, req, (time.perf_counter() - t0) * 1000)

    def route_and_run(self, decision: Decision, fn: Callable[[str], T]) -> T:
        return route_and_run(decision, fn)


def _rank(c: Candidate) -> tuple[float, float, bool, int, str]:
    # Rounded so that float noise is a tie: 1e-9 usd is ~50 us of this machine at the defaults.
    return round(c.cost.usd, 9), round(c.estimate_seconds, 3), not c.loaded, -c.quality, c.id


__all__ = ["Candidate", "Decision", "RouteRequest", "Router", "request_from_chat", "request_from_completion",
           "request_from_json", "route_and_run"]
