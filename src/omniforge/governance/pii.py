"""PII detection and redaction (names, emails, phones, cards, IBANs, street addresses), fully offline.

Presidio is the framework: its AnalyzerEngine runs the recognizers and its context enhancer, and
presidio-anonymizer's "replace" operator writes "<ENTITY>" in place of each finding. There is no
trained NER model here (no spaCy model can be installed offline), so the NLP engine is a blank
spaCy English pipeline: a tokenizer whose lower-cased tokens stand in for lemmas, which is all the
context enhancer reads. Recognizers, by entity (names follow presidio's):

    EMAIL_ADDRESS  presidio's pattern; its domain check uses tldextract's bundled suffix snapshot
                   (no download, no cache write)
    PHONE_NUMBER   presidio's libphonenumber matcher for PHONE_REGIONS, plus a phone-shaped digit
                   run after a cue word ("phone", "tel", "mobile", "call" ...) or a leading "+"
    CREDIT_CARD    presidio's pattern with the Luhn check, widened to every issuer prefix 1-6 and 19
                   digits, plus 12-digit Maestro numbers after a cue word ("card", "debit" ...)
    IBAN_CODE      presidio's per-country format and mod-97 checksum
    PERSON         ours: a first/last-name gazetteer from Faker's person providers for NAME_LOCALES,
                   plus cues (titles, "my name is", "Dear", "Name:", a signature after "Regards,")
                   that catch names the gazetteer lacks
    ADDRESS        ours: house number + street + street type (USPS / UK types), the European
                   compounds and prefixes ("Hauptstraße 5", "12 rue de la Paix", "Via Roma, 3",
                   "Kerkstraat 12"), then an optional unit and postcode + city; in any language, a
                   street and number followed by a postcode and city, or after "Address:" and the like

The gazetteer and the street words cover English, German, French, Spanish, Italian and Dutch;
names and addresses from elsewhere are found only through cues, and evals/pii.py measures both
sides. The engine is built once per process and shared by every PiiGuard: about a second of its
own, after importing presidio and spaCy, which import torch and transformers (10-20 s on 2 busy
cores when nothing imported them yet): call engine() at startup to pay that before a request does.
Scanning is thread-safe: the spaCy tokenizer, the one stateful part, runs under a lock. Cost grows
with the text: ~5 ms for a 150-character prompt, ~60 ms per 1,000 characters on long ones.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequestError, MissingDependencyError

ENTITIES = ("PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "ADDRESS")
DEFAULT_THRESHOLD = 0.4  # presidio's phone matcher scores 0.4; our weakest name evidence 0.45
NAME_LOCALES = ("en_US", "en_GB", "en_IE", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL")
PHONE_REGIONS = ("US", "CA", "GB", "IE", "DE", "AT", "CH", "FR", "BE", "ES", "IT", "NL")
# Request-body keys whose values are protocol words, not user text (redact_value leaves them).
SKIP_KEYS = frozenset({"model", "role", "type", "object", "response_format", "encoding_format", "voice",
                       "size", "quality", "style", "detail", "tool_choice", "finish_reason", "id", "tool_call_id"})

_BUILD_LOCK = threading.Lock()
_NLP_LOCK = threading.Lock()
_ENGINE: _Engine | None = None


@dataclass(frozen=True)
class Finding:
    entity: str
    start: int
    end: int
    score: float
    text: str  # the personal data itself: never store it where the redacted text goes
    path: str = ""  # where redact_value found it, e.g. "messages[0].content"; "" for plain text

    def summary(self) -> dict[str, Any]:
        """What an audit record may keep: everything but the text."""
        return {"entity": self.entity, "start": self.start, "end": self.end, "score": round(self.score, 2),
                "path": self.path}


def counts(findings: Iterable[Finding]) -> dict[str, int]:
    """Findings per entity, e.g. {"PERSON": 2, "EMAIL_ADDRESS": 1}."""
    return dict(Counter(f.entity for f in findings))


class PiiGuard:
    """Finds and redacts the chosen entities at or above a score threshold; cheap to construct."""

    def __init__(self, entities: Iterable[str] | None = None, threshold: float = DEFAULT_THRESHOLD) -> None:
        chosen = tuple(entities) if entities is not None else ENTITIES
        unknown = sorted(set(chosen) - set(ENTITIES))
        if unknown:
            raise InvalidRequestError(f"unknown PII entities {unknown}; choose from {list(ENTITIES)}",
                                      param="pii_entities")
        if not 0.0 <= threshold <= 1.0:
            raise InvalidRequestError(f"PII score threshold must be within [0, 1], got {threshold}",
                                      param="pii_threshold")
        self.entities = chosen
        self.threshold = threshold

    def find(self, text: str) -> list[Finding]:
        """Non-overlapping findings in text order (where two overlap, the higher score wins)."""
        if not self.entities or not _may_hold_pii(text):
            return []
        results = engine().analyzer.analyze(text=text, language="en", entities=list(self.entities),
                                            score_threshold=self.threshold)
        spans = [(r.start, r.end, float(r.score), r.entity_type) for r in results]
        return [Finding(entity, start, end, score, text[start:end]) for start, end, score, entity in _resolve(spans)]

    def redact(self, text: str) -> tuple[str, list[Finding]]:
        """The text with each finding replaced by "<ENTITY>", and the findings."""
        findings = self.find(text)
        if not findings:
            return text, []
        return engine().replace(text, findings), findings

    def redact_value(self, value: Any, *, skip_keys: frozenset[str] = SKIP_KEYS) -> tuple[Any, list[Finding]]:
        """A copy of a JSON-like value (dicts, lists, strings ...) with every string redacted.

        Values under skip_keys (protocol words such as "model" and "role") and data: URLs are
        kept as they are; dict keys are never changed. Each finding's path says where it was.
        """
        findings: list[Finding] = []
        return self._walk(value, "", skip_keys, findings), findings

    def _walk(self, value: Any, path: str, skip_keys: frozenset[str], out: list[Finding]) -> Any:
        if isinstance(value, str):
            if value.startswith("data:"):
                return value
            redacted, found = self.redact(value)
            out.extend(Finding(f.entity, f.start, f.end, f.score, f.text, path) for f in found)
            return redacted
        if isinstance(value, Mapping):
            return {k: v if k in skip_keys else self._walk(v, f"{path}.{k}" if path else str(k), skip_keys, out)
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._walk(v, f"{path}[{i}]", skip_keys, out) for i, v in enumerate(value)]
        return value


def _resolve(spans: list[tuple[int, int, float, str]]) -> list[tuple[int, int, float, str]]:
    """Non-overlapping spans: one inside another gives way to it (a name inside an address, digits
    inside an IBAN); of two that cross, the higher score stays."""
    spans = sorted(spans, key=lambda s: (s[0], -s[1], -s[2]))
    outer = [s for i, s in enumerate(spans)
             if not any(o[0] <= s[0] and s[1] <= o[1] and (o[0], o[1]) != (s[0], s[1]) or
                        (o[0], o[1]) == (s[0], s[1]) and j < i for j, o in enumerate(spans))]
    kept: list[tuple[int, int, float, str]] = []
    for s in sorted(outer, key=lambda s: (-s[2], s[0])):
        if all(s[1] <= k[0] or s[0] >= k[1] for k in kept):
            kept.append(s)
    return sorted(kept)


def _may_hold_pii(text: str) -> bool:
    """Every entity needs a digit, an "@" or a capital letter: skip the rest without tokenizing."""
    return any(c.isdigit() or c.isupper() or c == "@" for c in text)


# -- the engine: built once, shared ----------------------------------------------------------------
@dataclass
class _Engine:
    analyzer: Any  # presidio_analyzer.AnalyzerEngine
    anonymizer: Any  # presidio_anonymizer.AnonymizerEngine
    build_seconds: float  # all of it, imports included
    import_seconds: float  # presidio, spaCy and what they import (torch, transformers) when not yet imported

    def replace(self, text: str, findings: list[Finding]) -> str:
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        results = [RecognizerResult(f.entity, f.start, f.end, f.score) for f in findings]
        operators = {f.entity: OperatorConfig("replace", {"new_value": f"<{f.entity}>"}) for f in findings}
        return self.anonymizer.anonymize(text=text, analyzer_results=results, operators=operators).text


def engine() -> _Engine:
    """The shared presidio engine, built on first use (thread-safe)."""
    global _ENGINE
    if _ENGINE is None:
        with _BUILD_LOCK:
            if _ENGINE is None:
                _ENGINE = _build()
    return _ENGINE


def _build() -> _Engine:
    started = time.perf_counter()
    try:
        import spacy
        from presidio_analyzer import AnalyzerEngine, LocalRecognizer, Pattern, RecognizerRegistry, RecognizerResult
        from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer,
            EmailRecognizer,
            IbanRecognizer,
            PhoneRecognizer,
        )
        from presidio_anonymizer import AnonymizerEngine
    except ImportError as exc:
        raise MissingDependencyError(
            f"PII redaction needs presidio-analyzer, presidio-anonymizer and Faker ({exc.name} is missing): "
            "pip install presidio-analyzer presidio-anonymizer faker") from None
    import tldextract

    imported = time.perf_counter() - started

    class BlankEnglish(SpacyNlpEngine):
        """A tokenizer-only spaCy pipeline: spacy.blank("en"), no model to load or download."""

        def __init__(self) -> None:
            super().__init__(models=[{"lang_code": "en", "model_name": "blank:en"}])

        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}

        def process_text(self, text: str, language: str) -> NlpArtifacts:
            with _NLP_LOCK:  # spaCy's tokenizer keeps a cache that concurrent calls could corrupt
                return super().process_text(text, language)

        def _doc_to_nlp_artifact(self, doc: Any, language: str) -> NlpArtifacts:
            return NlpArtifacts(entities=[], tokens=doc, tokens_indices=[t.idx for t in doc],
                                lemmas=[t.lower_ for t in doc], nlp_engine=self, language=language, scores=[])

    offline_tlds = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)

    class OfflineEmail(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return offline_tlds(pattern_text.rsplit("@", 1)[-1]).fqdn != ""

    class Spans(LocalRecognizer):
        """A presidio recognizer over one of our span functions: text -> [(start, end, score)]."""

        def __init__(self, entity: str, find: Any) -> None:
            self._find = find
            super().__init__(supported_entities=[entity], name=f"omniforge-{entity.lower()}")

        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            return [RecognizerResult(self.supported_entities[0], s, e, score,
                                     recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                                                           RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id})
                    for s, e, score in self._find(text)]

    class Phones(PhoneRecognizer):
        """libphonenumber's matches, less those that are part of an identifier ("INV-2024-651063").

        The matcher runs once per region over what it is given (~200 ms per 1,000 characters for
        12 regions), so it is given only the digit runs that could be phone numbers.
        """

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            out = []
            for m in _compiled("phone", _PHONE_SHAPE).finditer(text):
                for r in super().analyze(m.group(), entities, nlp_artifacts):
                    r.start, r.end = r.start + m.start(), r.end + m.start()
                    if _phone_plausible(text, r.start, r.end):
                        out.append(r)
            return out

    cards = CreditCardRecognizer(patterns=[Pattern("card (Luhn-checked)", _CARD_PATTERN, 0.3)])
    gazetteer = _Gazetteer.load(NAME_LOCALES)
    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in (OfflineEmail(), Phones(supported_regions=PHONE_REGIONS), cards, IbanRecognizer(),
                       Spans("PHONE_NUMBER", _phone_spans), Spans("CREDIT_CARD", _short_card_spans),
                       Spans("PERSON", gazetteer.person_spans),
                       Spans("ADDRESS", _address_spans)):
        registry.add_recognizer(recognizer)
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=BlankEnglish(), supported_languages=["en"])
    return _Engine(analyzer, AnonymizerEngine(), time.perf_counter() - started, imported)


# presidio's card pattern widened to every issuer prefix 1-6 (Mastercard 2221-2720, JCB 2131/1800) and
# up to 19 digits, but not the digits of an IBAN ("DE89 3704 ..."); the Luhn check still decides.
_CARD_PATTERN = (r"\b(?<![A-Z]{2}\d{2}[ -]?)(?!1\d{12}(?!\d))"
                 r"([1-6]\d{3})[- ]?(\d{3,4})[- ]?(\d{3,4})[- ]?(\d{3,5})(?:[- ]?\d{1,2})?\b")


# -- phone numbers libphonenumber does not accept ----------------------------------------------------
def _rx(pattern: str, flags: int = 0) -> Any:
    import regex

    return regex.compile(pattern, flags)


# A digit run that could be a phone number (with an "x123" extension); libphonenumber decides.
_PHONE_SHAPE = (r"(?<![\w+/.-])(\+|00)?\(?\d[\d ().\-/]{5,22}\d(?:[ \t]?(?:x|ext\.?)[ \t]?\d{1,5})?"
                r"(?![\w/-]|\.\d)")
_PHONE_CUE = (r"(?i:\b(?:phone|tel|telephone|mobile|cell|fax|call|ring|text|whatsapp|reach|contact"
              r"|handy|telefon|téléphone|tél|telefono|teléfono|móvil|cellulare|tlf|puh))\W{0,3}(?:\w+\W+){0,3}\Z")
_DATE_SHAPE = r"^(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})$"


_SHORT_CARD = r"(?<![\d-])(?:50\d\d|5[6-9]\d\d|6\d{3})\d{8}(?![\d-])"  # 12-digit Maestro
_CARD_CUE = r"(?i:\b(?:card|maestro|debit|visa|mastercard|cc)\b\W{0,3}(?:\w+\W+){0,3})\Z"


def _short_card_spans(text: str) -> list[tuple[int, int, float]]:
    """12-digit Maestro numbers, which presidio's pattern (13-19 digits) skips: Luhn-valid and after "card"."""
    cue = _compiled("card-cue", _CARD_CUE)
    return [(m.start(), m.end(), 0.8) for m in _compiled("short-card", _SHORT_CARD).finditer(text)
            if luhn(m.group()) and cue.search(text, max(0, m.start() - 40), m.start())]


def luhn(digits: str) -> bool:
    """The Luhn checksum every card number passes."""
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _phone_plausible(text: str, start: int, end: int) -> bool:
    """7 to 15 digits before any extension (E.164 allows 15), not glued to an identifier on either side."""
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    number = _compiled("extension", r"(?i)[ \t]*(?:x|ext\.?)[ \t]*\d{1,5}$").sub("", text[start:end])
    return (7 <= sum(c.isdigit() for c in number) <= 15 and not (before.isalnum() or before in "#-_/.")
            and not (after.isalnum() or after in "-_/"))


def _phone_spans(text: str) -> list[tuple[int, int, float]]:
    """Phone-shaped digit runs libphonenumber rejects, after a cue word or with an international prefix."""
    shape, cue = _compiled("phone", _PHONE_SHAPE), _compiled("phone-cue", _PHONE_CUE)
    date = _compiled("date", _DATE_SHAPE)
    out = []
    for m in shape.finditer(text):
        digits = sum(c.isdigit() for c in m.group())
        if not _phone_plausible(text, m.start(), m.end()) or date.match(m.group()):
            continue
        if cue.search(text, max(0, m.start() - 40), m.start()):
            out.append((m.start(), m.end(), 0.6))
        elif m.group(1) and digits >= 8:  # "+48 578 353 374": an international prefix is phone-shaped enough
            out.append((m.start(), m.end(), 0.5))
    return out


_COMPILED: dict[str, Any] = {}


def _compiled(key: str, pattern: str, flags: int = 0) -> Any:
    if key not in _COMPILED:
        _COMPILED[key] = _rx(pattern, flags)
    return _COMPILED[key]


# -- person names -----------------------------------------------------------------------------------
_NAME_TOKEN = r"(?:Mc|Mac|O['’]|D['’])?\p{Lu}\p{Ll}+(?:[-'’]\p{Lu}?\p{Ll}+)*"
_PARTICLE = r"(?:van der|van den|van de|van|von der|von|de la|de los|de|del|della|di|da|du|dos|das|le|ter|ten|bin)"
_NAME_RUN = rf"{_NAME_TOKEN}(?:[ \t]+(?:{_PARTICLE}[ \t]+)?(?:{_NAME_TOKEN}|\p{{Lu}}\.))*"
_TITLES = (r"mr|mrs|ms|miss|mx|dr|prof|sir|madam|herr|frau|monsieur|madame|mme|mlle|señor|señora|sr|sra|srta"
           r"|signor|signora|sig|dott|dottssa|ing")
# A strong cue makes any capitalised run after it a name; a weak one needs a name-shaped run.
_STRONG_CUE = (rf"(?i:(?:\b(?:{_TITLES})\.?|\bm\.|\bmy name is|\bmy name's|\bname\s*:|\bfull name\s*:|\bsigned\s*:?"
               r"|\bdear|\b(?:patient|customer|client|contact|from|to|cc|attn|applicant|employee|passenger|guest"
               r"|tenant|landlord|landlady|buyer|seller|witness|author|cardholder|account holder|beneficiary|recipient"
               r"|sender|assignee|reporter|requester|owner|signatory|guarantor|spouse|parent|guardian)\s*:"
               r"|\b(?:regards|best|cheers|thanks|thank you|sincerely|yours|greetings|grüße|gruß|cordialement"
               r"|saludos|saluti|groeten)[,!.]?[ \t]*\r?\n[ \t]*"
               r"|(?:^|\n|[:\"'“‘])[ \t]*(?:hi|hello|hey|hallo|bonjour|hola|ciao)[ \t,]*)[ \t]*\Z)")
_WEAK_CUE = (r"(?i:\b(?:hi|hello|hey|thanks|i am|i'm|this is|call me|ask for|ask|speak to|talk to|contact|named"
             r"|called|met|cc|customer|client|patient|colleague|employee|tenant|guest|user"
             r"|member|candidate|applicant|passenger|driver|student|author|agent)[ \t]*,?[ \t]*)\Z")
# Words that often stand before a name, and as often before a product or a place ("and Docker Swarm"):
# a two-word name after them scores 0.42, so a threshold of 0.5 drops them.
_CONNECTOR_CUE = r"(?i:\b(?:and|with|by|via|per|or|from|to)[ \t]*)\Z"
# Capitalised words that are not names here even when a name list holds them (sentence starts,
# greetings, months, days, business words).
_NOT_NAMES = frozenset("""
a an the i we you he she they it this that these those my our your his her their its me us them
hi hello hey dear thanks thank regards best cheers sincerely yours kind warm greetings please
yes no ok okay sure sorry also and or but so if when while as at by for from in into of on to with
will may can could would should must shall might do does did is are was were be been have has had
mr mrs ms miss dr prof sir madam herr frau monsieur madame
january february march april june july august september october november december jan feb mar
apr jun jul aug sep sept oct nov dec monday tuesday wednesday thursday friday saturday sunday
today tomorrow yesterday morning afternoon evening night week month year
team all everyone there world folks guys support sales service customer client account order
invoice payment delivery shipping product products project meeting review report update status
manager director officer department office company corporation group board committee
new north south east west street road avenue city state county park lake river mount saint st
german french english american british irish scottish welsh italian spanish dutch swiss austrian polish
czech danish swedish finnish norwegian turkish greek portuguese european african asian russian chinese
""".split())
# Names that are also everyday words: a name only with a known surname after them or a cue before.
_AMBIGUOUS = frozenset("""
grace hope faith joy mark bill rose summer autumn dawn eve art chase dean drew gene guy hunter ivy
miles page penny pat ray rich rob sandy sky sunny wade ward young king lane major star storm max
christian crystal destiny jewel rusty pearl ruby amber jade olive hazel holly violet iris daisy
august june april may will sterling forest river brook glen dale clay cliff rock stone bud
""".split())


class _Gazetteer:
    """First and last names from Faker's person providers for some locales, case-folded."""

    def __init__(self, first: frozenset[str], last: frozenset[str]) -> None:
        self.first, self.last = first, last

    @classmethod
    def load(cls, locales: Iterable[str]) -> _Gazetteer:
        first: set[str] = set()
        last: set[str] = set()
        for locale in locales:
            try:
                provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
            except ImportError as exc:
                raise MissingDependencyError(f"the name list for {locale} comes from Faker ({exc}): "
                                             "pip install faker") from None
            for attr in ("first_names", "first_names_male", "first_names_female", "first_names_nonbinary"):
                first.update(_words(getattr(provider, attr, ())))
            for attr in ("last_names", "last_names_male", "last_names_female"):
                last.update(_words(getattr(provider, attr, ())))
        return cls(frozenset(first), frozenset(last))

    def kind(self, token: str) -> str:
        """F: a first name, A: an ambiguous one, L: a last name only, C: a common word, U: unknown."""
        word = token.casefold()
        if word in _NOT_NAMES or len(word) < 2:
            return "C"
        if word in _AMBIGUOUS:
            return "A"
        if word in self.first:
            return "F"
        return "L" if word in self.last else "U"

    def person_spans(self, text: str) -> list[tuple[int, int, float]]:
        token_rx = _compiled("name-token", rf"{_NAME_TOKEN}|\p{{Lu}}\.")
        strong, weak = _compiled("strong-cue", _STRONG_CUE), _compiled("weak-cue", _WEAK_CUE)
        connector = _compiled("connector-cue", _CONNECTOR_CUE)
        out = []
        for run in _compiled("name-run", _NAME_RUN).finditer(text):
            tokens = [(run.start() + m.start(), run.start() + m.end(), "I" if m.group().endswith(".") else
                       self.kind(m.group())) for m in token_rx.finditer(run.group())]
            i = 0
            while i < len(tokens):
                start, _, kind = tokens[i]
                if kind in "CI":
                    i += 1
                    continue
                window = (max(0, start - 60), start)  # "^" matches only at a real line start
                cue = ("strong" if strong.search(text, *window) else "weak" if weak.search(text, *window) else
                       "connector" if connector.search(text, *window) else "")
                after_word = i > 0 and tokens[i - 1][2] != "C"  # "Pro Max": inside a longer capitalised phrase
                head = text[max(0, start - 40):start].rstrip(" \t\"'“‘(")
                sentence_start = start < 40 and not head or head[-1:] in (".", "!", "?", "\n", ":")
                n, score = _name_length(tokens[i:], cue, after_word, sentence_start)
                if n:
                    out.append((start, tokens[i + n - 1][1], score))
                    i += n
                else:
                    i += 1
        return out


def _name_length(tokens: list[tuple[int, int, str]], cue: str, after_word: bool,
                 sentence_start: bool) -> tuple[int, float]:
    """How many tokens from here form a name, and how sure: (0, 0) when none do.

    Scores: a known first name and surname 0.85 (0.7 with an unknown surname), any name after a
    strong cue 0.85, after a weak one 0.6, two unknown words after "and", "by" ... 0.42, a lone
    known first name 0.45 (one inside a longer capitalised phrase, "Pro Max", or one that is also
    a word, "Grace", needs a cue).
    """
    kinds = "".join(k for _, _, k in tokens[:4])
    role = "C" in kinds and "F" not in kinds[:kinds.index("C")]  # "Dear Hiring Manager", "Valued Customer"
    kinds = kinds[:kinds.index("C")] if "C" in kinds else kinds
    if not kinds or role and kinds[0] == "U":
        return 0, 0.0
    if kinds[0] in "FA":
        n = 1
        while n < len(kinds) and n < 3 and kinds[n] in "FAI":  # middle names and initials
            n += 1
        if n < len(kinds) and kinds[n] in "LU":
            n += 1
        while n > 1 and kinds[n - 1] == "I":
            n -= 1
        if n > 1:
            if kinds[0] == "A" and not cue and kinds[n - 1] != "L" and "F" not in kinds[1:n]:
                return 0, 0.0  # "Rose Garden"
            return n, 0.85 if kinds[n - 1] == "L" or cue in ("strong", "weak") else 0.7
        if cue == "strong":
            return 1, 0.85
        if cue == "weak":
            return 1, 0.6
        return (0, 0.0) if kinds[0] == "A" or after_word else (1, 0.45)
    n = min(len(kinds.rstrip("I")), 3)
    if cue == "strong":
        return n, 0.85
    if cue == "weak" and (n >= 2 or kinds[0] == "L"):
        return n, 0.6
    if cue == "connector" and n >= 2:
        return n, 0.42
    if n >= 2 and kinds[1] == "L" and kinds[0] == "U" and not sentence_start:  # not "Compare Paris"
        return 2, 0.5
    return 0, 0.0


def _words(names: Any) -> set[str]:
    """The capitalised words of each name ("de Korte" gives "korte"), case-folded."""
    return {w.casefold() for name in names for w in str(name).replace("-", " ").split() if w[:1].isupper()}


# -- street addresses -------------------------------------------------------------------------------
_US_TYPES = (r"Street|St|Avenue|Ave|Av|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|Place|Pl|Way|Terrace|Ter"
             r"|Close|Crescent|Cres|Parkway|Pkwy|Square|Sq|Highway|Hwy|Circle|Cir|Trail|Trl|Row|Hill|Hills|Gardens?"
             r"|Grove|Mews|Park|Walk|Green|Rise|View|Views|Parade|Pike|Path|Loop|Run|Alley|Aly|Bridge|Brooks?"
             r"|Burgs?|Bypass|Camp|Canyon|Cape|Causeway|Centers?|Circles|Cliffs?|Club|Common|Corners?|Course"
             r"|Courts|Coves?|Creek|Crest|Crossing|Crossroad|Curve|Dale|Dam|Divide|Drives|Estates?|Expressway"
             r"|Extensions?|Falls?|Ferry|Fields?|Flats?|Fords?|Forest|Forges?|Forks?|Fort|Freeway|Gateway|Glens?"
             r"|Greens|Groves|Harbors?|Haven|Heights|Hollow|Inlet|Islands?|Isle|Junctions?|Keys?|Knolls?|Lakes?"
             r"|Landing|Lights?|Loaf|Locks?|Lodge|Mall|Manors?|Meadows?|Mills?|Mission|Motorway|Mount|Mountains?"
             r"|Neck|Orchard|Oval|Overpass|Parks|Parkways|Pass|Passage|Pines?|Plains?|Plaza|Points?|Ports?"
             r"|Prairie|Radial|Ramp|Ranch|Rapids?|Rest|Ridges?|River|Roads|Route|Rue|Shoals?|Shores?|Skyway"
             r"|Springs?|Spurs?|Squares|Station|Stravenue|Stream|Streets|Summit|Throughway|Trace|Track"
             r"|Trafficway|Tunnel|Turnpike|Underpass|Unions?|Valleys?|Viaduct|Villages?|Ville|Vista|Walks|Wall"
             r"|Ways|Wells?|Wynd|Yard|Quay|Wharf|Embankment|Approach|Drove|Gate|Hey|Nook|Vale")
_UNIT = (r"(?:,?[ \t]*(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|Room|Rm|Piso|Puerta|Appartamento|Piano|#)\.?"
         r"[ \t]*#?\d\w{0,5})?")
# Dutch and German compounds ("Kerkstraat 12", "Hauptstraße 5").
_EU_COMPOUND = (r"(?i:straße|strasse|str\.|gasse|platz|allee|ring|damm|ufer|chaussee|steig|pfad|markt|weg|straat"
                r"|laan|plein|gracht|singel|kade|dijk|dreef|baan|hof|steeg|pad)")
_EU_PREFIX = (r"(?:Calle|C/|Avenida|Avda\.?|Paseo|Plaza|Pza\.?|Carrer|Camino|Ronda|Travesía|Glorieta|Rambla|Vial"
              r"|Urbanización|Callejón|Cañada|Alameda|Acceso|Cuesta|Pasaje|Pasadizo|Via|Viale|Piazza|Piazzale|Corso"
              r"|Largo|Vicolo|Strada|Contrada|Borgo|Incrocio|Rotonda|Stretto|Canale|Vía|Rua|Praça|Travessa)")
_FR_NUMBERED = r"(?i:rue|avenue|av\.|boulevard|bd|place|chemin|allée|impasse|quai|route|cours|square|passage|voie)"
_FR_BARE = r"(?:rue|avenue|boulevard|chemin|allée|impasse|quai)"  # lower-case, no number: "boulevard de Petit"
_CAP = r"\p{Lu}[\p{L}'’.-]*"
_HOUSE = r"(?!(?:19|20)\d\d(?!\d))\d{1,4}(?!\d)"  # a house number, not a year: "Spring 2024" stays out
_LINK = r"(?:de la|de las|de los|del|de|di|della|delle|dei|degli|da|do|dos|das|y|e|d'|l')"
_FR_NAME = rf"(?:{_LINK}[ \t]*)*{_CAP}(?:[ \t]+(?:{_LINK}[ \t]*)?{_CAP}){{0,3}}"
_FLAT = r"(?:Flat|Studio|Apartment|Unit|Suite)[ \t]+\d{1,4}[a-zA-Z]?,?[ \t]*\r?\n?[ \t]*"  # "Studio 39g\n"
_STREET = (
    rf"\b(?:{_FLAT})?\d{{1,5}}[a-zA-Z]?,?[ \t]+(?:{_CAP}[ \t]+){{1,3}}(?:{_US_TYPES})\b\.?{_UNIT}"  # 221b Baker St
    rf"|\b{_FLAT}(?:{_CAP}[ \t]+){{1,3}}(?:{_US_TYPES})\b"
    rf"|(?:{_CAP}[ \t-]){{0,3}}\p{{Lu}}[\p{{L}}-]*{_EU_COMPOUND}[ \t]+{_HOUSE}(?:[ \t]?[a-zA-Z](?!\w))?"
    rf"(?:[-/]\d{{1,3}}(?!\d))?{_UNIT}"  # Kerkstraat 12
    rf"|(?:{_CAP}[ \t]+){{1,3}}(?i:Straße|Strasse|Str\.|Weg|Gasse|Platz|Allee|Ring|Damm)[ \t]+\d{{1,3}}[a-z]?(?!\w)"
    rf"|\b\d{{1,4}}(?:[ \t]?(?:bis|ter))?,?[ \t]+{_FR_NUMBERED}[ \t]+{_FR_NAME}"  # 12 rue de la Paix
    rf"|\b{_FR_BARE}[ \t]+{_FR_NAME}"
    rf"|\b{_EU_PREFIX}[ \t]+(?:{_LINK}[ \t]+)*{_CAP}(?:[ \t]+(?:{_LINK}[ \t]+)?{_CAP}){{0,3}},?[ \t]+(?:n\.?º?[ \t]*)?"
    rf"\d{{1,4}}(?:[ \t]?[a-zA-Z](?!\w))?{_UNIT}"  # Calle de Alcalá 42, Via Roma, 3
)
_CITY = (r"\p{Lu}[\p{L}'’.-]+"
         r"(?:[ \t-]+(?:(?:sur|sous|le|la|les|de|am|an|im|upon|on)[ \t-]+)?\p{Lu}[\p{L}'’.-]+){0,2}")
_UK_POSTCODE = r"[A-Z]{1,2}\d[A-Z\d]?[ \t]?\d[A-Z]{2}"
_LOCALITY = (
    rf"(?:,[ \t]*|[ \t]*\r?\n[ \t]*|[ \t]+)(?:"
    rf"{_CITY},?[ \t]+\p{{Lu}}{{2}}[ \t]+\d{{5}}(?:-\d{{4}})?"  # Springfield, IL 62704
    rf"|(?:[A-Z]{{1,2}}-)?\d{{4,5}}(?:[ \t]?[A-Z]{{2}})?,?[ \t]+{_CITY}"  # 75002 Paris, 9000 AY Hoorn, D-10115 Berlin
    rf"|\d{{3}}[ \t]\d{{2}}[ \t]+{_CITY}|\d{{2}}-\d{{3}}[ \t]+{_CITY}|\d{{4}}-\d{{3}}[ \t]+{_CITY}"  # CZ, PL, PT
    rf"|{_CITY}(?:,?[ \t]+|,?[ \t]*\r?\n[ \t]*)(?:\d{{4,5}}|{_UK_POSTCODE})(?!\w)"  # Vizcaya, 28663; London\nSW1A 1AA
    rf"|(?:{_UK_POSTCODE}|[A-Z]\d[\dW][ \t]?[A-Z\d]{{4}})(?!\w)(?:[ \t,]+{_CITY})?"  # SW1A 1AA London; Eircode D02 X285
    rf")"
)


# Any language: a capitalised street name and a house number, then a postcode and a city.
_STREET_LINE = rf"(?<![\p{{L}}\d])(?:{_CAP}[ \t]+){{0,2}}{_CAP}[ \t]+{_HOUSE}[a-zA-Z]?\.?(?!\w)"
# Any language, after "Address:" and the like: a street (lower-case words allowed: "Miskolci utca 12").
_CUED_STREET = (r"(?i:\b(?:(?:address|addr|adresse|anschrift|dirección|direccion|indirizzo|adres|endereço)"
                r"(?:[ \t]+on[ \t]+file)?[ \t]*[:,-]?|lives at|living at|ship to|deliver to|located at"
                r"|(?:flat|home|residence|domicile|street)[ \t]*:)[ \t]*)"
                rf"((?:\p{{Ll}}{{1,4}}\.[ \t]*)?{_CAP}(?:[ \t]+[\p{{L}}'’.-]+){{0,3}}[ \t]+{_HOUSE}[a-zA-Z]?"
                r"(?:[-/]\d{1,4})?\.?(?!\w))")


def _address_spans(text: str) -> list[tuple[int, int, float]]:
    """Streets by lexicon (0.8; 0.5 without a number), by shape before a postcode, or after a cue (0.6)."""
    locality = _compiled("locality", _LOCALITY)
    out = []
    for m in _compiled("street", _STREET).finditer(text):
        has_number = any(c.isdigit() for c in m.group())
        out.append((m.start(), _with_locality(text, m.end(), locality), 0.8 if has_number else 0.5))
    for m in _compiled("street-line", _STREET_LINE).finditer(text):
        end = _with_locality(text, m.end(), locality)
        postcode = "".join(c for c in text[m.end():end] if c.isdigit())
        words = [w.casefold() for w in m.group().split()[:-1]]
        if postcode and not any(w in _NOT_NAMES for w in words) and not (
                len(postcode) == 4 and postcode[:2] in ("19", "20")):  # "On February 01, 1984 ..." is a date
            out.append((m.start(), end, 0.6))
    for m in _compiled("cued-street", _CUED_STREET).finditer(text):
        out.append((m.start(1), _with_locality(text, m.end(1), locality), 0.6))
    return out


def _with_locality(text: str, end: int, locality: Any) -> int:
    """Where the address ends: after the postcode and city that follow the street, if any."""
    more = locality.match(text, pos=end)
    if not more or not more.group().strip(", \t\r\n"):
        return end
    stop = more.end()
    while stop > end and text[stop - 1] in ".,'’-":  # "75002 Paris." ends a sentence
        stop -= 1
    return stop


def build_seconds() -> float:
    """Seconds the shared engine took to build (builds it if needed)."""
    return engine().build_seconds
