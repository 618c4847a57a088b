"""Vision backends through load_model, as a user's model is loaded: image-facts on synthetic
images (size, colours, OCR, the house checker), a tiny random Llava saved and loaded by
transformers-vlm, and llama-cpp-vision's option checks and prompt handling on the embedded GGUF."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from omniforge.backends import load_model
from omniforge.catalog.spec import ModelSpec
from omniforge.config import Settings, load_settings
from omniforge.errors import ContextLengthExceededError, InvalidRequestError, ModelLoadError
from omniforge.types import GenerationParams, Message
from tests.conftest import make_home
from tests.tiny_vlm import IMAGE_TOKENS, tiny_vlm

HAS_CHECKER = importlib.util.find_spec("omniforge.house.checker") is not None
slow_vlm = pytest.mark.slow  # the first VLM test pays ~10 s for the torch and transformers imports


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(home=make_home(tmp_path_factory.mktemp("vision"))).replace(threads=1)


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def red_circle_on_blue(side: int = 256) -> Image.Image:
    image = Image.new("RGB", (side, side), (30, 70, 220))
    r = int(side * 0.225)
    c = side // 2
    ImageDraw.Draw(image).ellipse((c - r, c - r, c + r, c + r), fill=(220, 30, 30))
    return image


def sign(lines: list[str], size: tuple[int, int] = (480, 200)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    for i, line in enumerate(lines):
        draw.text((24, 24 + 70 * i), line, fill="black", font=font)
    return image


# -- image-facts -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def facts(settings: Settings):
    spec = ModelSpec(id="image-facts", modality="vision", backend="image-facts", source="package:rapidocr_onnxruntime")
    instance = load_model(spec, settings)
    yield instance
    instance.close()


def lines_of(text: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in text.splitlines())


def test_facts_read_text_in_reading_order(facts) -> None:
    found = lines_of(facts.analyse(sign(["OPEN 9 TO 5", "Main Street"])))
    assert found["size"] == "480x200 pixels (landscape)"
    assert found["text"] == '"OPEN 9 TO 5" / "Main Street"'
    assert found["colours"].startswith("white ")


def test_facts_name_colours_with_shares(facts) -> None:
    found = lines_of(facts.analyse(red_circle_on_blue()))
    assert found["size"] == "256x256 pixels (square)"
    shares = dict(part.rsplit(" ", 1) for part in found["colours"].split(", "))
    assert list(shares) == ["blue", "red"]  # largest first
    blue, red = (int(shares[c].rstrip("%")) for c in ("blue", "red"))
    assert 80 <= blue + red <= 100 and 10 <= red <= 25  # the circle covers pi * 0.225^2 = 16%
    assert found["text"] == "none found"


def test_facts_are_deterministic_and_accept_other_modes(facts) -> None:
    image = red_circle_on_blue(128)
    assert facts.analyse(image) == facts.analyse(image)
    rgba = image.convert("RGBA")
    assert lines_of(facts.analyse(rgba))["colours"] == lines_of(facts.analyse(image))["colours"]
    grey = Image.new("L", (64, 32), 128)
    found = lines_of(facts.analyse(grey))
    assert found["size"] == "64x32 pixels (landscape)" and found["colours"] == "grey 100%"


@pytest.mark.parametrize(
    ("rgb", "name"),
    [((255, 0, 0), "red"), ((0, 160, 0), "green"), ((0, 0, 255), "blue"), ((255, 230, 0), "yellow"),
     ((255, 140, 0), "orange"), ((128, 0, 128), "purple"), ((255, 255, 255), "white"), ((0, 0, 0), "black"),
     ((128, 128, 128), "grey"), ((139, 69, 19), "brown"), ((255, 105, 180), "pink"), ((255, 192, 203), "pink")],
)
def test_named_colours(rgb: tuple[int, int, int], name: str) -> None:
    from omniforge.backends.image_facts import colour_shares

    assert colour_shares(Image.new("RGB", (16, 16), rgb)) == [(name, 1.0)]


@pytest.mark.skipif(not HAS_CHECKER, reason="omniforge.house.checker has not landed yet")
def test_facts_include_the_house_checker_reading(facts) -> None:
    found = lines_of(facts.analyse(red_circle_on_blue(32)))
    assert "shapes" in found
    assert "red circle" in found["shapes"] and "blue background" in found["shapes"]


def test_facts_reject_what_is_not_an_image(facts) -> None:
    with pytest.raises(InvalidRequestError):
        facts.analyse(b"not an image")


# -- transformers-vlm --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vlm(settings: Settings, tmp_path_factory: pytest.TempPathFactory):
    folder = tiny_vlm(tmp_path_factory.mktemp("tiny-vlm") / "llava")
    spec = ModelSpec(id="tiny-llava", modality="text", backend="transformers-vlm", source=str(folder))
    instance = load_model(spec, settings)
    yield instance
    instance.close()


def complete(model, prompt: str, params: GenerationParams, images=None):
    deltas = list(model.generate(prompt, params, images=images))
    assert all(d.finish_reason is None for d in deltas[:-1])
    return "".join(d.text for d in deltas), deltas[-1]


@slow_vlm
def test_vlm_marks_images_in_the_chat_prompt(vlm) -> None:
    assert vlm.accepts_images
    image = png(red_circle_on_blue(40))
    prompt, stops = vlm.chat_prompt(
        [Message("system", "be brief"), Message("user", "what is this?", images=[image, image])]
    )
    assert prompt == "<s>SYSTEM: be brief\nUSER: <image><image>what is this?\nASSISTANT:"
    assert stops == []


@slow_vlm
def test_vlm_generates_with_an_image(vlm) -> None:
    prompt, _ = vlm.chat_prompt([Message("user", "describe", images=[png(red_circle_on_blue(40))])])
    text, last = complete(vlm, prompt, GenerationParams(max_tokens=5, temperature=0), [red_circle_on_blue(40)])
    assert last.finish_reason == "length" and last.usage.completion_tokens == 5
    text_tokens = len(vlm.tokenize(prompt))  # the <image> marker counts once here
    assert last.usage.prompt_tokens == text_tokens - 1 + IMAGE_TOKENS
    assert isinstance(text, str)


@slow_vlm
def test_vlm_sampling_is_reproducible_with_a_seed(vlm) -> None:
    prompt, _ = vlm.chat_prompt([Message("user", "describe", images=[png(red_circle_on_blue(40))])])
    image = [red_circle_on_blue(40)]
    runs = [complete(vlm, prompt, GenerationParams(max_tokens=12, temperature=1.0, seed=s), image)[0] for s in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    greedy = [complete(vlm, prompt, GenerationParams(max_tokens=6, temperature=0), image)[0] for _ in range(2)]
    assert greedy[0] == greedy[1]


@slow_vlm
def test_vlm_image_changes_the_answer(vlm) -> None:
    prompt, _ = vlm.chat_prompt([Message("user", "describe", images=[b"x"])])
    params = GenerationParams(max_tokens=8, temperature=0)
    red = complete(vlm, prompt, params, [red_circle_on_blue(40)])[0]
    grey = complete(vlm, prompt, params, [Image.new("RGB", (40, 40), (128, 128, 128))])[0]
    assert red != grey


@slow_vlm
def test_vlm_stop_sequence_ends_with_stop(vlm) -> None:
    prompt, _ = vlm.chat_prompt([Message("user", "describe", images=[b"x"])])
    image = [red_circle_on_blue(40)]
    full, _ = complete(vlm, prompt, GenerationParams(max_tokens=12, temperature=0), image)
    assert len(full) >= 4
    stop = full[2:4]
    text, last = complete(vlm, prompt, GenerationParams(max_tokens=12, temperature=0, stop=[stop]), image)
    assert last.finish_reason == "stop"
    assert stop not in text and full.startswith(text)


@slow_vlm
def test_vlm_text_only_prompt_and_early_close(vlm) -> None:
    prompt, _ = vlm.chat_prompt([Message("user", "hello")])
    stream = vlm.generate(prompt, GenerationParams(max_tokens=50, temperature=0))
    next(stream)
    stream.close()  # ends the worker; the next request runs normally
    _, last = complete(vlm, prompt, GenerationParams(max_tokens=3, temperature=0))
    assert last.usage.prompt_tokens == len(vlm.tokenize(prompt)) and last.usage.completion_tokens <= 3


@slow_vlm
def test_vlm_rejects_mismatched_images_and_long_prompts(vlm) -> None:
    marked, _ = vlm.chat_prompt([Message("user", "describe", images=[b"x"])])
    with pytest.raises(InvalidRequestError) as missing:
        vlm.generate(marked, GenerationParams(max_tokens=2))
    assert missing.value.param == "messages"
    plain, _ = vlm.chat_prompt([Message("user", "describe")])
    with pytest.raises(InvalidRequestError):
        vlm.generate(plain, GenerationParams(max_tokens=2), images=[red_circle_on_blue(40)])
    with pytest.raises(ContextLengthExceededError) as too_long:
        vlm.generate(marked, GenerationParams(max_tokens=vlm.context_length), images=[red_circle_on_blue(40)])
    assert too_long.value.param == "max_tokens"
    with pytest.raises(InvalidRequestError) as fim:
        vlm.generate(plain, GenerationParams(max_tokens=2), suffix="end")
    assert fim.value.param == "suffix"


def test_vlm_missing_folder_is_a_load_error(settings: Settings, tmp_path: Path) -> None:
    spec = ModelSpec(id="nowhere", modality="text", backend="transformers-vlm", source=str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(spec, settings)


# -- llama-cpp-vision --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gguf(settings: Settings) -> Path:
    from omniforge.catalog.embedded import EMBEDDED

    return next(s for s in EMBEDDED if s.id == "gemma-3-270m").local_path(settings.cache_dir)


def vision_spec(source: Path, **options) -> ModelSpec:
    return ModelSpec(id="gguf-vision", modality="text", backend="llama-cpp-vision", source=str(source), options=options)


def test_llama_vision_option_errors(settings: Settings, gguf: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        load_model(vision_spec(tmp_path / "none.gguf", mmproj="x.gguf"), settings)
    with pytest.raises(ModelLoadError, match="option mmproj is required"):
        load_model(vision_spec(gguf), settings)
    with pytest.raises(ModelLoadError, match="option mmproj names .*missing-mmproj.gguf"):
        load_model(vision_spec(gguf, mmproj="missing-mmproj.gguf"), settings)
    bad = tmp_path / "mmproj.gguf"
    bad.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(ModelLoadError, match="option chat_handler 'llava-9' is not one of"):
        load_model(vision_spec(gguf, mmproj=str(bad), chat_handler="llava-9"), settings)


@pytest.mark.slow  # loads the GGUF twice
def test_llama_vision_unreadable_projector(settings: Settings, gguf: Path, tmp_path: Path) -> None:
    bad = tmp_path / "mmproj.gguf"
    bad.write_bytes(b"GGUF" + bytes(64))
    for handler in ("llava-1.5", "gemma-3"):
        with pytest.raises(ModelLoadError, match=r"could not load the projector .*mmproj.gguf \(option mmproj\)"):
            load_model(vision_spec(gguf, mmproj=str(bad), chat_handler=handler), settings)


@pytest.mark.parametrize("name", ["llava-1.5", "llava_1_6", "moondream", "minicpm-v-2.6", "qwen2.5-vl", "mtmd", "gemma-4"])
def test_llama_vision_handler_names(name: str, gguf: Path) -> None:
    from llama_cpp import llama_chat_format

    from omniforge.backends.llama_cpp_vision import _handler_class

    assert _handler_class(vision_spec(gguf, chat_handler=name), llama_chat_format).__name__.endswith("ChatHandler")


@pytest.fixture(scope="module")
def unprojected(settings: Settings, gguf: Path, tmp_path_factory: pytest.TempPathFactory):
    """LlamaCppVision on the real text GGUF with a llava-1.5 handler whose projector was never
    started (no real mmproj exists here): prompts, text-only generation and image checks."""
    import llama_cpp
    from llama_cpp.llama_chat_format import Llava15ChatHandler

    from omniforge.backends.llama_cpp_vision import LlamaCppVision

    mmproj = tmp_path_factory.mktemp("mmproj") / "mmproj.gguf"
    mmproj.write_bytes(b"GGUF" + bytes(64))
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=512, n_threads=1, n_threads_batch=1, verbose=False)
    instance = LlamaCppVision(vision_spec(gguf, mmproj=str(mmproj)), llm, gguf, Llava15ChatHandler(str(mmproj), verbose=False), mmproj)
    yield instance
    instance.close()


def test_llama_vision_prompt_marks_images(unprojected) -> None:
    image = png(red_circle_on_blue(32))
    prompt, _ = unprojected.chat_prompt([Message("user", "what is this?", images=[image, image])])
    marker = unprojected.marker
    assert marker == "<__media__>"
    assert prompt.startswith("A chat between a curious human")  # llava-1.5's default system message
    # The handler's own rendering: its trim_blocks drops the newlines written after block tags.
    assert prompt.endswith(f"questions.USER: {marker}{marker}what is this?ASSISTANT: ")
    with pytest.raises(InvalidRequestError, match="only accepted in user messages"):
        unprojected.chat_prompt([Message("assistant", "here", images=[image])])


def test_llama_vision_text_only_generation(unprojected) -> None:
    prompt, _ = unprojected.chat_prompt([Message("user", "Say hello.")])
    _, last = complete(unprojected, prompt, GenerationParams(max_tokens=4, temperature=0))
    assert last.finish_reason in ("stop", "length") and 0 < last.usage.completion_tokens <= 4
    assert last.usage.prompt_tokens == len(unprojected.tokenize(prompt))


def test_llama_vision_image_count_must_match(unprojected) -> None:
    prompt, _ = unprojected.chat_prompt([Message("user", "what is this?", images=[b"x"])])
    with pytest.raises(InvalidRequestError, match="marks 1 image"):
        unprojected.generate(prompt, GenerationParams(max_tokens=2))
    with pytest.raises(InvalidRequestError, match="marks 0 image"):
        unprojected.generate("USER: hi\nASSISTANT:", GenerationParams(max_tokens=2), images=[red_circle_on_blue(32)])
