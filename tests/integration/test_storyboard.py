"""The embedded storyboard video model: scene writing and house captions on their own, then a
whole video from the real embedded models (gemma-3-270m, the house image model, Piper)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from itertools import pairwise
from typing import Any

import pytest

from omniforge.backends.storyboard import parse_scenes, prompt_sentences, scene_count
from omniforge.config import load_settings
from omniforge.house.prompts import COLOURS, POSITIONS, SHAPES, SIZES, house_prompt
from omniforge.service import Service
from omniforge.types import VideoParams
from omniforge.video.assemble import probe


class NarrationCountingService(Service):
    """The real Service, counting the narration it synthesizes (pcm: 24 kHz mono int16)."""

    narration_bytes = 0

    def speak(self, *args: Any, **kwargs: Any) -> Any:
        spec, content_type, stream = super().speak(*args, **kwargs)
        return spec, content_type, self._count(stream)

    def _count(self, stream: Iterator[bytes]) -> Iterator[bytes]:
        with closing(stream):  # type: ignore[type-var]
            for chunk in stream:
                self.narration_bytes += len(chunk)
                yield chunk


def test_numbered_lines_are_parsed_and_junk_is_dropped() -> None:
    text = (
        "1. A dog.\n2) the dog looks up at the sky and dreams of flying\n3. ### 123 !!\n"
        "4. A small grey cat wakes up slowly in a sunny garden full of flowers.\n"
        "5. The dog jumps off a hill. Then it flies.\n6. The dog jumps off a hill.\nnot numbered at all"
    )
    assert parse_scenes(text) == ["The dog looks up at the sky and dreams of flying.", "The dog jumps off a hill."]
    assert prompt_sentences("A dog wakes. it looks up; it flies!\nThe end") == [
        "A dog wakes.", "It looks up.", "It flies!", "The end.",
    ]  # fmt: skip
    assert [scene_count(s) for s in (None, 1, 4, 15, 60)] == [3, 1, 1, 3, 12]


def test_house_captions_use_the_house_vocabulary_and_differ() -> None:
    scenes = pytest.importorskip("omniforge.house.scenes")
    assert set(COLOURS) == set(scenes.COLOUR_NAMES) and set(SHAPES) == set(scenes.SHAPES)
    assert set(POSITIONS) == set(scenes.POSITION_NAMES) and set(SIZES) == set(scenes.SIZE_NAMES)
    assert house_prompt("The sun rises over the blue sea.", 0) == (
        "a large yellow circle at the top on a blue background"
    )
    captions, previous = [], None
    for i, text in enumerate(["Nothing to see.", "Nothing to see.", "A red house in the night.", "A red house."]):
        previous = house_prompt(text, i, previous)
        caption, ignored = scenes.parse_caption(previous, strict=True)
        assert caption.is_full() and not ignored
        captions.append(previous)
    assert all(a != b for a, b in pairwise(captions))
    assert "red square" in captions[2] and "black background" in captions[2]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NarrationCountingService]:
    from tests.conftest import make_home

    svc = NarrationCountingService(load_settings(home=make_home(tmp_path_factory.mktemp("storyboard")), threads=2))
    yield svc
    svc.close()


@pytest.mark.slow
def test_storyboard_video_plays_and_lasts_as_long_as_its_narration(service: NarrationCountingService) -> None:
    spec = service.catalog.resolve(None, "video")
    assert spec.backend == "storyboard"
    steps: list[tuple[int, int]] = []
    params = VideoParams(prompt="A red ball rolls down a green hill. The sun sets over the quiet sea.",
                         seconds=10, width=320, height=180, seed=7)  # fmt: skip
    with service.runtime.lease(spec) as storyboard:
        result = storyboard.generate(params, lambda done, total: steps.append((done, total)), service)
    info = probe(result.mp4)
    narration = service.narration_bytes / 2 / 24_000
    assert info["video"] and info["audio"] and info["video_codec"] == "h264" and info["audio_codec"] == "aac"
    assert (info["width"], info["height"]) == (320, 180) == (result.width, result.height)
    assert narration > 2.0 and info["duration"] == pytest.approx(narration, rel=0.10)
    assert result.seconds == pytest.approx(info["duration"], abs=0.05) and result.has_audio
    assert steps and steps[-1][0] == steps[-1][1] and all(a[0] < b[0] for a, b in pairwise(steps))
