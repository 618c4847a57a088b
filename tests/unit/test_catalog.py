"""The catalog: embedded models, the user's file, aliases, OpenAI names, atomic writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from omniforge.catalog import EMBEDDED, Catalog, ModelSpec
from omniforge.config import load_settings
from omniforge.errors import InvalidRequestError, ModelNotFoundError

DEFAULTS = {
    "default_chat_model": "gemma-3-270m",
    "default_speech_model": "piper-en-us-joe",
    "default_transcription_model": "whisper-tiny.en",
    "default_translation_model": "whisper-base",
    "default_embedding_model": "all-minilm-l6-v2",
}


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "catalog.yaml", DEFAULTS)


def test_embedded_models_have_the_issue_ids_and_licenses(catalog: Catalog) -> None:
    ids = {s.id: s for s in catalog.all()}
    assert set(ids) >= {"gemma-3-270m", "piper-en-us-joe", "whisper-tiny.en", "whisper-base", "all-minilm-l6-v2"}
    assert all(s.license and s.license != "unknown" for s in EMBEDDED)
    assert "Gemma" in ids["gemma-3-270m"].license and "GPL-3.0" in ids["piper-en-us-joe"].license


@pytest.mark.parametrize(
    ("name", "modality", "task", "expected"),
    [
        ("gpt-4o-mini", "text", None, "gemma-3-270m"),
        ("gpt-4o", "text", None, "gemma-3-270m"),
        ("tts-1", "speech", None, "piper-en-us-joe"),
        ("whisper-1", "transcription", None, "whisper-tiny.en"),
        ("whisper-1", "transcription", "translation", "whisper-base"),
        ("text-embedding-3-small", "embedding", None, "all-minilm-l6-v2"),
        (None, "embedding", None, "all-minilm-l6-v2"),
        ("whisper-base", "transcription", None, "whisper-base"),
    ],
)
def test_openai_names_resolve_to_modality_defaults(catalog, name, modality, task, expected) -> None:
    assert catalog.resolve(name, modality, task=task).id == expected


def test_unknown_and_wrong_modality_are_clear(catalog: Catalog) -> None:
    with pytest.raises(ModelNotFoundError) as err:
        catalog.resolve("no-such-model", "text")
    assert err.value.status_code == 404 and err.value.code == "model_not_found"
    with pytest.raises(InvalidRequestError, match="is a speech model"):
        catalog.resolve("piper-en-us-joe", "text")


def test_add_alias_remove_round_trip_persists(tmp_path: Path, catalog: Catalog) -> None:
    gguf = tmp_path / "my.gguf"
    gguf.write_bytes(b"GGUF")
    catalog.add(ModelSpec(id="mine", modality="text", backend="llama-cpp", source=str(gguf),
                          license="MIT", aliases=["my-llm"]))
    again = Catalog(catalog.path, DEFAULTS)  # read back from disk
    assert again.resolve("my-llm", "text").id == "mine"
    assert again.get("mine").license == "MIT"
    again.remove("mine")
    assert "mine" not in {s.id for s in Catalog(catalog.path, DEFAULTS).all()}


def test_bad_additions_change_nothing(tmp_path: Path, catalog: Catalog) -> None:
    gguf = tmp_path / "a.gguf"
    gguf.write_bytes(b"GGUF")
    catalog.add(ModelSpec(id="a", modality="text", backend="llama-cpp", source=str(gguf), aliases=["x"]))
    before = catalog.path.read_bytes()
    bad = [
        ModelSpec(id="b", modality="text", backend="llama-cpp", source=str(tmp_path / "missing.gguf")),
        ModelSpec(id="b", modality="text", backend="no-such-engine", source=str(gguf)),
        ModelSpec(id="b", modality="speech", backend="llama-cpp", source=str(gguf)),
        ModelSpec(id="b", modality="text", backend="llama-cpp", source=str(gguf), aliases=["x"]),
        ModelSpec(id="a", modality="text", backend="llama-cpp", source=str(gguf)),
        ModelSpec(id="gemma-3-270m", modality="text", backend="llama-cpp", source=str(gguf)),
    ]
    for spec in bad:
        with pytest.raises(InvalidRequestError):
            catalog.add(spec)
    assert catalog.path.read_bytes() == before
    with pytest.raises(InvalidRequestError, match="embedded"):
        catalog.remove("gemma-3-270m")
    with pytest.raises(ModelNotFoundError):
        catalog.remove("nope")


def test_corrupt_catalog_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("models: [unclosed")
    with pytest.raises(InvalidRequestError, match="not valid YAML"):
        Catalog(path, DEFAULTS)
    path.write_text("models:\n  - id: x\n    modality: text\n    backend: llama-cpp\n    source: /x\n    colour: red\n")
    with pytest.raises(InvalidRequestError, match="unknown field"):
        Catalog(path, DEFAULTS)


def test_embedded_sizes_match_the_shipped_files() -> None:
    """The size hints used before materializing must match the real weights."""
    cache = load_settings().cache_dir
    for spec in EMBEDDED:
        if spec.options["size_bytes"] == 0:  # a composite (storyboard): no weights of its own
            continue
        path = spec.local_path(cache)
        weights = path if path.is_file() else max((p for p in path.rglob("*") if p.is_file()),
                                                  key=lambda p: p.stat().st_size)
        assert weights.stat().st_size == spec.options["size_bytes"], spec.id
