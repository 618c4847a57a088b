"""Transcript renderers: exact SRT/VTT text and OpenAI's verbose_json shape."""

from __future__ import annotations

import json

import pytest

from omniforge.audio.subtitles import (
    LANGUAGE_NAMES,
    RESPONSE_FORMATS,
    language_name,
    render,
    to_json,
    to_srt,
    to_text,
    to_verbose_json,
    to_vtt,
)
from omniforge.errors import InvalidRequestError
from omniforge.types import Segment, Transcript, Word


@pytest.fixture
def transcript() -> Transcript:
    return Transcript(
        text="Hello there. General Kenobi!",
        language="en",
        duration=3725.5,
        segments=[
            Segment(
                id=0,
                start=0.0,
                end=1.52,
                text=" Hello there.",
                words=[Word(" Hello", 0.0, 0.6, 0.9), Word(" there.", 0.6, 1.52, 0.8)],
                avg_logprob=-0.25,
                no_speech_prob=0.01,
            ),
            Segment(
                id=1,
                start=3723.25,
                end=3725.5,
                text=" General Kenobi!",
                words=[Word(" General", 3723.25, 3724.0), Word(" Kenobi!", 3724.0, 3725.5)],
            ),
        ],
    )


def test_srt(transcript: Transcript) -> None:
    assert to_srt(transcript) == (
        "1\n00:00:00,000 --> 00:00:01,520\nHello there.\n\n2\n01:02:03,250 --> 01:02:05,500\nGeneral Kenobi!\n\n"
    )


def test_vtt(transcript: Transcript) -> None:
    assert to_vtt(transcript) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.520\nHello there.\n\n01:02:03.250 --> 01:02:05.500\nGeneral Kenobi!\n\n"
    )


def test_cue_text_cannot_break_the_format() -> None:
    t = Transcript(
        text="x",
        language="en",
        duration=2.0,
        segments=[
            Segment(id=0, start=0.0, end=1.0, text=" first line\n\nsecond --> line "),
            Segment(id=1, start=1.0, end=2.0, text="   "),  # nothing to show: no empty cue
        ],
    )
    assert to_srt(t) == "1\n00:00:00,000 --> 00:00:01,000\nfirst line second -> line\n\n"


def test_transcript_without_segments_is_one_cue() -> None:
    t = Transcript(text="Just text.", language="en", duration=2.0)
    assert to_vtt(t) == "WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nJust text.\n\n"
    assert to_srt(Transcript(text="", language="en", duration=1.0)) == ""


def test_json_and_text(transcript: Transcript) -> None:
    assert to_json(transcript) == {"text": "Hello there. General Kenobi!"}
    assert to_text(transcript) == "Hello there. General Kenobi!\n"


def test_verbose_json_shape(transcript: Transcript) -> None:
    body = to_verbose_json(transcript, include_words=True, include_segments=True)
    assert list(body) == ["task", "language", "duration", "text", "segments", "words"]
    assert body["task"] == "transcribe"
    assert body["language"] == "english"
    assert body["duration"] == 3725.5
    assert body["text"] == transcript.text
    seg = body["segments"][0]
    assert list(seg) == [
        "id", "seek", "start", "end", "text", "tokens",
        "temperature", "avg_logprob", "compression_ratio", "no_speech_prob",
    ]  # fmt: skip
    assert (seg["id"], seg["start"], seg["end"], seg["text"]) == (0, 0.0, 1.52, " Hello there.")
    assert (seg["avg_logprob"], seg["no_speech_prob"]) == (-0.25, 0.01)
    assert isinstance(seg["seek"], int) and isinstance(seg["tokens"], list)
    assert seg["compression_ratio"] > 0 and seg["temperature"] == 0.0
    assert body["segments"][1]["seek"] == 372325  # 10 ms frames
    assert body["words"] == [
        {"word": "Hello", "start": 0.0, "end": 0.6},
        {"word": "there.", "start": 0.6, "end": 1.52},
        {"word": "General", "start": 3723.25, "end": 3724.0},
        {"word": "Kenobi!", "start": 3724.0, "end": 3725.5},
    ]
    json.dumps(body)  # plain JSON types only


def test_verbose_json_granularities(transcript: Transcript) -> None:
    words_only = to_verbose_json(transcript, include_words=True, include_segments=False)
    assert "segments" not in words_only and len(words_only["words"]) == 4
    segments_only = to_verbose_json(transcript, include_words=False, include_segments=True)
    assert "words" not in segments_only and len(segments_only["segments"]) == 2


def test_verbose_json_language_names(transcript: Transcript) -> None:
    transcript.language = "de"
    assert to_verbose_json(transcript)["language"] == "german"
    translated = to_verbose_json(transcript, task="translate")  # OpenAI: the output's language
    assert (translated["task"], translated["language"]) == ("translate", "english")
    assert language_name("xx") == "xx"


def test_every_whisper_language_has_a_name() -> None:
    tokenizer = pytest.importorskip("faster_whisper.tokenizer")
    assert set(tokenizer._LANGUAGE_CODES) <= set(LANGUAGE_NAMES)


def test_render_dispatch(transcript: Transcript) -> None:
    assert set(RESPONSE_FORMATS) == {"json", "text", "srt", "verbose_json", "vtt"}
    assert render(transcript, "json") == to_json(transcript)
    assert render(transcript, "srt") == to_srt(transcript)
    assert render(transcript, "vtt") == to_vtt(transcript)
    assert render(transcript, "text") == to_text(transcript)
    assert render(transcript, "verbose_json", include_words=True)["words"]
    with pytest.raises(InvalidRequestError) as info:
        render(transcript, "xml")
    assert info.value.param == "response_format"
