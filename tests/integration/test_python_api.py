"""The Python API on the real embedded models, without a server: the same verbs as the CLI."""

from __future__ import annotations

import math
import os
import stat
import wave
from pathlib import Path

import pytest

import omniforge


@pytest.fixture(scope="module", autouse=True)
def _service(tmp_path_factory: pytest.TempPathFactory):
    from tests.conftest import make_home

    home = make_home(tmp_path_factory.mktemp("api"))
    omniforge.configure(home=home)
    yield
    omniforge.get_service().close()


def test_chat_stream_and_complete() -> None:
    answer = omniforge.chat("What colour is the sky on a clear day?", max_tokens=12, temperature=0, seed=1)
    assert isinstance(answer, str) and answer.strip()
    pieces = list(omniforge.chat([{"role": "user", "content": "Say hello."}], stream=True, max_tokens=6, seed=1))
    assert len(pieces) >= 2 and "".join(pieces).strip()
    again = omniforge.complete("The capital of France is", max_tokens=6, temperature=0)
    assert again == omniforge.complete("The capital of France is", max_tokens=6, temperature=0)


def test_speak_to_file_then_transcribe(tmp_path: Path) -> None:
    path = tmp_path / "hello.wav"
    data = omniforge.speak("The quick brown fox jumps over the lazy dog.", path)
    assert path.read_bytes() == data
    with wave.open(str(path)) as w:  # a whole file carries its real sizes
        seconds = w.getnframes() / w.getframerate()
        assert w.getframerate() == 22050 and 1.0 < seconds < 6.0
    mode = stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    transcript = omniforge.transcribe(path, word_timestamps=True)
    words = transcript.text.lower()
    assert "fox" in words and "lazy dog" in words
    assert transcript.segments and transcript.segments[0].words


def test_embed_one_and_many() -> None:
    one = omniforge.embed("a cat sits on the mat")
    many = omniforge.embed(["a cat sits on the mat", "a kitten rests on a rug", "stock prices fell sharply"])
    assert len(one) == 384 and math.isclose(sum(x * x for x in one), 1.0, rel_tol=1e-3)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b))

    assert cos(many[0], many[1]) > cos(many[0], many[2])


def test_errors_are_omniforge_errors() -> None:
    with pytest.raises(omniforge.OmniforgeError, match="does not exist"):
        omniforge.chat("hi", model="no-such-model")
    assert {m.id for m in omniforge.models()} >= {"gemma-3-270m", "all-minilm-l6-v2"}
