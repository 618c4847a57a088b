"""The audio endpoints through the openai client: speech in every format, transcriptions in every
response format, a speak -> transcribe round trip with a word error rate of at most 10%,
translations, and the refusals of bad audio."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from .helpers import assert_alive, assert_openai_error, decode_audio, word_error_rate

SENTENCES = (
    "The weather is lovely this morning. Please send the report to the office before lunch. "
    "We will walk to the station together after the meeting."
)
SHORT = "Hello there, this is a short test of the speech endpoint."
CONTENT_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
                 "wav": "audio/wav", "pcm": "audio/pcm"}


@pytest.fixture(scope="module")
def speech_wav(client: openai.OpenAI) -> bytes:
    return client.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCES, response_format="wav").content


def _duration(data: bytes, fmt: str) -> float:
    return len(decode_audio(data, fmt)) / 16_000


# -- speech ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "opus", "aac", "pcm"])
def test_speech_formats_decode_to_plausible_audio(client: openai.OpenAI, fmt: str) -> None:
    response = client.audio.speech.with_raw_response.create(
        model="tts-1", voice="alloy", input=SHORT, response_format=fmt
    )
    assert response.headers["content-type"].startswith(CONTENT_TYPES[fmt])
    assert response.headers["x-omniforge-model"] == "piper-en-us-joe"
    seconds = _duration(response.content, fmt)
    assert 1.5 < seconds < 10, f"{fmt}: {seconds:.2f} s of audio for {len(SHORT.split())} words"


def test_speech_default_format_is_mp3(http: httpx.Client) -> None:
    r = http.post("/v1/audio/speech", json={"model": "tts-1", "input": "Hi.", "voice": "alloy"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("audio/mpeg")
    assert _duration(r.content, "mp3") > 0.2


def test_speech_speed(client: openai.OpenAI) -> None:
    normal = _duration(client.audio.speech.create(model="tts-1", voice="alloy", input=SHORT,
                                                  response_format="wav").content, "wav")
    fast = _duration(client.audio.speech.create(model="tts-1", voice="alloy", input=SHORT, response_format="wav",
                                                speed=2.0).content, "wav")
    assert fast < 0.75 * normal


def test_speech_is_streamed_and_released_when_the_client_leaves(server, http: httpx.Client) -> None:
    long_text = " ".join(f"This is sentence {i} of a long text that the client stops reading." for i in range(40))
    with http.stream("POST", "/v1/audio/speech", json={"input": long_text, "response_format": "mp3"}) as r:
        assert r.status_code == 200
        assert "content-length" not in r.headers  # chunked: audio flows while synthesis goes on
        next(r.iter_bytes())
    # The model's slot is given back soon after the client went away, long before the text is done.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        loaded = {m["id"]: m for m in http.get("/health").json()["models_loaded"]}
        if loaded["piper-en-us-joe"]["active"] == 0:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the speech model is still busy after the client disconnected")
    assert http.post("/v1/audio/speech", json={"input": "Still here.", "response_format": "wav"}).status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [({"input": ""}, "input"), ({"input": "hi", "response_format": "ogg"}, "response_format"),
     ({"input": "hi", "voice": "nobody"}, "voice"), ({"input": "hi", "speed": 9.0}, "speed"),
     ({"input": 5}, "input"), ({"input": "hi", "model": "all-minilm-l6-v2"}, "model")],
)
def test_speech_refusals(http: httpx.Client, body: dict, param: str) -> None:
    err = assert_openai_error(http.post("/v1/audio/speech", json=body), 400, "invalid_request_error")
    assert err["param"] == param
    assert_alive(http)


# -- transcriptions ----------------------------------------------------------------------------
def test_round_trip_word_error_rate(client: openai.OpenAI, speech_wav: bytes) -> None:
    response = client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=("speech.wav", speech_wav))
    assert response.headers["x-omniforge-model"] == "whisper-tiny.en"
    text = response.parse().text
    wer = word_error_rate(SENTENCES, text)
    assert wer <= 0.10, f"WER {wer:.2%}: {text!r}"


def test_transcription_text_srt_vtt(client: openai.OpenAI, speech_wav: bytes) -> None:
    file = ("speech.wav", speech_wav)
    text = client.audio.transcriptions.create(model="whisper-1", file=file, response_format="text")
    assert isinstance(text, str) and word_error_rate(SENTENCES, text) <= 0.10
    srt = client.audio.transcriptions.create(model="whisper-1", file=file, response_format="srt")
    assert srt.lstrip().startswith("1\n") and " --> " in srt and "00:00:00," in srt
    vtt = client.audio.transcriptions.create(model="whisper-1", file=file, response_format="vtt")
    assert vtt.startswith("WEBVTT") and " --> " in vtt and "00:00" in vtt


def test_transcription_verbose_json_with_words(client: openai.OpenAI, speech_wav: bytes) -> None:
    result = client.audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", speech_wav), response_format="verbose_json",
        timestamp_granularities=["word", "segment"], language="en",
    )
    assert result.language == "english"
    assert 5 < result.duration < 20
    assert result.segments and result.segments[0].start >= 0
    assert result.words and len(result.words) >= 0.8 * len(SENTENCES.split())
    starts = [w.start for w in result.words]
    assert starts == sorted(starts) and all(w.end >= w.start for w in result.words)
    assert result.words[-1].end <= result.duration + 0.5


def test_transcription_of_a_compressed_container(client: openai.OpenAI) -> None:
    mp3 = client.audio.speech.create(model="tts-1", voice="alloy", input=SHORT, response_format="mp3").content
    text = client.audio.transcriptions.create(model="whisper-1", file=("short.mp3", mp3)).text
    assert word_error_rate(SHORT, text) <= 0.2, text


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK marks translations deprecated
def test_translation_with_whisper_base(client: openai.OpenAI, speech_wav: bytes) -> None:
    response = client.audio.translations.with_raw_response.create(model="whisper-1", file=("speech.wav", speech_wav))
    assert response.headers["x-omniforge-model"] == "whisper-base"  # the multilingual default
    text = response.parse().text
    assert word_error_rate(SENTENCES, text) <= 0.25, text


@pytest.mark.parametrize(
    ("name", "data"),
    [("empty.wav", b""), ("corrupt.wav", b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 8),
     ("notes.txt", b"These are meeting notes, not audio.\n" * 50), ("noise.mp3", bytes(4096))],
)
def test_bad_audio_is_400(client: openai.OpenAI, http: httpx.Client, name: str, data: bytes) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.transcriptions.create(model="whisper-1", file=(name, data))
    assert info.value.param == "file"
    assert_alive(http)


def test_transcription_refusals(http: httpx.Client, speech_wav: bytes) -> None:
    files = {"file": ("speech.wav", speech_wav, "audio/wav")}
    r = http.post("/v1/audio/transcriptions", data={"model": "whisper-1", "response_format": "xml"}, files=files)
    assert assert_openai_error(r, 400, "invalid_request_error")["param"] == "response_format"
    r = http.post("/v1/audio/transcriptions", data={"model": "whisper-1", "timestamp_granularities[]": "word"},
                  files=files)
    assert assert_openai_error(r, 400, "invalid_request_error")["param"] == "timestamp_granularities"
    r = http.post("/v1/audio/transcriptions", data={"model": "whisper-1"})
    assert assert_openai_error(r, 400, "invalid_request_error")["param"] == "file"
    r = http.post("/v1/audio/transcriptions", data={"model": "whisper-1", "temperature": "warm"}, files=files)
    assert assert_openai_error(r, 400, "invalid_request_error")["param"] == "temperature"
    r = http.post("/v1/audio/transcriptions", data={"model": "gemma-3-270m"}, files=files)
    assert assert_openai_error(r, 400, "invalid_request_error")["param"] == "model"
    assert_alive(http)
