"""The storyboard video model: the LLM writes scenes, the image model draws each one, the speech
model narrates it, and video.assemble makes the MP4 (pan/zoom, voice-over, subtitles).

It holds no weights: it composes the models the Service serves, so `generate` needs the Service
as `context`. Spec options (all optional):
    text_model, image_model, speech_model   None: the default model of that modality
    voice       the narrator's voice (None: the speech model's own)
    speed       narration speed, 0.25-4 (default 1)
    subtitles   "burn" (default), "soft" (a mov_text stream) or "none"

The embedded LLM is a 270M base model, so its scenes are parsed leniently and checked; when too
few usable ones come back, the user's prompt split into sentences is the storyboard instead.
The house image model only knows coloured shapes: `house_prompt` maps a scene's (then the story's)
words onto its vocabulary (a small table below) and varies what it does not find, so neighbouring
scenes differ.
"""

from __future__ import annotations

import logging
import re
from contextlib import closing
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidRequestError, OmniforgeError
from ..house.prompts import house_prompt
from ..types import GenerationParams, ImageParams, ProgressFn, VideoParams, VideoResult
from .base import VideoModel

if TYPE_CHECKING:
    from ..catalog.spec import ModelSpec
    from ..config import Settings

log = logging.getLogger("omniforge.storyboard")

DEFAULT_SCENES = 3
SECONDS_PER_SCENE = 5.0  # a one-sentence narration lasts about 4-6 s
MAX_SCENES = 12
MAX_SCENE_CHARS = 200
WRITE_ATTEMPTS = 3  # completions asked for before falling back to the prompt's own sentences
NARRATION_RATE = 24_000  # the Service's "pcm" speech format: 24 kHz mono int16

# -- writing the scenes ----------------------------------------------------------------------------

# Each example line is one narrated sentence of 12-16 words: about 4-5 s of Piper speech.
_EXAMPLES = (
    ("a cat finds a ball", (
        "A small grey cat wakes up slowly in a sunny garden full of flowers.",
        "Under the old green tree the cat spots a shiny red ball and creeps closer.",
        "The cat chases the ball across the grass until it falls asleep beside it.",
    )),
    ("a boat at sea", (
        "A little white boat sails out of the harbour onto a calm blue sea.",
        "Dark clouds gather in the afternoon and the waves grow taller and taller.",
        "At last the storm passes and the boat comes safely home before the night.",
    )),
)  # fmt: skip
_EXAMPLE_LINES = {line.casefold() for _, lines in _EXAMPLES for line in lines}
_NUMBERED = re.compile(r"^\s*(\d{1,2})\s*[.):-]\s*(.+?)\s*$")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def scene_prompt(prompt: str) -> str:
    """A few-shot plain-text prompt a base model continues with numbered scenes."""
    shots = "".join(
        f"Story: {story}\n" + "".join(f"{i}. {line}\n" for i, line in enumerate(lines, 1)) + "\n"
        for story, lines in _EXAMPLES
    )
    return f"Each story is told in short numbered scenes, one sentence each.\n\n{shots}Story: {prompt}\n1."


def _clean(line: str) -> str | None:
    """A usable scene sentence from one line of model output, or None for junk."""
    line = " ".join(line.replace("*", "").split()).strip(" \"'")
    if "http" in line or "://" in line:
        return None
    first = re.split(r"(?<=[.!?])\s", line, maxsplit=1)[0]  # one sentence per scene
    words = _WORD.findall(first)
    letters = sum(c.isalpha() for c in first)
    if len(words) < 3 or letters < 0.7 * len(first.replace(" ", "")):
        return None
    first = first[:MAX_SCENE_CHARS].rsplit(" ", 1)[0] if len(first) > MAX_SCENE_CHARS else first
    first = first[0].upper() + first[1:]
    return first if first[-1] in ".!?" else first + "."


def parse_scenes(text: str) -> list[str]:
    """The distinct, usable numbered lines of a completion, in order (example lines dropped)."""
    scenes: list[str] = []
    for raw in text.splitlines():
        m = _NUMBERED.match(raw)
        scene = _clean(m.group(2)) if m else None
        if scene and not _copies_an_example(scene) and scene not in scenes:
            scenes.append(scene)
    return scenes


def _copies_an_example(scene: str) -> bool:
    """True for an example line, or one that reuses most of its words (a small model's habit)."""
    words = {w.casefold() for w in _WORD.findall(scene)}
    for line in _EXAMPLE_LINES:
        example = {w.casefold() for w in _WORD.findall(line)}
        if len(words & example) >= 0.6 * min(len(words), len(example)):
            return True
    return False


def prompt_sentences(prompt: str) -> list[str]:
    """The user's prompt split into sentences: the storyboard when the LLM gives nothing usable."""
    parts = [" ".join(p.split()) for p in re.split(r"(?<=[.!?;])\s+|\n+", prompt)]
    parts = [p[0].upper() + p[1:] for p in parts if _WORD.search(p)]
    return [p if p[-1] in ".!?" else p.rstrip(";") + "." for p in parts]


def scene_count(seconds: float | None) -> int:
    if seconds is None:
        return DEFAULT_SCENES
    return max(1, min(MAX_SCENES, round(seconds / SECONDS_PER_SCENE)))


# -- the model -------------------------------------------------------------------------------------


class Storyboard(VideoModel):
    """Writes, draws, narrates and assembles; one video at a time."""

    supports_image_to_video = True  # the given image is the first scene's picture
    default_size = (640, 360)
    max_seconds = 60.0
    default_fps = 24

    def __init__(self, spec: ModelSpec, settings: Settings) -> None:
        super().__init__(spec)
        self.threads = settings.threads
        self.options = dict(spec.options)
        subtitles = self.options.get("subtitles", "burn")
        if subtitles not in ("burn", "soft", "none"):
            raise InvalidRequestError(
                f"model {spec.id}: option subtitles must be burn, soft or none, not {subtitles!r}", param="subtitles"
            )

    def memory_bytes(self) -> int:
        return 0  # the models it composes are leased, and counted, by the runtime

    def generate(self, params: VideoParams, progress: ProgressFn | None = None, context: Any = None) -> VideoResult:
        from ..video.assemble import Scene, assemble, probe

        service = self._check(params, context)
        width, height = params.width or self.default_size[0], params.height or self.default_size[1]
        fps = params.fps or self.default_fps
        n = scene_count(params.seconds)
        total = 1 + 3 * n  # write; draw and narrate each scene; assemble each scene
        done = 0

        def step(k: int = 1) -> None:
            nonlocal done
            done += k
            if progress is not None:
                progress(done, total)

        # 1. Write the scenes.
        texts = self._write(service, params.prompt, n, params.seed)
        if len(texts) != n:  # fewer usable scenes than asked: the step count follows
            total = 1 + 3 * len(texts)
        step()
        # 2. Draw and narrate each scene.
        scenes, previous = [], None
        for i, text in enumerate(texts):
            if i == 0 and params.image is not None:
                image = params.image
            else:
                image, previous = self._draw(service, text, params, i, previous)
            step()
            scenes.append(Scene(image, self._narrate(service, text), NARRATION_RATE, text))
            step()
        # 3. Assemble.
        mp4 = assemble(
            scenes, width, height, fps, self.options.get("subtitles", "burn"),
            progress=lambda d, _: step(), threads=self.threads,
        )  # fmt: skip
        info = probe(mp4)
        return VideoResult(mp4=mp4, width=width, height=height, seconds=info["duration"], has_audio=info["audio"],
                           narration=[s.text for s in scenes])

    def _check(self, params: VideoParams, context: Any) -> Any:
        if context is None or not hasattr(context, "generate_image") or not hasattr(context, "speak"):
            raise OmniforgeError(f"model {self.spec.id} composes other models and must be run through the Service")
        if not isinstance(params.prompt, str) or not params.prompt.strip():
            raise InvalidRequestError("prompt must be non-empty text", param="prompt")
        if params.seconds is not None and not 0 < params.seconds <= self.max_seconds:
            raise InvalidRequestError(f"seconds must be above 0 and at most {self.max_seconds:g}", param="seconds")
        return context

    def _write(self, service: Any, prompt: str, n: int, seed: int | None) -> list[str]:
        """n scene sentences from the LLM, or the prompt's own sentences when it gives too few."""
        scenes: list[str] = []
        for attempt in range(WRITE_ATTEMPTS):  # a small model often needs a second try
            gen = GenerationParams(max_tokens=40 * n + 16, temperature=0.7, top_p=0.9,
                                   seed=None if seed is None else seed + attempt,
                                   stop=["\n\n", "Story:", f"\n{n + 1}."])  # fmt: skip
            text = service.complete(scene_prompt(" ".join(prompt.split())), self.options.get("text_model"),
                                    gen)[0].text  # fmt: skip
            scenes += [s for s in parse_scenes("1." + text) if s not in scenes]
            if len(scenes) >= n:
                return scenes[:n]
        log.warning("the LLM wrote %d usable scene(s) of %d (%r); using the prompt's sentences",
                    len(scenes), n, text[:200])  # fmt: skip
        fallback = prompt_sentences(prompt)
        if len(fallback) > n:  # the last scene takes the rest of the prompt
            fallback = [*fallback[: n - 1], " ".join(fallback[n - 1 :])]
        fallback += [s for s in scenes if s not in fallback][: n - len(fallback)]
        return fallback or [" ".join(prompt.split())[:MAX_SCENE_CHARS]]

    def _draw(
        self, service: Any, text: str, params: VideoParams, index: int, previous: str | None
    ) -> tuple[Any, str | None]:
        """The scene's image, and the house caption it used (None for other image models)."""
        model = self.options.get("image_model")
        spec = service.pick(model, "image")
        # The scene's own words come first; the story's fill in the rest (the hero keeps its colour).
        words = f"{text} {params.prompt}"
        caption = house_prompt(words, index, previous) if spec.backend == "house-image" else None
        seed = None if params.seed is None else params.seed + index
        request = ImageParams(prompt=caption or text, negative_prompt=params.negative_prompt, seed=seed,
                              steps=params.steps, guidance=params.guidance)  # fmt: skip
        _, result = service.generate_image(request, spec.id)
        return result.images[0], caption

    def _narrate(self, service: Any, text: str) -> np.ndarray:
        _, _, stream = service.speak(
            text, self.options.get("speech_model"), self.options.get("voice"),
            float(self.options.get("speed", 1.0)), fmt="pcm",
        )  # fmt: skip
        with closing(stream):
            pcm = b"".join(stream)
        return np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.int16)


def load(spec: ModelSpec, settings: Settings) -> Storyboard:
    """A storyboard over the Service's models; nothing is loaded until a video is made."""
    return Storyboard(spec, settings)
