"""`omniforge eval transcription` and `eval retrieval`: datasets read in every layout, errors counted
against real transcripts, and recall@k of the embedded embedding model on a question set built here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from omniforge.cli.main import app
from omniforge.errors import InvalidRequestError, NotFoundError
from omniforge.evals.retrieval import load_questions
from omniforge.evals.transcription import load_dataset, normalize
from tests.unit.test_knowledge import DOCS, QUESTIONS, _library


def test_normalization_keeps_words_only() -> None:
    assert normalize("Hello, World!  It's 3 o'clock.") == "hello world it's 3 o'clock"
    assert normalize("Portez ce vieux whisky — au juge « blond »") == "portez ce vieux whisky au juge blond"
    assert normalize("¡Hola, ＭＵＮＤＯ!") == "hola mundo"  # NFKC folds full-width letters


def test_datasets_in_every_layout(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "a.wav").write_bytes(b"RIFF")
    (tmp_path / "en" / "a.txt").write_text("Hello world.\n")
    (tmp_path / "en" / "no-transcript.wav").write_bytes(b"RIFF")  # skipped: nothing to compare with
    libri = tmp_path / "84" / "121123"
    libri.mkdir(parents=True)
    (libri / "84-121123-0000.flac").write_bytes(b"fLaC")
    (libri / "84-121123.trans.txt").write_text("84-121123-0000 GO DO YOU HEAR\n")
    samples = load_dataset(tmp_path)
    assert [(s.audio.name, s.text, s.group) for s in samples] == [
        ("84-121123-0000.flac", "GO DO YOU HEAR", "84/121123"), ("a.wav", "Hello world.", "en")]
    manifest = tmp_path / "set.jsonl"
    manifest.write_text(json.dumps({"audio": "en/a.wav", "text": "hi", "language": "en"}) + "\n")
    assert [(s.audio, s.language, s.group) for s in load_dataset(manifest)] == [(tmp_path / "en" / "a.wav", "en", "en")]
    manifest.write_text(json.dumps({"audio": "missing.wav", "text": "hi"}) + "\n")
    with pytest.raises(NotFoundError, match="missing.wav"):
        load_dataset(manifest)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidRequestError, match="no audio file with a transcript"):
        load_dataset(empty)


def test_question_files_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "Why?", "file": "a\\\\b.md", "passage": "because"}\n\n')
    (q,) = load_questions(path)
    assert (q.question, q.file, q.passage) == ("Why?", "a/b.md", "because")
    path.write_text('[{"question": "Why?"}]')
    with pytest.raises(InvalidRequestError, match="question 1 needs 'question' and 'file'"):
        load_questions(path)


@pytest.fixture
def cli():
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


@pytest.mark.slow
def test_eval_transcription_counts_real_errors(cli, tmp_path: Path) -> None:
    from omniforge.audio.codec import finish_wav
    from omniforge.config import load_settings
    from omniforge.service import Service

    service = Service(load_settings(threads=1))
    try:
        clips = {"right": "The weather is lovely today.", "wrong": "The river runs to the sea."}
        for name, text in clips.items():
            _, _, stream = service.speak(text, fmt="wav")
            (tmp_path / f"{name}.wav").write_bytes(finish_wav(b"".join(stream)))
    finally:
        service.close()
    (tmp_path / "right.txt").write_text(clips["right"])
    (tmp_path / "wrong.txt").write_text("The river runs to the lake.")  # one word the audio does not say
    report_path = tmp_path / "report.json"
    result = cli("eval", "transcription", str(tmp_path), "--json", str(report_path))
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    by_name = {Path(s["audio"]).stem: s for s in report["samples"]}
    assert by_name["right"]["errors"] == 0 and by_name["right"]["words"] == 5
    assert by_name["wrong"]["errors"] == 1 and by_name["wrong"]["hypothesis"].endswith("the sea")
    assert report["wer"] == pytest.approx(1 / 11) and "WER 0.091" in result.stdout


@pytest.mark.slow
def test_eval_retrieval_reports_recall_at_k(cli, tmp_path: Path) -> None:
    folder = _library(tmp_path)
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps({"question": q, "file": f, "passage": w}) + "\n" for q, f, w in QUESTIONS))
    report_path = tmp_path / "report.json"
    result = cli("eval", "retrieval", str(folder), str(questions), "--k", "1", "--k", "3", "--json", str(report_path))
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["index"]["files"] == len(DOCS) and len(report["questions"]) == len(QUESTIONS)
    assert report["recall"]["1"] >= 0.85 and report["recall"]["3"] >= 0.95 and report["mrr"] >= 0.85
    assert report["passage_recall"]["3"] >= 0.8
    assert f"{len(QUESTIONS)} questions" in result.stdout and "recall@3" in result.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "Where?", "file": "not/there.md"}) + "\n")
    result = cli("eval", "retrieval", str(folder), str(bad))
    assert result.exit_code == 1 and "not/there.md" in result.output
