"""The router behind `model: "auto"`: cheapest fitting model, helpers' cost for images and audio,
filters that say why, loaded-model preference, fallback, request parsing, `omniforge route`."""

from __future__ import annotations

import base64
import io
import json
import wave
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from omniforge.catalog import Catalog, ModelSpec
from omniforge.cli.route import route
from omniforge.config import load_settings
from omniforge.errors import InvalidRequestError, ModelLoadError, OverloadedError
from omniforge.router.cost import CostModel
from omniforge.router.profiles import Profile, save_profile
from omniforge.router.router import (
    Decision,
    Router,
    RouteRequest,
    request_from_chat,
    request_from_json,
    route_and_run,
)
from omniforge.runtime import ModelManager
from tests.fakes import load_echo

COST = CostModel(usd_per_hour=3.6)  # 1 s of compute = $0.001: easy to check by hand
TEXT = {"s_per_1k_input_tokens": 0.2, "s_per_1k_output_tokens": 5.0}


class NothingLoaded:
    """The one thing the router asks a runtime: what is loaded now."""

    def loaded(self) -> list:
        return []


@pytest.fixture
def home(_isolated_home: Path) -> Path:
    return _isolated_home


@pytest.fixture
def catalog(home: Path) -> Catalog:
    settings = load_settings()
    defaults = {k: getattr(settings, k) for k in (
        "default_chat_model", "default_speech_model", "default_transcription_model", "default_translation_model",
        "default_embedding_model", "default_image_model", "default_video_model", "default_vision_model")}
    return Catalog(settings.catalog_path, defaults)


def add(catalog: Catalog, tmp_path: Path, model_id: str, backend: str = "llama-cpp", **fields) -> ModelSpec:
    """A user text model (weights: a small temp file) in the catalog file."""
    src = tmp_path / f"{model_id}.gguf"
    src.write_bytes(b"\0" * 1024)
    return catalog.add(ModelSpec(model_id, fields.pop("modality", "text"), backend, str(src), **fields))


def profile(home: Path, model_id: str, modality: str = "text", load_seconds: float = 0.0, **rates: float) -> None:
    save_profile(home, Profile(model_id, modality, rates or dict(TEXT), load_seconds=load_seconds))


@pytest.fixture
def router(home: Path, catalog: Catalog, tmp_path: Path) -> Router:
    """gemma (8k context, quality 1, en) plus three user models with controlled profiles."""
    add(catalog, tmp_path, "fast-tiny", tasks=["chat", "completion"], context_length=2048, languages=["en", "fr"])
    add(catalog, tmp_path, "big-best", tasks=["chat"], context_length=32768, quality=3)
    add(catalog, tmp_path, "seer", backend="llama-cpp-vision", tasks=["chat"], context_length=4096, quality=2)
    profile(home, "gemma-3-270m", load_seconds=1.0, s_per_1k_input_tokens=0.2, s_per_1k_output_tokens=5.0)
    profile(home, "fast-tiny", load_seconds=0.5, s_per_1k_input_tokens=0.1, s_per_1k_output_tokens=2.0)
    profile(home, "big-best", load_seconds=5.0, s_per_1k_input_tokens=2.0, s_per_1k_output_tokens=40.0)
    profile(home, "seer", load_seconds=2.0, s_per_1k_input_tokens=0.5, s_per_1k_output_tokens=8.0, s_per_image=0.5)
    profile(home, "image-facts", "vision", load_seconds=0.5, s_per_image=6.0)
    profile(home, "whisper-tiny.en", "transcription", load_seconds=0.3, s_per_audio_second=0.5)
    profile(home, "whisper-base", "transcription", load_seconds=0.6, s_per_audio_second=1.0)
    profile(home, "piper-en-us-joe", "speech", load_seconds=0.2, s_per_audio_second=0.1)
    profile(home, "all-minilm-l6-v2", "embedding", load_seconds=0.4, s_per_1k_input_tokens=0.05)
    return Router(catalog, NothingLoaded(), home, COST)


def chat(text: str = "Hello there, how are you?", *parts: dict, **body) -> dict:
    content = [{"type": "text", "text": text}, *parts] if parts else text
    return {"model": "auto", "messages": [{"role": "user", "content": content}], **body}


def wav_b64(seconds: float, rate: int = 16000) -> str:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(rate * seconds))
    return base64.b64encode(buf.getvalue()).decode()


IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


# -- choosing ------------------------------------------------------------------------------------
def test_plain_chat_goes_to_the_cheapest_text_model_with_its_estimate(router: Router) -> None:
    d = router.route(request_from_chat(chat(max_tokens=100)))
    assert d.chosen == "fast-tiny"
    assert [c.id for c in d.order()][:3] == ["fast-tiny", "gemma-3-270m", "seer"]
    c = d.candidate("fast-tiny")
    # load 0.5 s + 7 tokens in at 0.1 s/1k + 100 out at 2 s/1k; usd = seconds / 1000 here
    assert c.estimate_seconds == pytest.approx(0.5 + 7 * 0.0001 + 0.2)
    assert c.cost.usd == pytest.approx(c.estimate_seconds / 1000)
    assert c.measured and not c.loaded and "not loaded: +0.5 s to load" in c.reasons
    assert {c.id for c in d.candidates} == {"gemma-3-270m", "fast-tiny", "big-best", "seer"}  # text models only


def test_chat_with_an_image_prefers_a_model_that_sees_over_one_that_needs_image_facts(router: Router) -> None:
    d = router.route(request_from_chat(chat("What is this?", IMAGE)))
    assert d.chosen == "seer"
    tiny = d.candidate("fast-tiny")
    assert tiny.kept and tiny.helpers == ["image-facts"]
    assert "does not take images: gets image-facts analysis (+6.5 s)" in tiny.reasons  # 6 s + 0.5 s load
    assert tiny.estimate_seconds > 6.5 > d.candidate("seer").estimate_seconds
    # with the vision model already cheap, not seeing is cheaper again
    profile(router.home, "image-facts", "vision", s_per_image=0.01)
    assert router.route(request_from_chat(chat("What is this?", IMAGE))).chosen == "fast-tiny"


def test_audio_in_adds_the_transcription_model_and_audio_out_the_speech_model(router: Router) -> None:
    audio = {"type": "input_audio", "input_audio": {"data": wav_b64(2.0), "format": "wav"}}
    req = request_from_chat(chat("Answer me", audio, modalities=["text", "audio"], max_tokens=30))
    assert req.audio_in_seconds == pytest.approx(2.0, abs=0.01) and req.audio_out
    d = router.route(req)
    c = d.candidate(d.chosen)
    assert c.helpers == ["whisper-tiny.en", "piper-en-us-joe"]
    assert "does not hear audio: gets whisper-tiny.en transcript (+1.3 s)" in c.reasons  # 2 s x 0.5 + 0.3 load
    assert "reply spoken by piper-en-us-joe (+1.2 s)" in c.reasons  # 30 tokens ~ 10 s spoken x 0.1 + 0.2
    plain = router.route(request_from_chat(chat("Answer me", max_tokens=30))).candidate(d.chosen)
    assert c.estimate_seconds == pytest.approx(plain.estimate_seconds + 1.3 + 1.2, abs=0.01)


@pytest.mark.parametrize(("fields", "expected"), [
    ({"modality": "embedding", "input_tokens": 50}, "all-minilm-l6-v2"),
    ({"modality": "transcription", "audio_in_seconds": 10}, "whisper-tiny.en"),
    ({"modality": "transcription", "audio_in_seconds": 10, "language": "fr"}, "whisper-base"),
    ({"modality": "transcription", "audio_in_seconds": 10, "task": "translation"}, "whisper-base"),
    ({"modality": "speech", "input_tokens": 30}, "piper-en-us-joe"),
    ({"modality": "vision", "images_in": 1}, "image-facts"),
    ({"modality": "image", "image_size": "64x64", "image_n": 2}, "house-image"),
    ({"modality": "video", "video_seconds": 4}, "storyboard"),
])
def test_each_modality_routes_within_itself(router: Router, fields: dict, expected: str) -> None:
    d = router.route(RouteRequest(**fields))
    assert d.chosen == expected
    assert all(router.catalog.get(c.id).modality == fields["modality"] for c in d.candidates)


# -- filters that say why ------------------------------------------------------------------------
def test_context_quality_language_and_task_filters_say_why(router: Router) -> None:
    long = router.route(RouteRequest(input_tokens=9000, output_tokens=256, task="chat"))
    assert long.chosen == "big-best"
    assert "context 8192 < 9256 tokens needed" in long.candidate("gemma-3-270m").reasons
    assert "context 2048 < 9256 tokens needed" in long.candidate("fast-tiny").reasons
    assert [c.kept for c in long.candidates] == [True, False, False, False]  # dropped ones last

    best = router.route(request_from_chat(chat(metadata={"quality": "best"})))
    assert best.chosen == "big-best"
    assert "quality 1 < 3 asked" in best.candidate("fast-tiny").reasons
    assert "quality 2 < 3 asked" in best.candidate("seer").reasons

    french = router.route(request_from_chat(chat(metadata={"language": "fr"})))
    assert french.chosen == "fast-tiny"
    assert "language fr not in [en]" in french.candidate("gemma-3-270m").reasons
    assert french.candidate("big-best").kept  # lists no languages: not language-specific

    code = router.route(RouteRequest(task="code", input_tokens=10, output_tokens=10))
    assert code.chosen == "gemma-3-270m"
    assert "task code not in [chat, completion]" in code.candidate("fast-tiny").reasons


def test_no_model_fits_is_a_clear_400_naming_each_reason(router: Router) -> None:
    with pytest.raises(InvalidRequestError) as err:
        router.route(RouteRequest(input_tokens=40000, output_tokens=256, language="de", min_quality=3))
    e = err.value
    assert e.status_code == 400 and e.code == "no_model_fits" and e.param == "model"
    assert "big-best: context 32768 < 40256 tokens needed" in e.message
    assert "gemma-3-270m: context 8192 < 40256 tokens needed, language de not in [en], quality 1 < 3 asked" \
        in e.message


def test_a_helper_model_that_is_missing_drops_the_candidates_that_need_it(home: Path, tmp_path: Path) -> None:
    settings = load_settings()
    catalog = Catalog(settings.catalog_path, {"default_chat_model": "gemma-3-270m",
                                              "default_vision_model": "no-such-vision"})
    add(catalog, tmp_path, "seer", backend="llama-cpp-vision")
    d = Router(catalog, None, home, COST).route(request_from_chat(chat("see", IMAGE)))
    assert d.chosen == "seer"
    why = d.candidate("gemma-3-270m").reasons[0]
    assert why.startswith("does not take images: gets no analysis model:") and "no-such-vision" in why


# -- what is loaded ------------------------------------------------------------------------------
def test_a_loaded_model_wins_a_tie_and_saves_its_load_time(home: Path, catalog: Catalog, tmp_path: Path) -> None:
    for name in ("twin-a", "twin-b"):
        add(catalog, tmp_path, name, backend="fake-echo")
        profile(home, name)
    runtime = ModelManager(load_settings(), loader=load_echo)
    router = Router(catalog, runtime, home, COST)
    req = RouteRequest(input_tokens=100, output_tokens=100)
    assert router.route(req).chosen == "twin-a"  # a full tie: by id
    runtime.load(catalog.get("twin-b"))
    d = router.route(req)
    assert d.chosen == "twin-b" and d.candidate("twin-b").loaded and "loaded" in d.candidate("twin-b").reasons
    profile(home, "twin-a", load_seconds=3.0)
    profile(home, "twin-b", load_seconds=3.0, s_per_1k_input_tokens=0.4, s_per_1k_output_tokens=6.0)
    d = router.route(req)  # the profiles changed on disk: re-read
    assert d.chosen == "twin-b"  # slower per token, but no 3 s load
    assert d.candidate("twin-a").estimate_seconds == pytest.approx(3.0 + 0.02 + 0.5)
    runtime.close()


def test_an_unprofiled_model_is_guessed_and_says_so(home: Path, catalog: Catalog) -> None:
    d = Router(catalog, NothingLoaded(), home, COST).route(RouteRequest(modality="embedding", input_tokens=10))
    c = d.candidate("all-minilm-l6-v2")
    assert not c.measured and "profile guessed from weights' size" in c.reasons and c.estimate_seconds > 0


# -- fallback ------------------------------------------------------------------------------------
def test_fallback_moves_on_when_the_first_model_is_overloaded(router: Router) -> None:
    d = router.route(request_from_chat(chat()))
    first, second = d.order()[0].id, d.order()[1].id
    calls = []

    def run(model_id: str) -> str:
        calls.append(model_id)
        if model_id == first:
            raise OverloadedError(f"model '{model_id}' has 16 requests waiting", retry_after=2)
        return f"answer from {model_id}"

    assert route_and_run(d, run) == f"answer from {second}"
    assert calls == [first, second] and d.served_by == second and d.model == second
    assert d.failed == [(first, f"overloaded: model '{first}' has 16 requests waiting")]
    header = d.header()
    assert header.startswith(f"chose {second} (") and f"failed {first}: overloaded" in header
    assert "failed:" in d.explain() and d.to_dict()["served_by"] == second


def test_fallback_raises_the_last_error_when_all_fail_and_stops_on_a_bad_request(router: Router) -> None:
    d = router.route(request_from_chat(chat()))

    def broken(model_id: str) -> str:
        raise ModelLoadError(f"model '{model_id}' failed to load")

    with pytest.raises(ModelLoadError, match=d.order()[-1].id):
        route_and_run(d, broken)
    assert [m for m, _ in d.failed] == [c.id for c in d.order()] and d.served_by is None

    d = router.route(request_from_chat(chat()))
    calls = []

    def refuses(model_id: str) -> str:
        calls.append(model_id)
        raise InvalidRequestError("temperature must be between 0 and 2", param="temperature")

    with pytest.raises(InvalidRequestError, match="temperature"):
        router.route_and_run(d, refuses)
    assert calls == [d.chosen]  # the request is wrong: no other model would do better


# -- explaining ----------------------------------------------------------------------------------
def test_header_is_compact_ascii_and_explain_lists_every_candidate(router: Router, catalog: Catalog,
                                                                   tmp_path: Path) -> None:
    for i in range(15):
        add(catalog, tmp_path, f"tiny-ctx-{i:02d}", context_length=512)
    d = router.route(RouteRequest(input_tokens=3000, output_tokens=256))
    header = d.header()
    assert header.startswith(f"chose {d.chosen} (") and "$" in header
    assert len(header) <= 300 and header.isascii() and header.endswith("more")
    assert "dropped fast-tiny: context 2048 < 3256 tokens needed" in header
    text = d.explain()
    assert all(c.id in text for c in d.candidates) and "request: text" in text
    data = json.loads(json.dumps(d.to_dict()))
    assert data["chosen"] == d.chosen and len(data["candidates"]) == len(d.candidates)


# -- parsing requests ----------------------------------------------------------------------------
def test_request_from_chat_reads_an_openai_body() -> None:
    body = {
        "model": "auto",
        "max_completion_tokens": 77,
        "max_tokens": 999,
        "modalities": ["text", "audio"],
        "metadata": {"language": "fr-FR", "quality": "good"},
        "messages": [
            {"role": "system", "content": "x" * 400},
            {"role": "user", "content": [
                {"type": "text", "text": "y" * 40}, IMAGE, IMAGE,
                {"type": "input_audio", "input_audio": {"data": wav_b64(1.5, rate=8000), "format": "wav"}},
            ]},
        ],
    }
    req = request_from_chat(body)
    assert (req.modality, req.task, req.input_tokens, req.output_tokens) == ("text", "chat", 110, 77)
    assert req.images_in == 2 and req.audio_in_seconds == pytest.approx(1.5, abs=0.01) and req.audio_out
    assert req.language == "fr" and req.min_quality == 2
    plain = request_from_chat(chat())
    assert plain.output_tokens == 256 and not plain.audio_out and plain.min_quality == 1 and plain.language is None
    assert request_from_chat(chat(metadata={"quality": "3"})).min_quality == 3


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": []}, "messages"),
    (chat(metadata={"quality": "superb"}), "metadata.quality"),
    (chat(metadata={"language": "french!"}), "metadata.language"),
    (chat(max_tokens=0), "max_tokens"),
])
def test_bad_chat_bodies_name_the_parameter(body: dict, param: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        request_from_chat(body)
    assert err.value.param == param


def test_request_from_json_takes_router_fields_or_openai_bodies() -> None:
    req = request_from_json({"modality": "image", "image_size": "256x256", "image_steps": 10, "min_quality": "best"})
    assert req.pixels == 256 * 256 and req.min_quality == 3
    assert request_from_json(chat()).task == "chat"
    assert request_from_json({"prompt": "def f():", "max_tokens": 32}).task == "completion"
    for bad, param in (({"modality": "text", "colour": "red"}, "colour"), ({"tokens": 3}, "modality"),
                       ({"modality": "smell"}, "modality"), ({"modality": "image", "image_size": "big"}, "image_size")):
        with pytest.raises(InvalidRequestError) as err:
            request_from_json(bad)
        assert err.value.param == param


# -- the CLI -------------------------------------------------------------------------------------
def test_omniforge_route_explains_a_request_file(router: Router, tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(route)
    request = tmp_path / "request.json"
    request.write_text(json.dumps(chat("Bonjour", metadata={"language": "fr"})))
    runner = CliRunner()

    result = runner.invoke(app, [str(request)])
    assert result.exit_code == 0, result.output
    assert "chosen: fast-tiny" in result.output and "language fr not in [en]" in result.output

    result = runner.invoke(app, [str(request), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["chosen"] == "fast-tiny"

    result = runner.invoke(app, [str(request), "--no-explain"])
    assert result.stdout.strip() == "fast-tiny"

    request.write_text("{not json")
    result = runner.invoke(app, [str(request)])
    assert result.exit_code != 0 and isinstance(result.exception, InvalidRequestError)


def test_decision_built_by_hand_without_candidates_cannot_run() -> None:
    with pytest.raises(InvalidRequestError, match="no model left"):
        route_and_run(Decision("x", [], RouteRequest()), lambda m: m)
