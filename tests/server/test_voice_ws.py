"""WebSocket /v1/voice on a real server: a Piper-spoken question is transcribed, answered and the
answer spoken back sentence by sentence, the first audio arriving while the chat model is still
writing; a second question in the same connection remembers the first; bad input is answered with
OpenAI-shaped errors on a socket that stays usable; API keys hold for the WebSocket too. The
sentence splitter is checked on its own first."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from omniforge.server.routes.voice import SentenceSplitter

from .helpers import STRICT_KEY, ServerProcess, assert_alive, decode_audio, word_error_rate

websockets = pytest.importorskip("websockets")
from websockets.sync.client import ClientConnection, connect

QUESTION = "What are three good reasons to drink water every day?"
FOLLOW_UP = "Is coffee good for you too?"
SYSTEM = "You are a helpful voice assistant. Give a detailed answer of several sentences."
RECV_TIMEOUT_S = 300.0  # a first turn may load three models on two busy cores


# -- the sentence splitter -----------------------------------------------------------------------
SPLIT_TEXT = (
    'Dr. Smith met J. Doe at 3.14 p.m. today. It was fun! Was it? Yes, e.g. the U.S. Army came.\n'
    '1. First item.\n2. Second item... Then "quoted." And more'
)
SPLIT_SENTENCES = [
    "Dr. Smith met J. Doe at 3.14 p.m. today.", "It was fun!", "Was it?", "Yes, e.g. the U.S. Army came.",
    "1. First item.", "2. Second item...", 'Then "quoted."', "And more",
]


def _split(chunks: list[str], max_chars: int = 200) -> tuple[list[str], list[int]]:
    """The sentences, and after how many chunks each was released."""
    splitter, out, when = SentenceSplitter(max_chars), [], []
    for n, chunk in enumerate(chunks, 1):
        got = splitter.feed(chunk)
        out += got
        when += [n] * len(got)
    rest = splitter.flush()
    return out + rest, when + [len(chunks) + 1] * len(rest)


@pytest.mark.parametrize("chunking", ["whole", "chars", "words"])
def test_splitter_handles_abbreviations_numbers_and_lists(chunking: str) -> None:
    chunks = {"whole": [SPLIT_TEXT], "chars": list(SPLIT_TEXT),
              "words": [w + " " for w in SPLIT_TEXT.split(" ")]}[chunking]
    sentences, _ = _split(chunks)
    assert [s.strip() for s in sentences] == SPLIT_SENTENCES


def test_splitter_releases_a_sentence_as_soon_as_the_next_one_starts() -> None:
    tokens = ["Water", " helps", ".", " It", " keeps", " you", " cool", "."]
    sentences, when = _split(tokens)
    assert sentences == ["Water helps.", "It keeps you cool."]
    assert when[0] == 4  # released with " It", not at the end of the text


def test_splitter_cuts_a_run_on_sentence_at_a_clause() -> None:
    sentences, _ = _split(["sheep, goat, cow, " * 20], max_chars=100)
    assert len(sentences) >= 3 and all(len(s) <= 100 for s in sentences)
    assert all(s.endswith(",") for s in sentences[:-1])


# -- the endpoint ---------------------------------------------------------------------------------
def _ws_url(server: ServerProcess) -> str:
    return server.url.replace("http://", "ws://") + "/v1/voice"


@dataclass
class Turn:
    """What the server sent for one utterance, each with its arrival time (seconds after 'end')."""

    events: list[tuple[float, Any]] = field(default_factory=list)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for _, e in self.events if isinstance(e, dict) and e.get("type") == kind]

    def first_time(self, kind: str) -> float:
        return next(t for t, e in self.events if (kind == "audio" and isinstance(e, bytes))
                    or (isinstance(e, dict) and e.get("type") == kind))

    def pairs(self) -> list[tuple[str, bytes]]:
        """(sentence, audio) pairs; each text message must be followed at once by one binary frame."""
        out = []
        items = [e for _, e in self.events if not (isinstance(e, dict) and e.get("type") == "reply")]
        for i, e in enumerate(items):
            if isinstance(e, dict) and e.get("type") == "text":
                assert isinstance(items[i + 1], bytes), f"text {e} is not followed by its audio"
                out.append((e["text"], items[i + 1]))
        return out


def _recv_json(ws: ClientConnection) -> dict[str, Any]:
    message = ws.recv(timeout=RECV_TIMEOUT_S)
    assert isinstance(message, str), f"expected a JSON message, got {len(message)} bytes"
    return json.loads(message)


def _say(ws: ClientConnection, audio: bytes, frame_bytes: int = 16_384) -> Turn:
    """Send one utterance in binary frames and collect everything up to 'done' (or an error)."""
    for i in range(0, len(audio), frame_bytes):
        ws.send(audio[i:i + frame_bytes])
    ws.send(json.dumps({"type": "end"}))
    t0 = time.perf_counter()
    turn = Turn()
    while True:
        message = ws.recv(timeout=RECV_TIMEOUT_S)
        event = message if isinstance(message, bytes) else json.loads(message)
        turn.events.append((time.perf_counter() - t0, event))
        if isinstance(event, dict) and event["type"] in ("done", "error"):
            return turn


def _assert_error(event: dict[str, Any], param: str | None = None, code: str | None = None) -> dict[str, Any]:
    assert event["type"] == "error", event
    err = event["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert err["type"] == "invalid_request_error" and err["message"], err
    if param is not None:
        assert err["param"] == param, err
    if code is not None:
        assert err["code"] == code, err
    return err


@pytest.fixture(scope="module")
def question_wav(http: httpx.Client) -> bytes:
    r = http.post("/v1/audio/speech", json={"input": QUESTION, "voice": "alloy", "response_format": "wav"})
    assert r.status_code == 200, r.text
    return r.content


@pytest.fixture(scope="module")
def follow_up_wav(http: httpx.Client) -> bytes:
    r = http.post("/v1/audio/speech", json={"input": FOLLOW_UP, "voice": "alloy", "response_format": "wav"})
    assert r.status_code == 200, r.text
    return r.content


@pytest.fixture
def ws(server: ServerProcess) -> Iterator[ClientConnection]:
    with connect(_ws_url(server), max_size=None, open_timeout=30) as conn:
        yield conn


@pytest.mark.slow
def test_spoken_question_gets_a_spoken_answer_streamed_by_sentence(
    ws: ClientConnection, question_wav: bytes, follow_up_wav: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    ws.send(json.dumps({"type": "config", "system": SYSTEM, "voice": "alloy", "max_tokens": 60,
                        "temperature": 0.0, "format": "pcm16"}))
    ready = _recv_json(ws)
    assert ready["type"] == "ready" and ready["sample_rate"] == 24_000, ready
    assert set(ready["models"]) == {"chat", "transcription", "speech"}

    first = _say(ws, question_wav)
    assert not first.of("error"), first.of("error")
    (transcript,) = first.of("transcript")
    assert word_error_rate(QUESTION, transcript["text"]) <= 0.25, transcript
    pairs = first.pairs()
    assert len(pairs) >= 2, f"expected a reply of several sentences: {pairs}"
    for sentence, audio in pairs:
        seconds = len(decode_audio(audio, "pcm")) / 16_000
        assert 0.3 < seconds < 2 + 0.2 * len(sentence), (sentence, seconds)
    (reply,) = first.of("reply")
    assert " ".join(s for s, _ in pairs) == " ".join(reply["text"].split()), (pairs, reply)
    (done,) = first.of("done")
    usage = done["usage"]
    assert usage["completion_tokens"] > 0 and usage["input_audio_seconds"] > 1
    assert usage["output_audio_seconds"] == pytest.approx(sum(len(a) for _, a in pairs) / 48_000, abs=0.01)

    # The first sentence is heard while the chat model is still writing the rest.
    t_audio, t_reply, t_done = first.first_time("audio"), first.first_time("reply"), first.first_time("done")
    timings = done["timings"]
    with capsys.disabled():
        print(f"\nvoice turn 1: {len(pairs)} sentences, {usage['completion_tokens']} tokens; client-side: "
              f"first audio {t_audio:.2f} s, reply written {t_reply:.2f} s, done {t_done:.2f} s after 'end'; "
              f"server timings {timings}")
    # Ordering, not speed (speeds belong to benchmarks): the first sentence's audio went out before
    # the turn ended, and the server spoke it no later than the reply was complete plus one synthesis.
    assert t_audio <= t_done and timings["first_audio"] <= timings["done"], timings
    assert timings["first_audio"] > timings["transcribed"], timings

    # A second utterance on the same connection: the first turn is in the prompt.
    second = _say(ws, follow_up_wav)
    assert not second.of("error"), second.of("error")
    assert "coffee" in second.of("transcript")[0]["text"].lower()
    assert second.pairs(), second.events
    (done2,) = second.of("done")
    assert done2["usage"]["prompt_tokens"] > usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.slow
def test_bad_input_is_reported_and_the_socket_stays_usable(
    ws: ClientConnection, http: httpx.Client
) -> None:
    ws.send(b"RIFF-not-configured-yet")
    _assert_error(_recv_json(ws), code="config_required")
    ws.send(json.dumps({"type": "end"}))  # ends the refused utterance: nothing more to say about it
    ws.send("this is not JSON")
    _assert_error(_recv_json(ws), code="invalid_json")
    ws.send(json.dumps({"type": "hello"}))
    _assert_error(_recv_json(ws), param="type")
    ws.send(json.dumps({"type": "config", "format": "ogg"}))
    _assert_error(_recv_json(ws), param="format")
    ws.send(json.dumps({"type": "config", "model": "no-such-model"}))
    assert _recv_json(ws)["type"] == "error"
    ws.send(json.dumps({"type": "config", "max_tokens": 8}))
    assert _recv_json(ws)["type"] == "ready"

    garbage = _say(ws, b"\x00\x01 this is not audio at all " * 200)
    _assert_error(garbage.of("error")[0])
    assert "decode" in garbage.of("error")[0]["error"]["message"]
    empty = _say(ws, b"")
    _assert_error(empty.of("error")[0], param="audio")
    ws.send(json.dumps({"type": "config", "input_format": "pcm16"}))
    assert _recv_json(ws)["type"] == "ready"
    _assert_error(_say(ws, b"\x00\x01\x02").of("error")[0], param="audio")

    # Still the same socket, still answering; and the server is fine.
    ws.send(json.dumps({"type": "reset"}))
    ws.send(json.dumps({"type": "config"}))
    assert _recv_json(ws)["type"] == "ready"
    assert_alive(http)


@pytest.mark.slow
def test_voice_needs_the_api_key_when_keys_are_set(strict_server: ServerProcess) -> None:
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused, connect(_ws_url(strict_server)):
        pass
    response = refused.value.response
    assert response.status_code == 401
    assert json.loads(response.body)["error"]["code"] == "invalid_api_key"
    headers = {"Authorization": f"Bearer {STRICT_KEY}"}
    with connect(_ws_url(strict_server), additional_headers=headers, open_timeout=30) as conn:
        conn.send(json.dumps({"type": "config"}))
        assert _recv_json(conn)["type"] == "ready"
