"""The marketing suite: SEO copy parsing, then the whole recipe on the embedded models (copy, translation,
images, a narrated video whose voice-over whisper can read back)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image

from omniforge.config import load_settings
from omniforge.errors import InvalidRequestError
from omniforge.pipelines import ArtifactStore, PipelineRunner, PipelineStore
from omniforge.pipelines.marketing import DESCRIPTION_CHARS, TITLE_CHARS, parse_copy, seo_copy
from omniforge.service import Service
from omniforge.video.assemble import probe

BRIEF = "A lightweight red hiking backpack with a rain cover and padded straps for day trips in the mountains."


def test_copy_fields_are_checked_and_completed_from_the_brief() -> None:
    good = parse_copy(" Red Hiking Backpack\nDescription: Light and dry on every trail.\n"
                      "Keywords: hiking backpack, Rain Cover, hiking backpack, ", BRIEF)
    assert good["title"] == "Red Hiking Backpack" and good["description"] == "Light and dry on every trail."
    assert good["keywords"][:2] == ["hiking backpack", "rain cover"] and len(good["keywords"]) == 3
    long = parse_copy(" " + "Backpack " * 20 + "\nDescription: " + "A fine sentence here. " * 12, BRIEF)
    assert len(long["title"]) <= TITLE_CHARS and long["title"].startswith("Backpack Backpack")
    assert len(long["description"]) <= DESCRIPTION_CHARS and long["description"].endswith("here.")
    empty = parse_copy("", BRIEF)  # nothing usable: the brief's first sentence and words
    assert empty["title"] == BRIEF.rstrip(".")[:TITLE_CHARS].rsplit(" ", 1)[0]
    assert empty["description"] == BRIEF and len(empty["keywords"]) == 3 and "backpack" not in {"a", "the"}
    assert all(k in BRIEF.lower() for k in empty["keywords"])


def test_a_bad_brief_is_refused() -> None:
    for brief in ("   ", "x" * 5000):
        with pytest.raises(InvalidRequestError, match="brief"):
            seo_copy(None, brief)  # type: ignore[arg-type]  # refused before any model is asked


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Service:
    svc = Service(load_settings(home=tmp_path_factory.mktemp("marketing") / "home", threads=1))
    yield svc
    svc.close()


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


@pytest.mark.slow
def test_marketing_suite_makes_every_artifact_in_one_job(service: Service, tmp_path: Path) -> None:
    store = PipelineStore(tmp_path / "jobs.db")
    runner = PipelineRunner(service, store, ArtifactStore(tmp_path / "artifacts", store))
    try:
        job = runner.wait(runner.submit("marketing-suite", {"brief": BRIEF, "languages": "fr, es", "images": 2,
                                                            "seconds": 8}), timeout=900)
        assert job.status == "succeeded", job.error
        out = job.outputs
        copy = runner.artifacts.read(out["copy"]).decode()
        translations = {k: runner.artifacts.read(v).decode() for k, v in out["translations"].items()}
        images = [Image.open(io.BytesIO(runner.artifacts.read(ref))) for ref in out["images"]]
        video = runner.artifacts.read(out["video"])
        owned = {a["sha256"] for a in store.job_artifacts(job.id)}
    finally:
        runner.close()
        store.close()
    # copy: a title and description search results show whole, keywords from the product
    assert 0 < len(out["title"]) <= TITLE_CHARS and 0 < len(out["description"]) <= DESCRIPTION_CHARS
    assert 3 <= len(out["keywords"]) <= 8 and _words(" ".join(out["keywords"])) & _words(BRIEF)
    assert copy.startswith(f"# {out['title']}\n") and all(f"- {k}" in copy for k in out["keywords"])
    # translations: the same Markdown skeleton in each language
    assert sorted(translations) == ["French", "Spanish"]
    skeleton = [re.match(r"^(#+ |- )?", line).group(0) for line in copy.split("\n")]
    for text in translations.values():
        assert [re.match(r"^(#+ |- )?", line).group(0) for line in text.split("\n")] == skeleton
        assert text != copy
    # images: real PNGs of the default size
    assert len(images) == 2 and all(im.format == "PNG" and im.size[0] >= 64 for im in images)
    # video: plays, has a voice-over as long as the video, and whisper hears the narration in it
    info = probe(video)
    assert info["video"] and info["audio"] and info["video_codec"] == "h264"
    assert info["duration"] == pytest.approx(out["video_seconds"], abs=0.1) and info["duration"] > 2  # two scenes
    _, heard = service.transcribe(video)  # the MP4's audio track, decoded by ffmpeg
    narration = _words(out["narration"])
    assert len(_words(heard.text) & narration) >= 0.6 * len(narration), (heard.text, out["narration"])
    # one job owns every artifact
    refs = [out["copy"], out["video"], *out["images"], *out["translations"].values()]
    assert {r["artifact"] for r in refs} <= owned
