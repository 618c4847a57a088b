"""Transcript renderers: the response formats of OpenAI's transcription and translation endpoints
(json, text, srt, vtt, verbose_json) made from one internal Transcript.

verbose_json follows OpenAI's shape: task, language (the full lower-case name, "english"; always
"english" for a translation, which is the language of its output), duration, text, then
`segments` and `words` when asked for (OpenAI's timestamp_granularities). Segment fields an
engine did not fill get Whisper's meaning where it can be computed: `seek` from the start time in
10 ms mel frames, `compression_ratio` from the text as Whisper computes it (zlib).
"""

from __future__ import annotations

import zlib
from typing import Any

from ..errors import InvalidRequestError
from ..types import Segment, Transcript

__all__ = [
    "CONTENT_TYPES",
    "LANGUAGE_NAMES",
    "RESPONSE_FORMATS",
    "language_name",
    "render",
    "to_json",
    "to_srt",
    "to_text",
    "to_verbose_json",
    "to_vtt",
]

RESPONSE_FORMATS: tuple[str, ...] = ("json", "text", "srt", "verbose_json", "vtt")
CONTENT_TYPES: dict[str, str] = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}

# Whisper's languages, code -> the name OpenAI reports in verbose_json.
LANGUAGE_NAMES: dict[str, str] = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian",
    "ko": "korean", "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish",
    "pl": "polish", "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish",
    "it": "italian", "id": "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese",
    "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay", "cs": "czech",
    "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian",
    "la": "latin", "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak",
    "te": "telugu", "fa": "persian", "lv": "latvian", "bn": "bengali", "sr": "serbian",
    "az": "azerbaijani", "sl": "slovenian", "kn": "kannada", "et": "estonian", "mk": "macedonian",
    "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian", "ne": "nepali",
    "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili",
    "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer",
    "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan",
    "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi", "gu": "gujarati",
    "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek", "fo": "faroese",
    "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk", "mt": "maltese",
    "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog",
    "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala",
    "ha": "hausa", "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}  # fmt: skip


def language_name(code: str) -> str:
    """"en" -> "english"; a code Whisper does not know is returned as it is."""
    return LANGUAGE_NAMES.get(code.lower(), code)


# -- subtitles -----------------------------------------------------------------------------------


def _cues(transcript: Transcript) -> list[tuple[float, float, str]]:
    """(start, end, one-line text) per segment; a transcript without segments is one cue."""
    if transcript.segments:
        raw = [(s.start, s.end, s.text) for s in transcript.segments]
    else:
        raw = [(0.0, transcript.duration, transcript.text)]
    cues = []
    for start, end, text in raw:
        # A blank line ends a cue and "-->" starts a timing line: neither may appear in cue text.
        line = " ".join(text.split()).replace("-->", "->")
        if line:
            cues.append((max(0.0, start), max(start, end), line))
    return cues


def _timestamp(seconds: float, decimal: str) -> str:
    ms = round(seconds * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def to_srt(transcript: Transcript) -> str:
    """SubRip: numbered cues, HH:MM:SS,mmm timestamps, a blank line after each cue."""
    return "".join(
        f"{i}\n{_timestamp(start, ',')} --> {_timestamp(end, ',')}\n{text}\n\n"
        for i, (start, end, text) in enumerate(_cues(transcript), start=1)
    )


def to_vtt(transcript: Transcript) -> str:
    """WebVTT: the WEBVTT header, then HH:MM:SS.mmm cues separated by blank lines."""
    body = "".join(
        f"{_timestamp(start, '.')} --> {_timestamp(end, '.')}\n{text}\n\n" for start, end, text in _cues(transcript)
    )
    return "WEBVTT\n\n" + body


# -- JSON ----------------------------------------------------------------------------------------


def to_json(transcript: Transcript) -> dict[str, Any]:
    return {"text": transcript.text}


def to_text(transcript: Transcript) -> str:
    return transcript.text + "\n"


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _segment_json(seg: Segment) -> dict[str, Any]:
    compression_ratio = seg.compression_ratio
    return {
        "id": seg.id,
        "seek": seg.seek if seg.seek is not None else round(seg.start * 100),
        "start": seg.start,
        "end": seg.end,
        "text": seg.text,
        "tokens": list(seg.tokens),
        "temperature": seg.temperature,
        "avg_logprob": seg.avg_logprob if seg.avg_logprob is not None else 0.0,
        "compression_ratio": compression_ratio if compression_ratio is not None else _compression_ratio(seg.text),
        "no_speech_prob": seg.no_speech_prob if seg.no_speech_prob is not None else 0.0,
    }


def to_verbose_json(
    transcript: Transcript,
    include_words: bool = False,
    include_segments: bool = True,
    *,
    task: str = "transcribe",
) -> dict[str, Any]:
    """OpenAI's verbose_json. `segments` and `words` appear only when included (OpenAI's
    timestamp_granularities); words come from the segments, so the transcript must have been
    made with word timestamps for `words` to be non-empty."""
    out: dict[str, Any] = {
        "task": task,
        "language": "english" if task == "translate" else language_name(transcript.language),
        "duration": float(transcript.duration),
        "text": transcript.text,
    }
    if include_segments:
        out["segments"] = [_segment_json(s) for s in transcript.segments]
    if include_words:
        out["words"] = [
            {"word": w.word.strip(), "start": w.start, "end": w.end} for s in transcript.segments for w in s.words
        ]
    return out


def render(
    transcript: Transcript,
    response_format: str = "json",
    *,
    task: str = "transcribe",
    include_words: bool = False,
    include_segments: bool = True,
) -> str | dict[str, Any]:
    """The body of a transcription response: a dict for json/verbose_json, text otherwise."""
    if response_format == "json":
        return to_json(transcript)
    if response_format == "text":
        return to_text(transcript)
    if response_format == "srt":
        return to_srt(transcript)
    if response_format == "vtt":
        return to_vtt(transcript)
    if response_format == "verbose_json":
        return to_verbose_json(transcript, include_words, include_segments, task=task)
    raise InvalidRequestError(
        f"response_format {response_format!r} is not supported; choose one of {', '.join(RESPONSE_FORMATS)}",
        param="response_format",
    )
