"""Piper and faster-whisper backends on the real embedded models: synthesis, transcription,
translation and a speech round trip (Piper speaks, whisper-tiny.en writes it down)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from omniforge.audio import codec
from omniforge.backends import load_model
from omniforge.catalog.embedded import EMBEDDED
from omniforge.catalog.spec import ModelSpec
from omniforge.config import Settings, load_settings
from omniforge.errors import InvalidRequestError, ModelLoadError
from tests.conftest import make_home

jiwer = pytest.importorskip("jiwer")

SPECS = {spec.id: spec for spec in EMBEDDED}
ROUND_TRIP_TEXT = (
    "The weather today is sunny and warm. "
    "We will meet at the library after lunch. "
    "Please bring your notebook and a blue pen. "
    "The children planted tomatoes in the garden."
)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(home=make_home(tmp_path_factory.mktemp("audio-backends")))


@pytest.fixture(scope="module")
def piper(settings: Settings):
    model = load_model(SPECS["piper-en-us-joe"], settings)
    yield model
    model.close()


@pytest.fixture(scope="module")
def tiny(settings: Settings):
    model = load_model(SPECS["whisper-tiny.en"], settings)
    yield model
    model.close()


@pytest.fixture(scope="module")
def spoken(piper) -> tuple[np.ndarray, float]:
    """ROUND_TRIP_TEXT spoken by Piper, through a WAV file, as 16 kHz float32; and Piper's RTF."""
    start = time.perf_counter()
    pcm = np.concatenate(list(piper.synthesize(ROUND_TRIP_TEXT)))
    rtf = (time.perf_counter() - start) / (len(pcm) / piper.sample_rate)
    return codec.decode(codec.encode(pcm, piper.sample_rate, "wav")), rtf


def words(text: str) -> str:
    """Lower case, punctuation gone: what WER should compare."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


# -- Piper ---------------------------------------------------------------------------------------


def test_piper_speaks_one_chunk_per_sentence(piper) -> None:
    assert piper.sample_rate == 22_050
    chunks = piper.synthesize("Hello there. This is a test of the speech engine. Goodbye!")
    first = next(chunks)  # ready before the rest are made
    chunks = [first, *chunks]
    assert len(chunks) == 3
    assert all(c.dtype == np.int16 and c.ndim == 1 and len(c) > 0 for c in chunks)
    seconds = sum(len(c) for c in chunks) / piper.sample_rate
    assert 2.0 < seconds < 8.0
    assert np.abs(np.concatenate(chunks)).max() > 10_000  # Piper peaks every sentence near full scale


def test_piper_speed(piper) -> None:
    text = "Speaking faster makes the audio shorter."
    normal = sum(len(c) for c in piper.synthesize(text, speed=1.0))
    fast = sum(len(c) for c in piper.synthesize(text, speed=2.0))
    slow = sum(len(c) for c in piper.synthesize(text, speed=0.5))
    assert fast < 0.75 * normal < slow


@pytest.mark.parametrize("text", ["", "   \n", "-"])
def test_piper_rejects_empty_input_before_streaming(piper, text: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        piper.synthesize(text)  # raised by the call itself, not on the first next()
    assert info.value.param == "input"


@pytest.mark.parametrize("speed", [0.1, 4.5])
def test_piper_rejects_speed_out_of_range(piper, speed: float) -> None:
    with pytest.raises(InvalidRequestError) as info:
        piper.synthesize("Hello.", speed=speed)
    assert info.value.param == "speed"


def test_piper_missing_voice(settings: Settings, tmp_path: Path) -> None:
    spec = ModelSpec(id="gone", modality="speech", backend="piper", source=str(tmp_path / "none.onnx"))
    with pytest.raises(ModelLoadError, match="missing"):
        load_model(spec, settings)


# -- whisper -------------------------------------------------------------------------------------


def test_round_trip_piper_to_whisper(tiny, spoken, record_property) -> None:
    audio, piper_rtf = spoken
    start = time.perf_counter()
    transcript = tiny.transcribe(audio, word_timestamps=True)
    whisper_rtf = (time.perf_counter() - start) / transcript.duration
    error_rate = jiwer.wer(words(ROUND_TRIP_TEXT), words(transcript.text))
    record_property("wer", error_rate)
    record_property("piper_rtf", round(piper_rtf, 3))
    record_property("whisper_tiny_en_rtf", round(whisper_rtf, 3))
    print(f"round trip: WER {error_rate:.3f}, Piper RTF {piper_rtf:.3f}, whisper-tiny.en RTF {whisper_rtf:.3f}")
    assert error_rate <= 0.10, transcript.text
    assert transcript.language == "en"
    assert transcript.duration == pytest.approx(len(audio) / 16_000, abs=0.01)
    assert transcript.segments and transcript.segments[0].id == 0

    # Word timestamps: present, in order, inside the audio.
    timed = [w for s in transcript.segments for w in s.words]
    assert len(timed) >= len(ROUND_TRIP_TEXT.split()) - 2
    assert all(w.word == w.word.strip() and w.word for w in timed)
    assert all(w.start <= w.end for w in timed)
    assert all(a.start <= b.start and a.end <= b.end for a, b in zip(timed, timed[1:]))
    assert timed[-1].end <= transcript.duration + 0.05


def test_whisper_prompt_is_accepted(tiny, spoken) -> None:
    audio, _ = spoken
    clip = audio[: 16_000 * 3]
    transcript = tiny.transcribe(clip, prompt="A weather report.", word_timestamps=False)
    assert "weather" in words(transcript.text)
    assert all(not s.words for s in transcript.segments)


def test_tiny_en_is_english_only(tiny) -> None:
    audio = np.zeros(16_000, dtype=np.float32)
    assert tiny.multilingual is False and type(tiny).multilingual is False
    with pytest.raises(InvalidRequestError) as info:
        tiny.transcribe(audio, task="translate")
    assert info.value.param == "model" and "whisper-base" in info.value.message
    with pytest.raises(InvalidRequestError) as info:
        tiny.transcribe(audio, language="de")
    assert info.value.param == "language"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"language": "klingon"}, "language"),
        ({"task": "summarize"}, "task"),
        ({"temperature": 1.5}, "temperature"),
    ],
)
def test_whisper_rejects_bad_arguments(tiny, kwargs: dict, param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        tiny.transcribe(np.zeros(16_000, dtype=np.float32), **kwargs)
    assert info.value.param == param


def test_whisper_rejects_empty_audio(tiny) -> None:
    with pytest.raises(InvalidRequestError):
        tiny.transcribe(np.zeros(0, dtype=np.float32))


def test_whisper_missing_folder(settings: Settings, tmp_path: Path) -> None:
    # A path that is not a folder must fail here, not become a hub download.
    spec = ModelSpec(id="gone", modality="transcription", backend="faster-whisper", source=str(tmp_path / "no"))
    with pytest.raises(ModelLoadError, match="not a CTranslate2 Whisper folder"):
        load_model(spec, settings)


@pytest.mark.slow
def test_whisper_base_translates(settings: Settings, spoken) -> None:
    base = load_model(SPECS["whisper-base"], settings)  # joins model.bin once into the shared cache
    try:
        assert base.multilingual is True
        audio, _ = spoken
        clip = audio[: int(16_000 * 4.5)]  # the first sentence is enough to prove the task runs
        transcript = base.transcribe(clip, task="translate")
        assert transcript.language == "en"
        assert {"weather", "sunny"} <= set(words(transcript.text).split())
    finally:
        base.close()
