"""Measuring a model's cost profile: real requests through the Service, timed on this machine.

Each model is unloaded first (so its load is measured), warmed up with one real request that
loads it, then the timed request of its modality runs `repeats` times and the median is kept:
    text           a ~600-token prompt with max_tokens=1, and a short prompt generating 64 tokens
                   (greedy, no stop); the two are solved together, so neither rate carries the other
    embedding      a batch of sentences
    speech         synthesis time per second of audio produced
    transcription  transcription time per second of audio (made by the speech model)
    image          one image at the model's default size and steps (256x256 when quick)
    vision         one analysis of a small drawn picture with a shape and a word
    video          generation time per second of finished video (skipped when quick: ~30 s a clip)
The profiler knows nothing of prices: router/cost.py turns its seconds into money.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import statistics
import time
import wave
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError, ModelLoadError, OmniforgeError
from ..types import GenerationParams, ImageParams, ProgressFn, VideoParams
from .profiles import Profile, guess_profile, hardware

if TYPE_CHECKING:
    from ..catalog.spec import ModelSpec
    from ..service import Service

log = logging.getLogger("omniforge.router")

REPEATS = 3
QUICK_SIZE = 256  # image side when quick
OUTPUT_TOKENS = 64
PROMPT_WORDS = 450  # ~600 tokens of plain English for gemma's tokenizer
VIDEO_SECONDS = 5.0
SPEECH_TEXT = ("The quick brown fox jumps over the lazy dog. A profile measures how long each model needs "
               "for one unit of work on this machine. Routing then picks the cheapest model that fits.")
IMAGE_PROMPT = "a red circle on a blue background"
VIDEO_PROMPT = ("A red circle rises over a blue sea. A green square rests on a yellow field. "
                "A white triangle floats in a black night sky.")  # a storyboard falls back to these sentences
_WORDS = ("the", "model", "reads", "a", "long", "prompt", "about", "rivers", "and", "mountains", "where",
          "people", "walk", "every", "morning", "before", "work", "begins", "in", "small", "towns", "with",
          "quiet", "streets", "old", "houses", "green", "gardens", "bright", "windows", "that", "face",
          "south", "toward", "sea", "while", "birds", "sing", "over", "fields", "of", "wheat", "corn",
          "children", "play", "near", "bridge", "under", "clouds", "rain", "falls", "softly", "on", "roofs")

StepsFactory = Callable[[str], AbstractContextManager[ProgressFn | None]]


@dataclass
class ProfileRun:
    """What `measure_all` found: a profile per model it could measure, an error line per one it could not."""

    profiles: list[Profile] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def _sig(x: float) -> float:
    return float(f"{x:.6g}")


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _prose(seed: int, words: int) -> str:
    """Plain sentences of common words, different for every seed (so no cache holds a prefix of it)."""
    rng = random.Random(seed)
    out, sentence = [], []
    for _ in range(words):
        sentence.append(rng.choice(_WORDS))
        if len(sentence) >= rng.randint(8, 14):
            out.append(" ".join(sentence).capitalize() + ".")
            sentence = []
    if sentence:
        out.append(" ".join(sentence).capitalize() + ".")
    return " ".join(out)


class _Timer:
    """Counts the measure's steps for `progress` and times the calls it wraps."""

    def __init__(self, total: int, progress: ProgressFn | None) -> None:
        self.total, self.done, self.progress = total, 0, progress

    def step(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)

    def time(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
        self.step()
        return seconds, out


# -- per modality: (warm-up, timed part) ---------------------------------------------------------
def _text(service: Service, spec: ModelSpec, timer: _Timer, repeats: int) -> tuple[dict[str, float], list[str]]:
    words = PROMPT_WORDS if not spec.context_length else min(PROMPT_WORDS, spec.context_length // 3)
    greedy_one = GenerationParams(max_tokens=1, temperature=0.0)
    greedy_out = GenerationParams(max_tokens=OUTPUT_TOKENS, temperature=0.0)
    count = " ".join(f"{i}," for i in range(1, 9))  # a base model goes on counting: no early end

    def run(prompt: str, params: GenerationParams) -> tuple[float, int, int]:
        seconds, [result] = timer.time(lambda: service.complete(prompt, spec.id, params))
        return seconds, result.usage.prompt_tokens, result.usage.completion_tokens

    run(_prose(0, 40), greedy_one)  # warm-up: loads the model
    per_in, per_out, sizes = [], [], []
    for i in range(repeats):
        t1, p1, c1 = run(_prose(i + 1, words), greedy_one)
        t2, p2, c2 = run(f"Count {i + 1}: {count}", greedy_out)
        if c2 < 1:
            raise ModelLoadError(f"model '{spec.id}' generated no tokens; its output rate cannot be measured")
        a, b = _solve(t1, p1, c1, t2, p2, c2)
        per_in.append(a * 1000)
        per_out.append(b * 1000)
        sizes = [p1, c2]
    rates = {"s_per_1k_input_tokens": _median(per_in), "s_per_1k_output_tokens": _median(per_out)}
    return rates, [f"input from a {sizes[0]}-token prompt (max_tokens=1), output from {sizes[1]} greedy tokens"]


def _solve(t1: float, p1: int, c1: int, t2: float, p2: int, c2: int) -> tuple[float, float]:
    """Seconds per input token `a` and per output token `b` from t = a*prompt + b*completion
    for two runs; the plain ratios when the system is ill-posed (noise can make it so)."""
    det = p1 * c2 - p2 * c1
    if det > 0:
        a = (t1 * c2 - t2 * c1) / det
        b = (p1 * t2 - p2 * t1) / det
        if a > 0 and b > 0:
            return a, b
    return t1 / max(p1, 1), t2 / c2


def _embedding(service: Service, spec: ModelSpec, timer: _Timer, repeats: int) -> tuple[dict[str, float], list[str]]:
    timer.time(lambda: service.embed(["warm up"], spec.id))
    rates, tokens = [], 0
    for i in range(repeats):
        texts = [_prose(100 * (i + 1) + k, 40) for k in range(16)]
        seconds, (_, result) = timer.time(lambda texts=texts: service.embed(texts, spec.id))
        tokens = result.prompt_tokens or sum(len(t) for t in texts) // 4
        rates.append(seconds / tokens * 1000)
    counted = "counted by the model" if tokens else "estimated as characters/4"
    return {"s_per_1k_input_tokens": _median(rates)}, [f"16 sentences, {tokens} tokens ({counted})"]


def _speak(service: Service, spec: ModelSpec, text: str, fmt: str) -> bytes:
    _, _, stream = service.speak(text, spec.id, fmt=fmt)
    return b"".join(stream)


def _speech(service: Service, spec: ModelSpec, timer: _Timer, repeats: int) -> tuple[dict[str, float], list[str]]:
    from ..audio.codec import PCM_SAMPLE_RATE

    timer.time(lambda: _speak(service, spec, "Hello.", "pcm"))
    rates, audio_seconds = [], 0.0
    for _ in range(repeats):
        seconds, pcm = timer.time(lambda: _speak(service, spec, SPEECH_TEXT, "pcm"))
        audio_seconds = len(pcm) / 2 / PCM_SAMPLE_RATE  # 24 kHz mono int16
        if audio_seconds <= 0:
            raise ModelLoadError(f"model '{spec.id}' produced no audio; its rate cannot be measured")
        rates.append(seconds / audio_seconds)
    return {"s_per_audio_second": _median(rates)}, [f"{audio_seconds:.1f} s of speech from {len(SPEECH_TEXT)} characters"]


def _transcription(service: Service, spec: ModelSpec, timer: _Timer,
                   repeats: int) -> tuple[dict[str, float], list[str]]:
    from ..audio.codec import finish_wav

    voice = service.catalog.resolve(None, "speech")
    try:
        audio = finish_wav(_speak(service, voice, SPEECH_TEXT, "wav"))  # streamed: sizes filled in
    except OmniforgeError as exc:
        raise ModelLoadError(f"transcription of '{spec.id}' is measured on speech made by '{voice.id}', "
                             f"which failed: {exc.message}") from exc
    with wave.open(io.BytesIO(audio)) as w:
        duration = w.getnframes() / w.getframerate()
    timer.time(lambda: service.transcribe(audio, spec.id))
    rates = []
    for _ in range(repeats):
        seconds, _ = timer.time(lambda: service.transcribe(audio, spec.id))
        rates.append(seconds / duration)
    return {"s_per_audio_second": _median(rates)}, [f"{duration:.1f} s of speech made by {voice.id}"]


def _image(service: Service, spec: ModelSpec, timer: _Timer, repeats: int, quick: bool,
           ) -> tuple[dict[str, float], dict[str, Any], list[str]]:
    with service.runtime.lease(spec) as instance:  # loads the model: its size and steps are its own
        width, height = instance.default_size
        steps = instance.default_steps
        if quick:
            mult, top = instance.size_multiple, instance.max_size
            width = height = max(mult, min(top, QUICK_SIZE // mult * mult))
    timer.time(lambda: service.generate_image(ImageParams(IMAGE_PROMPT, width=width, height=height, steps=2, seed=0),
                                              spec.id))
    times = []
    for i in range(repeats):
        params = ImageParams(IMAGE_PROMPT, width=width, height=height, steps=steps, seed=i + 1)
        seconds, (_, result) = timer.time(lambda params=params: service.generate_image(params, spec.id))
        steps = result.steps
        times.append(seconds)
    return {"s_per_image": _median(times)}, {"size": f"{width}x{height}", "steps": steps}, []


def _picture() -> Any:
    """A small picture with something to find: a shape, a word, two colours."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (256, 256), (20, 40, 160))
    draw = ImageDraw.Draw(img)
    draw.ellipse((80, 30, 176, 126), fill=(220, 30, 30))
    draw.text((70, 170), "OMNIFORGE", fill=(255, 255, 255), font_size=24)
    return img


def _vision(service: Service, spec: ModelSpec, timer: _Timer, repeats: int) -> tuple[dict[str, float], list[str]]:
    picture = _picture()
    timer.time(lambda: service.analyse(picture, spec.id))
    times = [timer.time(lambda: service.analyse(picture, spec.id))[0] for _ in range(repeats)]
    return {"s_per_image": _median(times)}, ["a 256x256 picture with a circle and a word"]


def _video(service: Service, spec: ModelSpec, timer: _Timer, repeats: int) -> tuple[dict[str, float], list[str]]:
    timer.time(lambda: service.generate_video(VideoParams(IMAGE_PROMPT, seconds=2.0, seed=0), spec.id))
    rates, made = [], 0.0
    for i in range(repeats):
        params = VideoParams(VIDEO_PROMPT, seconds=VIDEO_SECONDS, seed=i + 1)
        seconds, (_, result) = timer.time(lambda params=params: service.generate_video(params, spec.id))
        made = result.seconds
        rates.append(seconds / made)
    return {"s_per_video_second": _median(rates)}, [
        f"{made:.1f} s clips asked as {VIDEO_SECONDS:g} s; includes the models it composes"]


# -- the measure ---------------------------------------------------------------------------------
def _steps(modality: str, repeats: int) -> int:
    return 1 + repeats * (2 if modality == "text" else 1)


def measure(service: Service, spec: ModelSpec, progress: ProgressFn | None = None, quick: bool = False,
            repeats: int | None = None) -> Profile:
    """Measure `spec` on this machine through `service`: a Profile with measured=True (or, for
    video when `quick`, a guess marked unmeasured that says it was skipped)."""
    repeats = repeats if repeats is not None else (1 if quick else REPEATS)
    if repeats < 1:
        raise InvalidRequestError(f"repeats must be at least 1, not {repeats}", param="repeats")
    if spec.modality == "video" and quick:
        guess = guess_profile(spec)
        guess.notes.insert(0, "skipped in quick mode (one clip takes ~30 s); run `omniforge profile "
                              f"{spec.id}` without --quick")
        return guess
    service.runtime.unload(spec.id, reason="profiling its load")  # so the warm-up measures the load
    timer = _Timer(_steps(spec.modality, repeats), progress)
    reference: dict[str, Any] = {}
    if spec.modality == "text":
        rates, notes = _text(service, spec, timer, repeats)
    elif spec.modality == "embedding":
        rates, notes = _embedding(service, spec, timer, repeats)
    elif spec.modality == "speech":
        rates, notes = _speech(service, spec, timer, repeats)
    elif spec.modality == "transcription":
        rates, notes = _transcription(service, spec, timer, repeats)
    elif spec.modality == "image":
        rates, reference, notes = _image(service, spec, timer, repeats, quick)
    elif spec.modality == "vision":
        rates, notes = _vision(service, spec, timer, repeats)
    elif spec.modality == "video":
        rates, notes = _video(service, spec, timer, repeats)
    else:
        raise InvalidRequestError(f"model '{spec.id}' has modality {spec.modality!r}, which cannot be profiled",
                                  param="model")
    loaded = next((m for m in service.runtime.loaded() if m.id == spec.id), None)
    return Profile(
        model=spec.id,
        modality=spec.modality,
        rates={k: _sig(v) for k, v in rates.items()},
        reference=reference,
        load_seconds=round(loaded.load_seconds, 3) if loaded else 0.0,
        memory_mb=round(loaded.memory_bytes / 2**20, 1) if loaded else 0.0,
        hardware=hardware(service.settings.threads),
        measured=True,
        notes=[*notes, f"median of {repeats} run(s)" + (" (quick)" if quick else "")],
    )


def measure_all(service: Service, specs: list[ModelSpec], progress: StepsFactory | None = None,
                quick: bool = False, repeats: int | None = None) -> ProfileRun:
    """Measure every model in `specs`; one that fails (to load, or to run) gets an error line and
    the others are still measured. `progress(message)` is a context manager yielding a step
    callback (like the CLI's Progress.steps), entered once per model."""
    run = ProfileRun()
    for spec in specs:
        steps = progress(f"profiling {spec.id}") if progress else contextlib.nullcontext(None)
        try:
            with steps as update:
                run.profiles.append(measure(service, spec, update, quick, repeats))
        except OmniforgeError as exc:
            run.errors[spec.id] = exc.message
        except Exception as exc:  # an engine's own error: this model only
            log.exception("profiling %s failed", spec.id)
            run.errors[spec.id] = f"{type(exc).__name__}: {exc}"
    return run


__all__ = ["ProfileRun", "measure", "measure_all"]
