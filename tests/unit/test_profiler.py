"""Measured cost profiles: the embedded models timed through the Service on this machine (quick mode),
saved and read back, and `omniforge profile` writing <home>/profiles/<id>.json."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from omniforge.catalog import ModelSpec
from omniforge.cli.main import OmniforgeGroup
from omniforge.cli.profile import profile
from omniforge.config import load_settings
from omniforge.router.profiler import _solve, measure, measure_all
from omniforge.router.profiles import RATE_KEYS, Profile, load_profile, save_profile
from omniforge.service import Service
from tests.conftest import make_home

RATES_OF = {
    "gemma-3-270m": {"s_per_1k_input_tokens", "s_per_1k_output_tokens"},
    "all-minilm-l6-v2": {"s_per_1k_input_tokens"},
    "piper-en-us-joe": {"s_per_audio_second"},
    "whisper-tiny.en": {"s_per_audio_second"},
    "house-image": {"s_per_image"},
    "image-facts": {"s_per_image"},
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One Service for the module (models load once per profile, not once per test), on 1 thread."""
    svc = Service(load_settings(home=make_home(tmp_path_factory.mktemp("profiler")), threads=1))
    yield svc
    svc.close()


@pytest.mark.slow
@pytest.mark.parametrize("model_id", sorted(RATES_OF))
def test_quick_profile_of_an_embedded_model(service: Service, model_id: str) -> None:
    steps: list[tuple[int, int]] = []
    p = measure(service, service.model(model_id), lambda done, total: steps.append((done, total)), quick=True)

    assert (p.model, p.measured) == (model_id, True)
    assert p.modality == service.model(model_id).modality
    assert set(p.rates) == RATES_OF[model_id]
    assert all(math.isfinite(v) and v > 0 for v in p.rates.values())
    # unloaded first, so the warm-up measured the load; image-facts loads in well under a millisecond
    # once another test in the process imported rapidocr, and then reads as 0
    assert p.load_seconds >= 0 and p.memory_mb >= 0
    assert model_id == "image-facts" or (p.load_seconds > 0 and p.memory_mb > 0)
    assert p.hardware["cores"] == os.cpu_count() and p.hardware["threads"] == 1
    # progress counts warm-up + timed runs, ending at the total
    assert steps[-1][0] == steps[-1][1] and [d for d, _ in steps] == list(range(1, len(steps) + 1))

    _check_estimates(service, p)

    home = service.settings.home
    path = save_profile(home, p)
    assert path == home / "profiles" / f"{model_id}.json"
    assert load_profile(home, model_id) == p


ONE_UNIT = {"s_per_1k_input_tokens": {"input_tokens": 1000}, "s_per_1k_output_tokens": {"output_tokens": 1000},
            "s_per_audio_second": {"audio_seconds": 1.0}, "s_per_video_second": {"video_seconds": 1.0}}


def _check_estimates(service: Service, p: Profile) -> None:
    """estimate() gives each rate for one unit and grows with every quantity."""
    for key, unit in ONE_UNIT.items():
        if key in p.rates:
            assert p.estimate(**unit) == pytest.approx(p.rates[key])
            assert p.estimate(**{k: 2 * v for k, v in unit.items()}) == pytest.approx(2 * p.rates[key])
    if p.modality == "text":
        assert p.estimate(input_tokens=500, output_tokens=50) > p.estimate(input_tokens=500)
    if "s_per_image" in p.rates:
        assert p.estimate(images=1) == pytest.approx(p.rates["s_per_image"])
        assert p.estimate(images=3) == pytest.approx(3 * p.rates["s_per_image"])
    if p.modality == "image":  # measured at a reference size and steps; time scales with both
        with service.runtime.lease(service.model(p.model)) as instance:
            default_steps = instance.default_steps
        assert p.reference == {"size": "256x256", "steps": default_steps}
        one = p.estimate(images=1, pixels=256 * 256, steps=default_steps)
        assert one == pytest.approx(p.rates["s_per_image"])
        assert p.estimate(images=1, pixels=512 * 512, steps=default_steps) == pytest.approx(4 * one)
        assert p.estimate(images=1, pixels=256 * 256, steps=2 * default_steps) == pytest.approx(2 * one)


def test_measure_all_keeps_going_past_a_model_that_fails_to_load(service: Service, tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "modules.json").write_text("not json")
    broken = service.catalog.add(ModelSpec(id="broken-embedder", modality="embedding",
                                           backend="sentence-transformers", source=str(tmp_path / "broken")))
    opened: list[str] = []

    @contextlib.contextmanager
    def steps(message: str) -> Iterator[None]:
        opened.append(message)
        yield None

    try:
        run = measure_all(service, [broken, service.model("image-facts")], steps, quick=True)
    finally:
        service.catalog.remove("broken-embedder")
    assert list(run.errors) == ["broken-embedder"] and run.errors["broken-embedder"]
    assert [p.model for p in run.profiles] == ["image-facts"] and run.profiles[0].measured
    assert opened == ["profiling broken-embedder", "profiling image-facts"]


def test_quick_mode_skips_video_with_an_unmeasured_guess(service: Service) -> None:
    p = measure(service, service.model("storyboard"), quick=True)
    assert p.measured is False and "quick" in p.notes[0]
    assert "storyboard" not in {m.id for m in service.runtime.loaded()}  # nothing was run


def test_two_runs_are_solved_into_input_and_output_rates() -> None:
    a, b = 0.004, 0.06  # seconds per input token, per output token
    t1, t2 = 500 * a + 1 * b, 20 * a + 64 * b
    assert _solve(t1, 500, 1, t2, 20, 64) == (pytest.approx(a), pytest.approx(b))
    # noise that makes the system give a negative rate falls back to the plain ratios
    assert _solve(0.01, 500, 1, 5.0, 20, 64) == (pytest.approx(0.01 / 500), pytest.approx(5.0 / 64))
    assert set(RATES_OF["gemma-3-270m"]) <= set(RATE_KEYS)


# -- the command ---------------------------------------------------------------------------------
@pytest.fixture
def cli() -> typer.Typer:
    """`profile` on a small app with omniforge's error handling (cli/main.py registers it for real)."""
    app = typer.Typer(cls=OmniforgeGroup)

    @app.callback()
    def _root() -> None:
        pass

    app.command("profile")(profile)
    return app


def test_profile_command_writes_the_profile_file(cli: typer.Typer, _isolated_home: Path) -> None:
    result = CliRunner().invoke(cli, ["profile", "image-facts", "--quick", "--json"])
    assert result.exit_code == 0, result.output
    path = _isolated_home / "profiles" / "image-facts.json"
    assert path.is_file()
    saved = load_profile(_isolated_home, "image-facts")
    assert saved is not None and saved.measured and saved.rates["s_per_image"] > 0
    printed = json.loads(result.stdout)
    assert [p["model"] for p in printed] == ["image-facts"] and printed[0] == saved.to_dict()


def test_profile_command_table_and_errors(cli: typer.Typer, _isolated_home: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["profile", "image-facts", "--quick"])
    assert result.exit_code == 0, result.output
    assert "image-facts" in result.stdout and "s/image" in result.stdout

    result = runner.invoke(cli, ["profile", "no-such-model"])
    assert result.exit_code == 1 and "error:" in result.output and "no-such-model" in result.output
    result = runner.invoke(cli, ["profile", "image-facts", "--all"])
    assert result.exit_code == 1 and "--all" in result.output

    result = runner.invoke(cli, ["profile", "storyboard", "--quick"])  # skipped: no guess is saved
    assert result.exit_code == 0 and "quick" in result.output
    assert not (_isolated_home / "profiles" / "storyboard.json").exists()
