"""The `omniforge` CLI driven in-process with typer's CliRunner, on the real embedded models.

Every test runs under its own OMNIFORGE_HOME (tests/conftest.py) whose model cache is the shared
one, so gemma's 250 MB of weights are joined once per machine, not once per test.
"""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from omniforge.catalog import EMBEDDED
from omniforge.cli.main import app
from omniforge.config import load_settings
from tests.recipe_cases import cases as recipe_cases


@pytest.fixture
def home(_isolated_home: Path) -> Path:
    return _isolated_home


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args: str, input: str | bytes | None = None):
        return runner.invoke(app, list(args), input=input)

    return invoke


def gemma_gguf() -> Path:
    """The embedded gemma GGUF, joined into the shared cache (once per machine)."""
    spec = next(s for s in EMBEDDED if s.id == "gemma-3-270m")
    return spec.local_path(load_settings().cache_dir)


def assert_one_error_line(result, *fragments: str) -> None:
    """Exit 1 with exactly one `error: ...` line on stderr and no traceback anywhere."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in errors[0]


# -- models ------------------------------------------------------------------------------------


def test_models_list_shows_every_embedded_model(cli, home):
    result = cli("models", "list")
    assert result.exit_code == 0, result.output
    for spec in EMBEDDED:
        assert spec.id in result.stdout
    assert "Gemma Terms of Use" in result.stdout


def test_models_list_json(cli, home):
    result = cli("models", "list", "--json")
    assert result.exit_code == 0, result.output
    ids = {m["id"] for m in json.loads(result.stdout)}
    assert {s.id for s in EMBEDDED} <= ids


@pytest.mark.slow
def test_models_add_show_chat_through_alias_then_remove(cli, home, tmp_path):
    gguf = tmp_path / "my-gemma.gguf"
    gguf.symlink_to(gemma_gguf())

    added = cli(
        "models",
        "add",
        "--source",
        str(gguf),
        "--id",
        "my-gemma",
        "--alias",
        "buddy",
        "--alias",
        "pal",
        "--license",
        "Gemma Terms of Use",
    )
    assert added.exit_code == 0, added.output
    assert "my-gemma (text, llama-cpp)" in added.stdout  # backend and modality inferred from .gguf
    entry = yaml.safe_load((home / "catalog.yaml").read_text())["models"][0]
    assert entry["id"] == "my-gemma" and entry["aliases"] == ["buddy", "pal"]
    assert entry["license"] == "Gemma Terms of Use"

    shown = cli("models", "show", "buddy")
    assert shown.exit_code == 0, shown.output
    assert "my-gemma" in shown.stdout and "llama-cpp" in shown.stdout and "buddy, pal" in shown.stdout
    assert "my-gemma" in cli("models", "list").stdout

    chat = cli("chat", "--model", "buddy", "--max-tokens", "4", "Say hello.")
    assert chat.exit_code == 0, chat.output
    assert chat.stdout.endswith("\n")
    assert "loaded my-gemma" in chat.stderr  # the load is reported on stderr, never on stdout
    assert "loaded" not in chat.stdout

    removed = cli("models", "remove", "my-gemma")
    assert removed.exit_code == 0, removed.output
    assert_one_error_line(cli("models", "show", "buddy"), "buddy")
    assert yaml.safe_load((home / "catalog.yaml").read_text())["models"] == []


def test_models_add_of_a_missing_path_changes_nothing(cli, home, tmp_path):
    weights = tmp_path / "tiny.gguf"
    weights.write_bytes(b"GGUF")  # only added, never loaded
    assert cli("models", "add", "--source", str(weights), "--id", "tiny").exit_code == 0
    before = (home / "catalog.yaml").read_bytes()

    missing = cli("models", "add", "--source", str(tmp_path / "nope.gguf"), "--id", "nope")
    assert_one_error_line(missing, "does not exist")
    assert (home / "catalog.yaml").read_bytes() == before


def test_models_add_without_a_known_layout_asks_for_backend(cli, home, tmp_path):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\0")
    assert_one_error_line(cli("models", "add", "--source", str(weights)), "--backend")
    assert not (home / "catalog.yaml").exists()


def test_models_add_infers_folder_backends(cli, home, tmp_path):
    whisper = tmp_path / "my-whisper"
    whisper.mkdir()
    (whisper / "model.bin").write_bytes(b"\0")
    (whisper / "config.json").write_text("{}")
    st = tmp_path / "my-embedder"
    st.mkdir()
    (st / "modules.json").write_text("[]")
    assert "(transcription, faster-whisper)" in cli("models", "add", "--source", str(whisper)).stdout
    assert "(embedding, sentence-transformers)" in cli("models", "add", "--source", str(st)).stdout
    ids = [m["id"] for m in yaml.safe_load((home / "catalog.yaml").read_text())["models"]]
    assert ids == ["my-whisper", "my-embedder"]


def test_home_option_picks_the_state_directory(cli, home, tmp_path):
    other = tmp_path / "other-home"
    weights = tmp_path / "elsewhere.gguf"
    weights.write_bytes(b"GGUF")
    assert cli("--home", str(other), "models", "add", "--source", str(weights)).exit_code == 0
    assert "elsewhere" in (other / "catalog.yaml").read_text()
    assert "elsewhere" in cli("--home", str(other), "models", "list").stdout
    assert not (home / "catalog.yaml").exists()
    assert "elsewhere" not in cli("models", "list").stdout


def test_embedded_models_cannot_be_removed(cli, home):
    assert_one_error_line(cli("models", "remove", "gemma-3-270m"), "embedded")


# -- serve -------------------------------------------------------------------------------------


def test_serve_takes_flags_over_env_over_config(cli, home, tmp_path, monkeypatch):
    import omniforge.server.run

    config = tmp_path / "omniforge.toml"
    config.write_text('[omniforge]\nhost = "0.0.0.0"\nport = 9000\nthreads = 1\n')
    monkeypatch.setenv("OMNIFORGE_PORT", "9100")
    monkeypatch.setenv("OMNIFORGE_THREADS", "2")
    # Safe by default: no key, no binding beyond loopback.
    assert_one_error_line(cli("serve", "--config", str(config)), "refusing to serve on 0.0.0.0 without an API key")
    monkeypatch.setenv("OMNIFORGE_API_KEYS", "sk-test")

    # The real serve(): an unknown preload id fails in one line before anything listens.
    result = cli("serve", "--config", str(config), "--port", "9200", "--preload", "gemma-3-270m,buddy-less")
    assert_one_error_line(result, "buddy-less")

    started = []
    monkeypatch.setattr(omniforge.server.run, "serve", started.append)

    result = cli(
        "serve", "--config", str(config), "--port", "9200", "--preload", "gemma-3-270m", "--preload", "all-minilm-l6-v2"
    )
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert (settings.host, settings.port, settings.threads) == ("0.0.0.0", 9200, 2)
    assert settings.preload == ["gemma-3-270m", "all-minilm-l6-v2"]
    assert settings.home == home


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("chat", "--model", "no-such-model", "hi"),
        ("generate", "--model", "no-such-model", "hi"),
        ("embed", "--model", "no-such-model", "hi"),
        ("models", "show", "no-such-model"),
    ],
)
def test_unknown_model_is_one_error_line(cli, home, args):
    assert_one_error_line(cli(*args), "The model 'no-such-model' does not exist")


def test_unknown_speech_model_leaves_no_file(cli, home, tmp_path):
    out = tmp_path / "x.wav"
    assert_one_error_line(cli("speak", "hi", "-o", str(out), "--model", "no-such-model"), "no-such-model")
    assert list(tmp_path.glob("*.wav*")) == [] and list(tmp_path.glob(".x.wav*")) == []


def test_wrong_modality_is_one_error_line(cli, home):
    assert_one_error_line(cli("chat", "--model", "all-minilm-l6-v2", "hi"), "embedding model")


def test_missing_audio_file_is_one_error_line(cli, home, tmp_path):
    assert_one_error_line(cli("transcribe", str(tmp_path / "missing.wav")), "missing.wav")


def test_bad_config_file_is_one_error_line(cli, home, tmp_path):
    config = tmp_path / "omniforge.toml"
    config.write_text("port = 'not a number'\n")
    assert_one_error_line(cli("--config", str(config), "models", "list"), "port")


def test_empty_prompt_is_an_error(cli, home):
    assert_one_error_line(cli("generate", input=""), "no prompt")


# -- speech and transcription ------------------------------------------------------------------


def test_speak_with_a_bad_format_leaves_no_file(cli, home, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    assert_one_error_line(cli("speak", "Hello.", "-o", str(folder / "out.wav"), "--format", "ogg"), "--format")
    assert_one_error_line(cli("speak", "Hello.", "-o", str(folder / "out.xyz")), "--format")
    assert list(folder.iterdir()) == []


@pytest.mark.slow
def test_speak_then_transcribe(cli, home, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "out.wav"
    spoken = cli("speak", "The quick brown fox jumps over the lazy dog.", "-o", str(out))
    assert spoken.exit_code == 0, spoken.output
    assert spoken.stdout == ""  # stdout stays clean; the note goes to stderr
    with wave.open(str(out)) as w:  # a real WAV with true sizes, not a stream's "unknown length"
        assert w.getnchannels() == 1 and w.getframerate() == 22050
        # the frames fill the file but for the header and the provenance manifest's chunk
        assert 22050 < w.getnframes() and w.getnframes() * 2 + 44 < out.stat().st_size
    assert [p.name for p in folder.iterdir()] == ["out.wav"]  # no temporary left behind

    text = cli("transcribe", str(out))
    assert text.exit_code == 0, text.output
    words = text.stdout.lower()
    for word in ("quick", "brown", "fox", "lazy", "dog"):
        assert word in words

    srt = cli("transcribe", str(out), "--format", "srt")
    assert srt.exit_code == 0 and "-->" in srt.stdout

    verbose = cli("transcribe", str(out), "--format", "verbose_json", "--words")
    assert verbose.exit_code == 0, verbose.output
    data = json.loads(verbose.stdout)
    assert "fox" in " ".join(w["word"] for w in data["words"]).lower()


# -- text and embeddings -----------------------------------------------------------------------


@pytest.mark.slow
def test_generate_is_repeatable_with_a_seed(cli, home):
    gemma_gguf()  # join the weights first, so the timing is the model's
    first = cli("generate", "--max-tokens", "4", "--seed", "7", "def add(a, b):")
    second = cli("generate", "--max-tokens", "4", "--seed", "7", "def add(a, b):")
    assert first.exit_code == 0, first.output
    assert len(first.stdout) > 1 and first.stdout == second.stdout


@pytest.mark.slow
def test_generate_reads_stdin(cli, home):
    result = cli("generate", "--max-tokens", "4", "--seed", "1", "--stop", "\\n", input="The capital of France is")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1  # the stop sequence held; one newline ends the output


@pytest.mark.slow
def test_chat_interactive_keeps_the_conversation(cli, home):
    result = cli("chat", "-i", "--max-tokens", "4", "--seed", "1", input="Hello!\n/reset\nWhat is 2+2?\n/exit\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") >= 2  # two answers, each ended by one newline
    assert "conversation cleared" in result.stderr


@pytest.mark.slow
def test_embed_summary_and_vectors(cli, home):
    summary = cli("embed", "--summary", "The cat sat on the mat.", "A kitten rested on a rug.")
    assert summary.exit_code == 0, summary.output
    assert "2 vector(s) of 384 dimensions" in summary.stdout
    assert "1 ~ 2:" in summary.stdout

    vectors = cli("embed", input="first line\nsecond line\n")
    assert vectors.exit_code == 0, vectors.output
    rows = [json.loads(line) for line in vectors.stdout.splitlines()]
    assert len(rows) == 2 and all(len(r) == 384 for r in rows)


# -- images, video, vision ---------------------------------------------------------------------


def test_image_writes_the_file_and_is_repeatable(cli, home, tmp_path):
    out = tmp_path / "a.png"
    args = ("image", "a small blue square at the top on a yellow background", "-o", str(out), "--seed", "4",
            "--size", "64x64", "--steps", "8")
    result = cli(*args)
    assert result.exit_code == 0, result.output
    first = out.read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = Image.open(io.BytesIO(first)).convert("RGB").tobytes()
    assert cli(*args).exit_code == 0  # the same pixels again (each file carries its own signed manifest)
    assert Image.open(out).convert("RGB").tobytes() == pixels


def test_image_errors_are_one_line_and_leave_no_file(cli, home, tmp_path):
    out = tmp_path / "a.gif"
    assert_one_error_line(cli("image", "a red circle", "-o", str(out)), "format")
    out = tmp_path / "a.png"
    assert_one_error_line(cli("image", "a red circle", "-o", str(out), "--size", "100x100"), "size")
    assert_one_error_line(cli("image", "the weather tomorrow", "-o", str(out)), "prompt")
    assert not out.exists()


def test_edit_with_a_mask_of_another_size_is_one_error_line(cli, home, tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 64)).save(tmp_path / "in.png")
    Image.new("RGBA", (32, 32)).save(tmp_path / "mask.png")
    result = cli("edit", str(tmp_path / "in.png"), "a red circle", "--mask", str(tmp_path / "mask.png"),
                 "-o", str(tmp_path / "out.png"))
    assert_one_error_line(result, "must match")
    assert not (tmp_path / "out.png").exists()


def test_describe_reads_the_sign(cli, home, tmp_path):
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (400, 140), (255, 255, 255))
    ImageDraw.Draw(img).text((30, 40), "OPEN", fill=(0, 0, 0), font=ImageFont.load_default(size=56))
    img.save(tmp_path / "sign.png")
    result = cli("describe", str(tmp_path / "sign.png"), "--facts")
    assert result.exit_code == 0, result.output
    assert 'text: "OPEN"' in result.stdout


def test_eval_house_image_prints_the_accuracy_table(cli, home):
    result = cli("eval", "house-image", "--n", "12", "--steps", "12")
    assert result.exit_code == 0, result.output
    for attribute in ("background", "colour", "shape", "position", "size", "all"):
        assert attribute in result.stdout


def test_models_add_infers_diffusers_folders(cli, home, tmp_path):
    from tests.tinymodels import tiny_sd

    folder = tiny_sd(tmp_path / "sd")
    result = cli("models", "add", "--source", str(folder), "--id", "my-sd")
    assert result.exit_code == 0, result.output
    shown = cli("models", "show", "my-sd")
    assert "diffusers" in shown.stdout and "image" in shown.stdout


# -- every built-in recipe through `omniforge run` ---------------------------------------------------
@pytest.fixture(scope="module")
def question_wav() -> bytes:
    from omniforge.audio.codec import finish_wav
    from omniforge.service import Service

    service = Service(load_settings(threads=1))
    try:
        _, _, stream = service.speak("What is the capital of France?", fmt="wav")
        return finish_wav(b"".join(stream))
    finally:
        service.close()


def test_recipe_cases_cover_every_builtin_recipe(tmp_path):
    from omniforge.pipelines import builtin_recipes

    assert set(recipe_cases(tmp_path, b"")) == set(builtin_recipes())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(recipe_cases(Path("/nonexistent"), b"")))
def test_builtin_recipe_runs_from_the_cli(cli, home, tmp_path, question_wav, name):
    inputs, check = recipe_cases(tmp_path, question_wav)[name]
    args = []
    for key, value in inputs.items():
        if isinstance(value, bytes):  # binary inputs are files
            path = tmp_path / f"{key}.{'wav' if value[:4] == b'RIFF' else 'png'}"
            path.write_bytes(value)
            value = str(path)
        args += ["--input", f"{key}={value}"]
    result = cli("run", name, *args, "--output-dir", str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output
    outputs = json.loads(result.stdout.strip().splitlines()[-1])
    check(outputs, lambda path: Path(path).read_bytes())
