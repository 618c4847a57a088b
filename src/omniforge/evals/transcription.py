"""Transcription measured by word error rate (jiwer) on a folder of recordings with reference transcripts.

A dataset is a folder (searched recursively) of audio files, each with its transcript as a
same-named .txt file or as a line "ID text" of a LibriSpeech-style *.trans.txt beside it, or a
JSONL manifest of {"audio": path, "text": ..., "language": ...}. Samples are grouped by the folder
they sit in (e.g. one folder per language), and WER and CER are reported per group and overall
(corpus level: all errors over all reference words). Text is compared after a light normalization:
Unicode NFKC, lower case, punctuation removed; numbers are not spelled out, so "3" against
"three" counts as an error.
"""

from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError, MissingDependencyError, NotFoundError

if TYPE_CHECKING:
    from ..service import Service

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".webm", ".mp4"}


@dataclass
class Sample:
    audio: Path
    text: str
    group: str = ""
    language: str | None = None


@dataclass
class Scored:
    audio: str
    group: str
    reference: str
    hypothesis: str
    words: int
    errors: int
    chars: int
    char_errors: int
    seconds: float  # audio length
    elapsed: float  # transcription time


@dataclass
class Report:
    model: str
    samples: list[Scored] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def wer(self, group: str | None = None) -> float:
        rows = [s for s in self.samples if group is None or s.group == group]
        return sum(s.errors for s in rows) / max(1, sum(s.words for s in rows))

    def cer(self, group: str | None = None) -> float:
        rows = [s for s in self.samples if group is None or s.group == group]
        return sum(s.char_errors for s in rows) / max(1, sum(s.chars for s in rows))

    def groups(self) -> list[str]:
        return sorted({s.group for s in self.samples})

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "wer": self.wer(), "cer": self.cer(),
                "groups": {g: {"wer": self.wer(g), "cer": self.cer(g),
                               "samples": sum(s.group == g for s in self.samples)} for g in self.groups()},
                "samples": [asdict(s) for s in self.samples], "skipped": self.skipped}


def normalize(text: str) -> str:
    """NFKC, lower case, punctuation and symbols dropped (apostrophes inside words kept), spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(c)[0] in "PSZC" and c != "'" else c for c in text)
    return " ".join(w.strip("'") for w in text.split() if w.strip("'"))


def load_dataset(path: Path) -> list[Sample]:
    """The samples of a dataset folder or JSONL manifest (see the module docstring)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise NotFoundError(f"no dataset at {path}", param="data")
    if path.is_file():
        return _manifest(path)
    samples: list[Sample] = []
    listings: dict[Path, dict[str, str]] = {}
    for audio in sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()):
        own = audio.with_suffix(".txt")
        if own.is_file():
            text = own.read_text(encoding="utf-8").strip()
        else:
            if audio.parent not in listings:
                listings[audio.parent] = _trans_txt(audio.parent)
            text = listings[audio.parent].get(audio.stem, "")
        if text:
            group = str(audio.parent.relative_to(path)) if audio.parent != path else "."
            samples.append(Sample(audio, text, group))
    if not samples:
        raise InvalidRequestError(f"{path} holds no audio file with a transcript (NAME.wav + NAME.txt, "
                                  "a LibriSpeech *.trans.txt, or a JSONL manifest)", param="data")
    return samples


def _trans_txt(folder: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for listing in folder.glob("*.trans.txt"):
        for line in listing.read_text(encoding="utf-8").splitlines():
            key, _, text = line.strip().partition(" ")
            if key and text:
                out[key] = text
    return out


def _manifest(path: Path) -> list[Sample]:
    samples = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            audio = Path(row["audio"]).expanduser()
            text = str(row["text"])
        except (ValueError, KeyError, TypeError):
            raise InvalidRequestError(f"{path}:{i}: each line is a JSON object with 'audio' and 'text'",
                                      param="data") from None
        audio = audio if audio.is_absolute() else path.parent / audio
        if not audio.is_file():
            raise NotFoundError(f"{path}:{i}: no audio file at {audio}", param="data")
        samples.append(Sample(audio, text, str(row.get("group") or row.get("language") or "."),
                              row.get("language")))
    if not samples:
        raise InvalidRequestError(f"{path} lists no samples", param="data")
    return samples


def evaluate(service: Service, data: Path, model: str | None = None, language: str | None = None,
             limit: int | None = None, progress: Callable[[int, int], None] | None = None) -> Report:
    """Transcribe every sample and score it against its reference."""
    try:
        import jiwer
    except ImportError:
        raise MissingDependencyError("word error rates need the 'jiwer' package: pip install jiwer",
                                     param="data") from None
    samples = load_dataset(data)[:limit]
    spec = service.pick(model, "transcription")
    report = Report(spec.id)
    for i, sample in enumerate(samples):
        if progress:
            progress(i, len(samples))
        reference = normalize(sample.text)
        if not reference:
            report.skipped.append(f"{sample.audio}: the reference has no words")
            continue
        start = time.perf_counter()
        _, transcript = service.transcribe(sample.audio.read_bytes(), spec.id,
                                           language=sample.language or language)
        elapsed = time.perf_counter() - start
        hypothesis = normalize(transcript.text)
        words = jiwer.process_words(reference, hypothesis)
        chars = jiwer.process_characters(reference, hypothesis)
        report.samples.append(Scored(
            str(sample.audio), sample.group, reference, hypothesis, len(reference.split()),
            words.substitutions + words.deletions + words.insertions, len(reference),
            chars.substitutions + chars.deletions + chars.insertions, round(transcript.duration or 0.0, 3),
            round(elapsed, 3)))
    if progress:
        progress(len(samples), len(samples))
    return report


def summary(report: Report) -> str:
    lines = [f"{report.model}: WER {report.wer():.3f}, CER {report.cer():.3f} over {len(report.samples)} samples "
             f"({sum(s.words for s in report.samples)} words)"]
    groups = report.groups()
    if len(groups) > 1:
        lines += [f"  {g}: WER {report.wer(g):.3f}, CER {report.cer(g):.3f} "
                  f"({sum(s.group == g for s in report.samples)} samples)" for g in groups]
    audio = sum(s.seconds for s in report.samples)
    if audio:
        lines.append(f"  real-time factor {sum(s.elapsed for s in report.samples) / audio:.3f}")
    lines += [f"  skipped {s}" for s in report.skipped]
    return "\n".join(lines)


__all__ = ["Report", "Sample", "Scored", "evaluate", "load_dataset", "normalize", "summary"]
