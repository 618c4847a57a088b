"""The advisor (`omniforge advise`): a use case in; models, recipes, monthly cost, latency, effort and AI Act tier out.

Every number comes from the measured profiles (router/profiles.py, a guess marked so where a model
was never profiled), the cost model (router/cost.py) and the volumes of the use case; volumes that
were not given take defaults, and the answer lists each default among its assumptions. The advisor
loads no model and imports no engine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError
from ..governance.risk import SENSITIVITIES, RiskAssessment, assess, infer_sensitivity
from .cost import Cost, CostModel
from .profiles import Profile, profile_of

if TYPE_CHECKING:
    from ..catalog.spec import ModelSpec
    from ..config import Settings

TASKS = ("chat", "writing", "summarization", "translation", "classification", "code", "retrieval",
         "image-generation", "video-generation", "speech", "transcription", "vision")
TEXT_TASKS = frozenset({"chat", "writing", "summarization", "translation", "classification", "code", "retrieval"})
LANGUAGE_FREE = frozenset({"image-generation", "vision"})  # prompts and pictures: no language to match
LATENCIES = ("interactive", "batch")
INTERACTIVE_TARGET_S = 2.0
MONTH_SECONDS = 30 * 24 * 3600
SEEING_BACKENDS = frozenset({"llama-cpp-vision", "transformers-vlm"})  # text models that take images (router.py)

# task -> (catalog modality, spec tasks that qualify (empty: any), the endpoint that serves it)
_SERVED_BY: dict[str, tuple[str, tuple[str, ...], str]] = {
    "chat": ("text", ("chat",), "POST /v1/chat/completions"),
    "writing": ("text", ("chat", "completion"), "POST /v1/chat/completions"),
    "summarization": ("text", ("chat",), "POST /v1/chat/completions"),
    "translation": ("text", ("chat",), "POST /v1/chat/completions"),
    "classification": ("text", ("chat", "completion"), "POST /v1/chat/completions"),
    "code": ("text", ("code",), "POST /v1/chat/completions"),
    "retrieval": ("embedding", (), "POST /v1/embeddings"),
    "image-generation": ("image", ("text-to-image",), "POST /v1/images/generations"),
    "video-generation": ("video", ("text-to-video",), "POST /v1/videos"),
    "speech": ("speech", ("speech",), "POST /v1/audio/speech"),
    "transcription": ("transcription", ("transcription",), "POST /v1/audio/transcriptions"),
    "vision": ("vision", (), "POST /v1/chat/completions (image attached)"),
}

# -- reading a use case --------------------------------------------------------------------------
def _rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", re.IGNORECASE)


# In this order: a phrase one rule takes is blanked before the next rules read the text, so
# "describe photos" is vision (not image generation) and "narrated video" is video (not speech).
_TASK_WORDS: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = (
    (("vision",), _rx(r"captions?", r"captioning", r"alt[- ]texts?", r"(?:photo|image|picture) descriptions?",
                      r"describ\w* (?:\w+ ){0,2}(?:images?|photos?|pictures?|screenshots?)",
                      r"(?:read|analy[sz])\w* (?:\w+ ){0,2}(?:images?|photos?|pictures?|screenshots?|receipts?|scans?)",
                      r"ocr")),
    (("transcription",), _rx(r"transcri\w*", r"meeting notes", r"minutes of (?:the )?meetings?", r"dictation",
                             r"subtitles?")),
    (("video-generation",), _rx(r"narrated (?:\w+ ){0,2}videos?", r"videos?", r"voice[- ]?overs?", r"animations?",
                                r"reels?")),
    (("speech",), _rx(r"audio ?books?", r"read\w* aloud", r"text[- ]to[- ]speech", r"tts", r"narrat\w*",
                      r"podcasts?")),
    (("transcription", "speech"), _rx(r"voice\w*", r"(?:phone )?calls?", r"callers?", r"phones?", r"telephon\w*",
                                      r"speech", r"spoken")),
    (("retrieval",), _rx(r"search\w*", r"knowledge\w*", r"faqs?", r"look\w* up", r"answer\w* from")),
    (("chat",), _rx(r"chat\w*", r"customer[- ](?:service|support|care)", r"support (?:bots?|agents?|desk)",
                    r"help ?desk", r"assistants?", r"conversation\w*", r"answer\w*\s+(?:\w+\s+){0,2}questions",
                    r"q ?& ?a", r"virtual agents?")),
    (("summarization",), _rx(r"summar\w*", r"digests?", r"tl;?dr", r"key points")),
    (("translation",), _rx(r"translat\w*", r"locali[sz]\w*", r"multilingual")),
    (("classification",), _rx(r"classif\w*", r"categori[sz]\w*", r"screen(?:s|ing)?", r"rank(?:s|ing)?",
                              r"scor(?:e|es|ing)", r"triage", r"extract\w*", r"tagging", r"sentiment",
                              r"moderat(?:e|ion|ing)", r"detect\w* spam")),
    (("code",), _rx(r"code", r"coding", r"programming", r"programmers?", r"developers?", r"python", r"javascript",
                    r"typescript", r"sql", r"unit tests?", r"refactor\w*", r"debug\w*")),
    (("writing",), _rx(r"copy(?:writing)?", r"ad copy", r"slogans?", r"taglines?", r"blog\w*", r"articles?",
                       r"newsletters?", r"product descriptions?", r"seo", r"social media posts?", r"press releases?")),
)
_IMAGE_LOOSE = _rx(r"images?", r"pictures?", r"designs?", r"illustrations?", r"artwork", r"logos?", r"banners?",
                   r"mock-?ups?", r"visuals?", r"thumbnails?", r"product (?:photos|shots)")
_IMAGE_MADE = _rx(r"(?:generat|creat|draw|design|mak|produc|render|illustrat)\w* (?:\w+ ){0,3}(?:images?|pictures?|"
                  r"visuals?|illustrations?|artwork|logos?|banners?)")
_DOCUMENTS = _rx(r"documents?", r"docs", r"pdfs?", r"files", r"policies", r"documentation", r"manuals?", r"wikis?",
                 r"intranet")  # retrieval unless summarized or translated

_LANGUAGES = {
    "english": "en", "french": "fr", "spanish": "es", "german": "de", "italian": "it", "portuguese": "pt",
    "dutch": "nl", "polish": "pl", "swedish": "sv", "danish": "da", "norwegian": "no", "finnish": "fi",
    "greek": "el", "czech": "cs", "romanian": "ro", "hungarian": "hu", "japanese": "ja", "chinese": "zh",
    "korean": "ko", "arabic": "ar", "russian": "ru", "turkish": "tr", "ukrainian": "uk", "hindi": "hi",
}
_LANGUAGE_WORDS = _rx(*_LANGUAGES)
_INTERACTIVE = _rx(r"real[- ]time", r"live", r"instant\w*", r"interactive", r"while (?:they|the \w+) waits?",
                   r"on the phone")
_BATCH = _rx(r"batch\w*", r"overnight", r"nightly", r"offline", r"in bulk", r"bulk", r"asynchronous\w*",
             r"in the background", r"daily reports?", r"weekly reports?")
_WITHIN = re.compile(r"\b(?:within|under|in less than|below)\s+(\d+(?:\.\d+)?)\s*(?:s|secs?|seconds)\b", re.IGNORECASE)

_NUM = r"(\d[\d,]*(?:\.\d+)?)\s*(k|thousand|m|million)?"
_PER = r"\s*(?:a|per|each|every|/)\s*(day|week|month|year)\b"
_VOLUME_WORDS: dict[str, re.Pattern[str]] = {
    "video_seconds_per_month": re.compile(_NUM + r"\s*(seconds|secs?|minutes|mins?)\s+of\s+(?:\w+\s+){0,2}?videos?"
                                          + _PER, re.IGNORECASE),
    "videos": re.compile(_NUM + r"\s+(?:\w+\s+){0,2}?videos?" + _PER, re.IGNORECASE),
    "audio_minutes_per_month": re.compile(_NUM + r"\s*(minutes|mins?|hours?)\b(?:\s+of)?(?:\s+\w+){0,2}?" + _PER,
                                          re.IGNORECASE),
    "images_per_month": re.compile(_NUM + r"\s+(?:\w+\s+){0,2}?(?:images|pictures|photos|designs|illustrations|"
                                   r"visuals)" + _PER, re.IGNORECASE),
    "requests_per_month": re.compile(_NUM + r"\s+(?:\w+\s+){0,2}?(?:requests|conversations|chats|messages|queries|"
                                     r"questions|calls|documents|docs|summaries|runs|campaigns|tickets|sessions|"
                                     r"briefs|reports|translations|meetings|emails|articles|products)" + _PER,
                                     re.IGNORECASE),
}
_PER_MONTH = {"day": 30.0, "week": 30 / 7, "month": 1.0, "year": 1 / 12}
_SCALE = {"k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6}
_TOKENS_IN = re.compile(r"\b(?:documents?|docs|reports?|emails?|articles?|texts?|messages?|questions?|pages?|"
                        r"transcripts?|contracts?)\s+(?:\w+\s+){0,3}?of\s+(?:about\s+|around\s+|~\s*)?(\d[\d,]*)\s*"
                        r"(words|tokens)\b",
                        re.IGNORECASE)
_TOKENS_OUT = re.compile(r"\b(?:answers?|replies|reply|summaries|summary|responses?|outputs?)\s+(?:\w+\s+){0,3}?"
                         r"of\s+(?:about\s+|"
                         r"around\s+|~\s*)?(\d[\d,]*)\s*(words|tokens)\b", re.IGNORECASE)
TOKENS_PER_WORD = 4 / 3  # English prose: ~0.75 words a token


@dataclass
class Volumes:
    """Work per month. None: not given (a default is used and said)."""

    requests_per_month: int | None = None
    avg_input_tokens: int | None = None
    avg_output_tokens: int | None = None
    images_per_month: int | None = None
    audio_minutes_per_month: float | None = None
    video_seconds_per_month: float | None = None

    def resolved(self, tasks: list[str]) -> tuple[Volumes, list[str]]:
        """Every field filled: given values kept, defaults for this use case's tasks, each default said."""
        t = set(tasks)
        by_images = self.requests_per_month is None and self.images_per_month is not None and "image-generation" in t
        requests = self.requests_per_month if self.requests_per_month is not None else (
            self.images_per_month if by_images else 1000)
        long_input = bool(t & {"summarization", "translation"})
        translation_only = "translation" in t and not t & {"chat", "writing", "summarization", "code"}
        defaults: dict[str, tuple[Any, str]] = {
            "requests_per_month": ((requests, "one request per image") if by_images
                                   else (1000, "each request runs every task once")),
            "avg_input_tokens": ((2000, "a ~1,500-word document") if long_input else (500, "a question with context")),
            "avg_output_tokens": ((2000 if translation_only else 300, "a summary" if "summarization" in t
                                   else "a translation as long as its source") if long_input
                                  else (200, "a short reply")),
            "images_per_month": ((requests, "one image per request") if t & {"image-generation", "vision"}
                                 else (0, "no image task")),
            "audio_minutes_per_month": ((round(requests * 0.25, 2), "15 s of audio per request, heard and/or spoken")
                                        if t & {"speech", "transcription"} else (0.0, "no audio task")),
            "video_seconds_per_month": ((requests * 10.0, "a 10 s video per request") if "video-generation" in t
                                        else (0.0, "no video task")),
        }
        values, assumptions = {}, []
        for f in fields(self):
            given = getattr(self, f.name)
            if given is not None:
                values[f.name] = given
                continue
            value, why = defaults[f.name]
            values[f.name] = value
            if value:  # a zero for a task the use case does not have is not an assumption worth saying
                assumptions.append(f"{f.name} = {value:g} (default: {why})")
        return Volumes(**values), assumptions

    @classmethod
    def from_dict(cls, data: Any) -> Volumes:
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise InvalidRequestError("volumes must be a mapping like {requests_per_month: 1000}", param="volumes")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRequestError(f"volumes: unknown field(s) {', '.join(unknown)}; use {', '.join(sorted(known))}",
                                      param="volumes")
        values: dict[str, Any] = {}
        for name, value in data.items():
            kind = int if name in ("requests_per_month", "avg_input_tokens", "avg_output_tokens",
                                   "images_per_month") else float
            try:
                number = kind(value)
            except (TypeError, ValueError):
                raise InvalidRequestError(f"volumes.{name} must be a number, not {value!r}",
                                          param=f"volumes.{name}") from None
            if number < 0:
                raise InvalidRequestError(f"volumes.{name} must not be negative", param=f"volumes.{name}")
            values[name] = number
        return cls(**values)


@dataclass
class UseCase:
    name: str
    description: str = ""
    tasks: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)  # ISO 639-1 codes
    volumes: Volumes = field(default_factory=Volumes)
    latency: str = "interactive"  # interactive | batch
    latency_target_s: float | None = INTERACTIVE_TARGET_S  # None: no per-request target (batch)
    data_sensitivity: str = "internal"  # public | internal | personal | special-category
    assumptions: list[str] = field(default_factory=list)  # what reading the use case assumed
    evidence: dict[str, str] = field(default_factory=dict)  # task -> the words that asked for it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tasks_from_text(text: str) -> tuple[list[str], dict[str, str]]:
    found: dict[str, str] = {}
    rest = text
    for tasks, pattern in _TASK_WORDS:
        m = pattern.search(rest)
        if not m:
            continue
        for task in tasks:
            found.setdefault(task, m.group(0))
        rest = pattern.sub(lambda x: "_" * len(x.group(0)), rest)  # a word that matches nothing keeps distances
    image = (_IMAGE_MADE if "vision" in found else _IMAGE_LOOSE).search(rest)
    if image:
        found.setdefault("image-generation", image.group(0))
    if "retrieval" not in found and not {"summarization", "translation"} & set(found):
        doc = _DOCUMENTS.search(rest)
        if doc:
            found["retrieval"] = doc.group(0)
    return [t for t in TASKS if t in found], found


def _number(value: str, scale: str | None) -> float:
    return float(value.replace(",", "")) * _SCALE.get((scale or "").lower(), 1.0)


def _volumes_from_text(text: str, said: list[str]) -> Volumes:
    v = Volumes()
    rest = text
    for name, pattern in _VOLUME_WORDS.items():
        m = pattern.search(rest)
        if not m:
            continue
        rest = rest[:m.start()] + " " * (m.end() - m.start()) + rest[m.end():]
        count, per = _number(m.group(1), m.group(2)), _PER_MONTH[m.groups()[-1].lower()]
        if name == "video_seconds_per_month":
            unit = m.group(3).lower()
            v.video_seconds_per_month = round(count * (60 if unit.startswith("min") else 1) * per, 2)
        elif name == "videos":
            if v.video_seconds_per_month is None:
                v.video_seconds_per_month = round(count * per * 10, 2)
                said.append(f"video_seconds_per_month = {v.video_seconds_per_month:g} (from \"{m.group(0).strip()}\", "
                            "10 s per video assumed)")
            continue
        elif name == "audio_minutes_per_month":
            unit = m.group(3).lower()
            v.audio_minutes_per_month = round(count * (60 if unit.startswith("h") else 1) * per, 2)
        elif name == "images_per_month":
            v.images_per_month = round(count * per)
        else:
            v.requests_per_month = round(count * per)
        said.append(f"{name} = {getattr(v, name):g} (from \"{m.group(0).strip()}\")")
    for attr, pattern in (("avg_input_tokens", _TOKENS_IN), ("avg_output_tokens", _TOKENS_OUT)):
        m = pattern.search(text)
        if m:
            n = int(m.group(1).replace(",", ""))
            tokens = round(n * TOKENS_PER_WORD) if m.group(2).lower() == "words" else n
            setattr(v, attr, tokens)
            said.append(f"{attr} = {tokens} (from \"{m.group(0).strip()}\""
                        + (f", {TOKENS_PER_WORD:.2f} tokens a word)" if m.group(2).lower() == "words" else ")"))
    return v


def _language_code(value: Any) -> str:
    text = str(value).strip().lower()
    if text in _LANGUAGES:
        return _LANGUAGES[text]
    if re.fullmatch(r"[a-z]{2}", text):
        return text
    raise InvalidRequestError(f"language {value!r} is neither a language name nor a two-letter code (e.g. fr)",
                              param="languages")


def _latency(value: Any, text: str, tasks: list[str], said: list[str]) -> tuple[str, float | None]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise InvalidRequestError("latency in seconds must be positive", param="latency")
        return "interactive", float(value)
    if value is not None:
        if value not in LATENCIES:
            raise InvalidRequestError(f"latency must be {' or '.join(LATENCIES)} or a number of seconds, "
                                      f"not {value!r}", param="latency")
        return value, INTERACTIVE_TARGET_S if value == "interactive" else None
    within = _WITHIN.search(text)
    if within:
        return "interactive", float(within.group(1))
    for kind, pattern in (("batch", _BATCH), ("interactive", _INTERACTIVE)):
        m = pattern.search(text)
        if m:
            said.append(f"latency = {kind} (from \"{m.group(0)}\")")
            return kind, INTERACTIVE_TARGET_S if kind == "interactive" else None
    kind = "interactive" if {"chat", "speech"} & set(tasks) and "video-generation" not in tasks else "batch"
    why = (f"people wait for the reply, about {INTERACTIVE_TARGET_S:g} s" if kind == "interactive"
           else "nobody waits on a single request")
    said.append(f"latency = {kind} (default: {why})")
    return kind, INTERACTIVE_TARGET_S if kind == "interactive" else None


def _sensitivity(value: Any, text: str, tasks: list[str], said: list[str]) -> str:
    if value is not None:
        if value not in SENSITIVITIES:
            raise InvalidRequestError(f"data_sensitivity must be one of {', '.join(SENSITIVITIES)}, not {value!r}",
                                      param="data_sensitivity")
        return str(value)
    level, phrase = infer_sensitivity(text)
    if level:
        said.append(f"data_sensitivity = {level} (from \"{phrase}\")")
        return level
    if {"chat", "transcription"} & set(tasks):
        said.append("data_sensitivity = personal (default: people's messages and voices carry personal data)")
        return "personal"
    said.append("data_sensitivity = internal (default: nothing said about the data)")
    return "internal"


def _complete_tasks(tasks: list[str], languages: list[str], said: list[str]) -> list[str]:
    if "retrieval" in tasks and not set(tasks) & (TEXT_TASKS - {"retrieval", "classification"}):
        said.append("task chat added: answers found by retrieval are written by the chat model")
        tasks = [t for t in TASKS if t in {*tasks, "chat"}]
    if "writing" in tasks and "translation" not in tasks and len(languages) > 1:
        said.append(f"task translation added: copy written in {languages[0]}, translated into "
                    f"{', '.join(languages[1:])}")
        tasks = [t for t in TASKS if t in {*tasks, "translation"}]
    return tasks


_FROM_LANGUAGE = re.compile(r"\bfrom\s+(" + "|".join(_LANGUAGES) + r")\b", re.IGNORECASE)


def _languages_from_text(text: str, tasks: list[str], said: list[str]) -> list[str]:
    """The languages named, the source first when translating (English unless "from <language>")."""
    codes = list(dict.fromkeys(_LANGUAGES[m.group(0).lower()] for m in _LANGUAGE_WORDS.finditer(text)))
    if not codes:
        said.append("languages = en (default: no language named)")
        return ["en"]
    if "translation" in tasks:
        source = _FROM_LANGUAGE.search(text)
        if source:
            first = _LANGUAGES[source.group(1).lower()]
        else:
            first = "en"
            if "en" not in codes:
                said.append("source language = en (default: no \"from <language>\" said)")
        codes = [first, *(c for c in codes if c != first)]
    return codes


def parse_use_case(text: str) -> UseCase:
    """A UseCase from plain words: tasks, languages, volumes, latency and data sensitivity read from
    them, with what was assumed listed in `assumptions`."""
    text = (text or "").strip()
    if not text:
        raise InvalidRequestError("describe the use case in a few words, e.g. 'a chatbot that answers "
                                  "customer questions from our FAQ'", param="use_case")
    said: list[str] = []
    tasks, evidence = _tasks_from_text(text)
    if not tasks:
        raise InvalidRequestError("no task found in the use case: name what it does (chat, summarize, translate, "
                                  "images, video, voice, transcribe, search documents, code, captions)",
                                  param="use_case")
    languages = _languages_from_text(text, tasks, said)
    tasks = _complete_tasks(tasks, languages, said)
    volumes = _volumes_from_text(text, said)
    latency, target = _latency(None, text, tasks, said)
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    name = first if len(first) <= 60 else first[:57].rstrip() + "..."
    return UseCase(name, text, tasks, languages, volumes, latency, target,
                   _sensitivity(None, text, tasks, said), said, evidence)


_DICT_KEYS = ("name", "description", "tasks", "languages", "volumes", "latency", "data_sensitivity")


def use_case_from_dict(data: Any) -> UseCase:
    """A UseCase from a mapping (a YAML file's content): name, description, tasks, languages, volumes,
    latency (interactive, batch or seconds), data_sensitivity. Tasks left out are read from the
    description; a `use_case:` wrapper is accepted."""
    if isinstance(data, Mapping) and set(data) == {"use_case"} and isinstance(data["use_case"], Mapping):
        data = data["use_case"]
    if not isinstance(data, Mapping):
        raise InvalidRequestError("a use case is a mapping with name, description, tasks, languages, volumes, "
                                  "latency and data_sensitivity", param="use_case")
    unknown = sorted(set(data) - set(_DICT_KEYS))
    if unknown:
        raise InvalidRequestError(f"use case: unknown field(s) {', '.join(unknown)}; use {', '.join(_DICT_KEYS)}",
                                  param="use_case")
    description = str(data.get("description") or "").strip()
    name = str(data.get("name") or "").strip()
    text = f"{name}. {description}".strip(". ")
    if not text and not data.get("tasks"):
        raise InvalidRequestError("a use case needs a name or description (or its tasks)", param="description")
    said: list[str] = []
    if data.get("tasks") is not None:
        raw = data["tasks"]
        if isinstance(raw, str) or not isinstance(raw, list):
            raise InvalidRequestError("tasks must be a list, e.g. [chat, retrieval]", param="tasks")
        bad = [t for t in raw if t not in TASKS]
        if bad:
            raise InvalidRequestError(f"unknown task(s) {', '.join(map(str, bad))}; known: {', '.join(TASKS)}",
                                      param="tasks")
        tasks, evidence = [t for t in TASKS if t in raw], {t: "declared" for t in raw}
    else:
        tasks, evidence = _tasks_from_text(text)
        if not tasks:
            raise InvalidRequestError(f"no task found in {text!r}: declare tasks (known: {', '.join(TASKS)})",
                                      param="tasks")
    words = _volumes_from_text(text, said)
    given = Volumes.from_dict(data.get("volumes"))
    volumes = Volumes(**{f.name: getattr(given, f.name) if getattr(given, f.name) is not None
                         else getattr(words, f.name) for f in fields(Volumes)})
    if data.get("languages") is not None:
        raw = data["languages"]
        raw = [p for p in re.split(r"[,\s]+", raw) if p] if isinstance(raw, str) else raw
        if not isinstance(raw, list) or not raw:
            raise InvalidRequestError("languages must be a non-empty list, e.g. [en, fr]", param="languages")
        languages = list(dict.fromkeys(_language_code(v) for v in raw))
    else:
        languages = _languages_from_text(text, tasks, said)
    tasks = _complete_tasks(tasks, languages, said)
    latency, target = _latency(data.get("latency"), text, tasks, said)
    return UseCase(name or (description[:57] + "..." if len(description) > 60 else description), description,
                   tasks, languages, volumes, latency, target, _sensitivity(data.get("data_sensitivity"), text,
                                                                            tasks, said), said, evidence)


# -- planning ------------------------------------------------------------------------------------
# recipe -> (tasks it needs, words that must also appear (None: none), the tasks it covers)
_RECIPES: dict[str, tuple[frozenset[str], re.Pattern[str] | None, frozenset[str]]] = {
    "customer-service": (frozenset({"chat", "retrieval"}), _rx(r"customers?", r"clients?", r"support", r"help ?desk",
                                                                r"service"), frozenset({"chat", "retrieval"})),
    "voice-assistant": (frozenset({"transcription", "speech"}), None, frozenset({"transcription", "chat", "speech"})),
    "marketing-suite": (frozenset({"image-generation"}), _rx(r"marketing", r"seo", r"promo\w*", r"campaigns?",
                                                              r"advert\w*", r"ads?", r"product launch", r"brand\w*"),
                        frozenset({"writing", "translation", "image-generation", "video-generation"})),
    "knowledge-qa": (frozenset({"retrieval"}), None, frozenset({"retrieval", "chat"})),
    "caption-image": (frozenset({"vision"}), None, frozenset({"vision", "chat"})),
    "summarize": (frozenset({"summarization"}), None, frozenset({"summarization"})),
    "translate": (frozenset({"translation"}), None, frozenset({"translation"})),
    "code-assistant": (frozenset({"code"}), None, frozenset({"code", "chat"})),
}


@dataclass
class Option:
    model: str
    cost: Cost
    measured: bool
    fits_languages: bool


@dataclass
class TaskPlan:
    task: str
    modality: str
    endpoint: str
    model: str | None  # the cheapest fitting model; None: nothing in the catalog can do it
    measured: bool = False  # its profile was measured here (False: a guess from the weights' size)
    quality: int = 0
    units: str = ""  # what a month of this task is, e.g. "1000 requests x (500 in + 200 out tokens)"
    seconds_per_request: float = 0.0
    monthly: Cost = field(default_factory=Cost)
    load_seconds: float = 0.0
    output_seconds_per_request: float = 0.0  # text: the part of seconds_per_request spent writing output
    gpus: list[str] = field(default_factory=list)  # the GPUs its profile was measured with (none: CPU or a guess)
    options: list[Option] = field(default_factory=list)  # every model that can do it, cheapest first
    notes: list[str] = field(default_factory=list)


@dataclass
class RecipeMatch:
    name: str
    description: str
    covers: list[str]
    steps: int


@dataclass
class Advice:
    use_case: UseCase
    volumes: Volumes
    verdict: str  # LLM-only | multimodal
    plans: list[TaskPlan]
    recipes: list[RecipeMatch]
    monthly: Cost
    latency: dict[str, Any]
    complexity: dict[str, Any]
    comparison: dict[str, Any]
    risk: RiskAssessment
    assumptions: list[str]
    cost_model: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": "advice", "use_case": self.use_case.to_dict(), "volumes": asdict(self.volumes),
            "verdict": self.verdict,
            "tasks": [{**{k: v for k, v in asdict(p).items() if k not in ("monthly", "options")},
                       "monthly": p.monthly.rounded(),
                       "options": [{"model": o.model, "monthly": o.cost.rounded(), "measured": o.measured,
                                    "fits_languages": o.fits_languages} for o in p.options]} for p in self.plans],
            "recipes": [asdict(r) for r in self.recipes], "monthly": self.monthly.rounded(),
            "latency": self.latency, "complexity": self.complexity, "comparison": self.comparison,
            "risk": {k: v for k, v in self.risk.to_dict().items() if k != "findings"},
            "assumptions": self.assumptions, "cost_model": self.cost_model,
        }

    def table(self) -> str:
        """The advice as plain text for a terminal."""
        return _render(self)


def _specs_and_settings(service_or_parts: Any) -> tuple[Settings, list[ModelSpec]]:
    from ..config import Settings

    if hasattr(service_or_parts, "settings") and hasattr(service_or_parts, "catalog"):
        return service_or_parts.settings, service_or_parts.catalog.all()
    if isinstance(service_or_parts, tuple) and len(service_or_parts) == 2:
        settings, catalog = service_or_parts
        return settings, list(catalog.all() if hasattr(catalog, "all") else catalog)
    if isinstance(service_or_parts, Settings):
        from ..catalog import Catalog

        return service_or_parts, Catalog(service_or_parts.catalog_path).all()
    raise TypeError("advise() takes a Service, a (settings, catalog) pair or Settings")


def _candidates(task: str, specs: list[ModelSpec]) -> list[ModelSpec]:
    modality, spec_tasks, _ = _SERVED_BY[task]
    found = [s for s in specs if s.modality == modality and (not spec_tasks or not s.tasks
                                                             or set(spec_tasks) & set(s.tasks))]
    if task == "vision":
        found += [s for s in specs if s.modality == "text" and s.backend in SEEING_BACKENDS]
    return found


def _work(task: str, spec: ModelSpec, profile: Profile, v: Volumes, languages: list[str]) -> tuple[float, str,
                                                                                                   int, int]:
    """(compute seconds a month, what the month is, input tokens, output tokens) for `task` on `spec`."""
    n = v.requests_per_month
    if task in ("chat", "writing", "summarization", "classification", "code") or (
            task == "vision" and spec.modality == "text"):
        images = v.images_per_month if task == "vision" else 0
        each = profile.estimate(input_tokens=v.avg_input_tokens, output_tokens=v.avg_output_tokens)
        extra = profile.estimate(images=images) if images else 0.0
        return (n * each + extra, f"{n} requests x ({v.avg_input_tokens} in + {v.avg_output_tokens} out tokens)",
                n * v.avg_input_tokens, n * v.avg_output_tokens)
    if task == "translation":
        targets = max(1, len(languages) - 1)  # the first language is the source
        each = profile.estimate(input_tokens=v.avg_input_tokens * targets, output_tokens=v.avg_output_tokens * targets)
        return (n * each, (f"{n} requests x {targets} target language(s) x ({v.avg_input_tokens} in + "
                          f"{v.avg_output_tokens} out tokens)"), n * v.avg_input_tokens * targets,
                n * v.avg_output_tokens * targets)
    if task == "retrieval":
        return (n * profile.estimate(input_tokens=v.avg_input_tokens),
                f"{n} queries x {v.avg_input_tokens} tokens embedded", n * v.avg_input_tokens, 0)
    if task in ("image-generation", "vision"):
        return profile.estimate(images=v.images_per_month), f"{v.images_per_month} images", 0, 0
    if task == "video-generation":
        return (profile.estimate(video_seconds=v.video_seconds_per_month),
                f"{v.video_seconds_per_month:g} s of video", 0, 0)
    seconds = v.audio_minutes_per_month * 60  # speech, transcription
    return (profile.estimate(audio_seconds=seconds),
            f"{v.audio_minutes_per_month:g} min of audio {'spoken' if task == 'speech' else 'heard'}", 0, 0)


def _needed_languages(task: str, tasks: list[str], languages: list[str]) -> list[str]:
    """The languages a model for `task` must declare: none for pictures; the source language only
    when a translation task carries the rest."""
    if task in LANGUAGE_FREE:
        return []
    if "translation" in tasks and task != "translation":
        return languages[:1]
    return languages


def _plan(task: str, specs: list[ModelSpec], settings: Settings, costs: CostModel, v: Volumes,
          tasks: list[str], languages: list[str]) -> TaskPlan:
    modality, _, endpoint = _SERVED_BY[task]
    plan = TaskPlan(task, modality, endpoint, None)
    needed = _needed_languages(task, tasks, languages)
    scored = []
    for spec in _candidates(task, specs):
        profile = profile_of(settings.home, spec)
        seconds, units, tokens_in, tokens_out = _work(task, spec, profile, v, languages)
        cost = (costs.of_request(spec, seconds, tokens_in, tokens_out) if spec.modality in ("text", "embedding")
                else costs.of_seconds(seconds))
        fits = not spec.languages or set(needed) <= set(spec.languages)
        scored.append((not fits, cost.usd, cost.compute_seconds, -spec.quality, spec.id, spec, profile, cost, units))
    if not scored:
        plan.notes.append(f"no model in the catalog does {task} ({modality}); add one with `omniforge models add`")
        return plan
    scored.sort(key=lambda row: row[:5])
    plan.options = [Option(row[4], row[7], row[6].measured, not row[0]) for row in scored]
    unfit, _, _, _, _, spec, profile, cost, units = scored[0]
    plan.model, plan.measured, plan.quality, plan.units = spec.id, profile.measured, spec.quality, units
    plan.monthly = cost
    plan.seconds_per_request = cost.compute_seconds / max(1, v.requests_per_month)
    plan.load_seconds = profile.load_seconds
    plan.gpus = list(profile.hardware.get("gpus") or [])
    if spec.modality == "text":
        plan.output_seconds_per_request = v.avg_output_tokens / 1000 * profile.rates.get("s_per_1k_output_tokens", 0.0)
    if not profile.measured:
        plan.notes.append(f"{spec.id}: profile is a guess from its weights' size; run `omniforge profile {spec.id}` "
                          "for measured numbers")
    if unfit:
        plan.notes.append(f"no model declares {', '.join(needed)} for {task}; {spec.id} declares "
                          f"{', '.join(spec.languages)}: expect poor output, add a model for these languages")
    if task == "vision" and spec.modality == "vision":
        plan.notes.append(f"{spec.id} measures the image; a chat model writes the words (its cost is in chat, "
                          "if the use case has it)")
    if task == "video-generation" and spec.backend == "storyboard":
        plan.notes.append("storyboard composes the text, image and speech models; its profile covers all of them")
    return plan


def _recipes(use_case: UseCase) -> list[RecipeMatch]:
    from ..pipelines.recipe import builtin_recipes

    available = builtin_recipes()
    text = f"{use_case.name} {use_case.description}"
    tasks = set(use_case.tasks)
    matched = []
    for name, (needs, words, covers) in _RECIPES.items():
        if name in available and needs <= tasks and (words is None or words.search(text)):
            recipe = available[name]
            matched.append(RecipeMatch(name, recipe.description, [t for t in TASKS if t in covers & tasks],
                                       len(recipe.steps)))
    matched.sort(key=lambda r: -len(r.covers))
    kept: list[RecipeMatch] = []
    for r in matched:  # a recipe whose tasks a better one already covers adds nothing
        if not any(set(r.covers) <= set(k.covers) for k in kept):
            kept.append(r)
    return kept


def _latency_check(use_case: UseCase, plans: list[TaskPlan], v: Volumes, monthly: Cost) -> dict[str, Any]:
    per_request = sum(p.seconds_per_request for p in plans)
    cold = sum(p.load_seconds for p in plans if p.model)
    target = use_case.latency_target_s
    busy = monthly.compute_seconds / MONTH_SECONDS
    out: dict[str, Any] = {"need": use_case.latency, "target_s": target, "per_request_s": round(per_request, 3),
                           "cold_start_s": round(cold, 3), "machine_busy_fraction": round(busy, 4),
                           "meets": target is None or per_request <= target, "advice": []}
    advice: list[str] = out["advice"]
    if target is not None and per_request > target and plans:
        worst = max(plans, key=lambda p: p.seconds_per_request)
        advice.append(f"{worst.task} on {worst.model} takes {worst.seconds_per_request:.2f} s of the "
                      f"{per_request:.2f} s per request")
        faster = [o for o in worst.options[1:] if o.cost.compute_seconds < worst.monthly.compute_seconds]
        if faster:
            advice.append(f"a faster model for {worst.task}: {faster[0].model}")
        else:
            advice.append(f"no faster model for {worst.task} in the catalog: add a smaller one and profile it")
        if worst.output_seconds_per_request > 0 and worst.task != "translation" and v.avg_output_tokens:
            per_token = worst.output_seconds_per_request / v.avg_output_tokens
            room = target - (per_request - worst.output_seconds_per_request)
            if room > 0:
                advice.append(f"replies of at most {int(room / per_token)} output tokens (not "
                              f"{v.avg_output_tokens}) would meet {target:g} s")
        if worst.gpus:
            advice.append(f"faster hardware: {worst.model}'s profile already ran on {', '.join(worst.gpus)}")
        else:
            advice.append(f"a GPU: {worst.model}'s profile was {'measured on CPU only' if worst.measured else 'guessed'}"
                          "; run `omniforge profile` on a GPU machine to know the gain")
        advice.append("or run it as a batch job (POST /v1/pipelines/{name}/runs) so nobody waits on it")
    if target is not None and cold > target:
        advice.append(f"preload the models (setting preload) so the first request does not wait {cold:.1f} s "
                      "for them to load")
    if busy > 1:
        advice.append(f"{monthly.compute_seconds:,.0f} compute seconds a month is {busy:.1f}x one machine's month: "
                      f"spread it over {int(busy) + 1} machines or use faster hardware")
    return out


def _complexity(plans: list[TaskPlan], recipes: list[RecipeMatch]) -> dict[str, Any]:
    models = sorted({p.model for p in plans if p.model})
    covered = {t for r in recipes for t in r.covers}
    direct = [p.task for p in plans if p.task not in covered]
    steps = sum(r.steps for r in recipes) + len(direct)
    count = len(models) + steps
    level = "low" if count <= 3 else "medium" if count <= 6 else "high"
    return {"level": level, "count": count, "models": models, "pipeline_steps": steps,
            "recipes": [r.name for r in recipes], "direct_calls": direct,
            "explanation": f"{len(models)} model(s) + {steps} pipeline step(s)/call(s) = {count}"}


def _comparison(plans: list[TaskPlan], monthly: Cost, verdict: str) -> dict[str, Any]:
    text = [p for p in plans if p.task in TEXT_TASKS]
    text_cost = sum((p.monthly for p in text), Cost())
    other = [p.task for p in plans if p.task not in TEXT_TASKS]
    share = 0.0 if monthly.usd <= 0 else (monthly.usd - text_cost.usd) / monthly.usd
    if verdict == "LLM-only":
        summary = (f"every task is text: the LLM-only plan is the whole plan (${monthly.usd:.4f}/month, "
                   f"{monthly.compute_seconds:,.0f} compute s); a multimodal model would add cost with no task for it")
    elif not text:
        summary = (f"no text task: an LLM alone cannot do any of it; the multimodal plan: ${monthly.usd:.4f}/month, "
                   f"{monthly.compute_seconds:,.0f} compute s ({', '.join(other)})")
    else:
        summary = (f"the text part ({', '.join(p.task for p in text) or 'none'}) alone: ${text_cost.usd:.4f}/month, "
                   f"{text_cost.compute_seconds:,.0f} compute s; the full multimodal plan: ${monthly.usd:.4f}/month, "
                   f"{monthly.compute_seconds:,.0f} compute s; {', '.join(other)} add "
                   f"${monthly.usd - text_cost.usd:.4f} ({share:.0%} of the cost), which an LLM alone cannot do")
    return {"text_tasks": [p.task for p in text], "multimodal_tasks": other, "text_only": text_cost.rounded(),
            "full": monthly.rounded(), "multimodal_share_of_cost": round(share, 4), "summary": summary}


def advise(service_or_parts: Any, use_case: UseCase | str | Mapping[str, Any]) -> Advice:
    """Advice for `use_case` (a UseCase, plain words or a mapping) over a Service, a (settings, catalog)
    pair or Settings: models, recipes, monthly cost, latency, complexity and the EU AI Act tier."""
    if isinstance(use_case, str):
        use_case = parse_use_case(use_case)
    elif isinstance(use_case, Mapping):
        use_case = use_case_from_dict(use_case)
    elif not isinstance(use_case, UseCase):
        raise InvalidRequestError("use_case must be text or a mapping of use-case fields", param="use_case")
    settings, specs = _specs_and_settings(service_or_parts)
    costs = CostModel.from_settings(settings)
    volumes, defaults = use_case.volumes.resolved(use_case.tasks)
    plans = [_plan(t, specs, settings, costs, volumes, use_case.tasks, use_case.languages) for t in use_case.tasks]
    monthly = sum((p.monthly for p in plans), Cost())
    verdict = "LLM-only" if set(use_case.tasks) <= TEXT_TASKS else "multimodal"
    recipes = _recipes(use_case)
    assumptions = [*use_case.assumptions, *defaults,
                   ("compute cost = profile seconds x the cost model (machine price per hour + energy); "
                   "one-time work (indexing documents, loading models) is not in the monthly figures")]
    if any(p.model and not p.measured for p in plans):
        assumptions.append("some profiles are guesses from weights' size, not measurements (see the tasks' notes)")
    if "image-generation" in use_case.tasks:
        assumptions.append("images at each image model's reference size and steps")
    return Advice(use_case, volumes, verdict, plans, recipes, monthly,
                  _latency_check(use_case, plans, volumes, monthly), _complexity(plans, recipes),
                  _comparison(plans, monthly, verdict), assess(use_case), assumptions, costs.describe())


# -- the terminal table ----------------------------------------------------------------------------
def _render(a: Advice) -> str:
    uc = a.use_case
    lines = [f"Use case: {uc.name}",
             f"Verdict: {a.verdict} (tasks: {', '.join(uc.tasks)}; languages: {', '.join(uc.languages)})", ""]
    head = f"{'task':<17}{'model':<22}{'profile':<10}{'s/request':>10}{'compute s/month':>17}{'USD/month':>12}" \
           f"{'Wh/month':>11}"
    lines += [head, "-" * len(head)]
    for p in a.plans:
        lines.append(f"{p.task:<17}{(p.model or '(none)'):<22}{('measured' if p.measured else 'guess'):<10}"
                     f"{p.seconds_per_request:>10.3f}{p.monthly.compute_seconds:>17,.1f}{p.monthly.usd:>12.4f}"
                     f"{p.monthly.energy_wh:>11.2f}")
    lines += ["-" * len(head),
              (f"{'total':<49}{a.latency['per_request_s']:>10.3f}{a.monthly.compute_seconds:>17,.1f}"
              f"{a.monthly.usd:>12.4f}{a.monthly.energy_wh:>11.2f}"), ""]
    for p in a.plans:
        others = ", ".join(o.model for o in p.options[1:])
        lines.append(f"  {p.task}: {p.units}" + (f"; also able: {others}" if others else ""))
        lines += [f"    note: {n}" for n in p.notes]
    lines.append("")
    if a.recipes:
        lines.append("Recipes: " + "; ".join(f"{r.name} (covers {', '.join(r.covers)}; {r.steps} steps)"
                                             for r in a.recipes))
    else:
        lines.append("Recipes: none built in fits; call the endpoints directly")
    lat = a.latency
    need = f"<= {lat['target_s']:g} s" if lat["target_s"] is not None else "no per-request target"
    lines.append(f"Latency: {lat['need']} ({need}): {lat['per_request_s']:.2f} s per request here, "
                 f"{'meets it' if lat['meets'] else 'does NOT meet it'}; machine busy "
                 f"{lat['machine_busy_fraction']:.1%} of the month")
    lines += [f"  - {x}" for x in lat["advice"]]
    c = a.complexity
    lines.append(f"Integration: {c['level']} ({c['explanation']})")
    lines.append(f"LLM-only vs multimodal: {a.comparison['summary']}")
    lines.append(f"EU AI Act: {a.risk.tier}")
    lines += [f"  - {r}" for r in a.risk.reasons]
    lines.append("  obligations:")
    lines += [f"  - {o}" for o in a.risk.obligations]
    if a.risk.gdpr:
        lines.append(f"  GDPR ({a.risk.data_sensitivity} data):")
        lines += [f"  - {g}" for g in a.risk.gdpr]
    lines += [f"  note: {n}" for n in a.risk.notes]
    lines.append("Assumptions:")
    lines += [f"  - {x}" for x in a.assumptions]
    cm = a.cost_model
    lines.append(f"Cost model: ${cm['usd_per_hour']:g}/h machine, {cm['watts']:g} W, ${cm['usd_per_kwh']:g}/kWh "
                 f"= ${cm['usd_per_compute_hour']:g} per compute hour")
    lines.append(a.risk.disclaimer)
    return "\n".join(lines) + "\n"


__all__ = ["LATENCIES", "TASKS", "TEXT_TASKS", "Advice", "RecipeMatch", "TaskPlan", "UseCase", "Volumes", "advise",
           "parse_use_case", "use_case_from_dict"]
