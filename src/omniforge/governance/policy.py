"""The content policy: rules over the text of every input and output, and the verdicts they give.

Rules come from three places, all off by default:
- `policy_categories`: built-in categories (CATEGORIES below), phrase patterns for a few kinds of
  request no deployment wants to serve (weapons of mass harm, malware, self-harm instructions,
  violent threats, sexual content involving minors);
- `policy_blocklist`: words and phrases of your own (whole words, case- and width-insensitive);
- `policy_file`: a YAML file of named rules, each with `terms` and/or regex `patterns`, an
  `action` (block or flag) and the `stages` it applies to (input, output).

The Service screens every text it takes in or gives out through one `ContentPolicy.check`: chat and
completion prompts, embedding inputs, speech input, transcripts (the text of audio), OCR text of
input and generated images, generated text (as it streams) and video narration. A block raises
ContentPolicyError (400 content_policy_violation); flags only record. Every verdict goes onto the
current request's usage, which the audit record carries.

Keyword and pattern rules are a floor, not a classifier: they miss paraphrases and obfuscations
("b o m b"), and they do not understand negation or quotation. No offline safety classifier ships
on PyPI for the machines here; a deployment that needs one puts it in front of omniforge.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ContentPolicyError, InvalidRequestError

log = logging.getLogger("omniforge.policy")

ACTIONS = ("block", "flag")
STAGES = ("input", "output")
TAIL_CHARS = 200  # streamed output: a match may straddle deltas, so each check sees this much before


def _rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", re.IGNORECASE)


_MAKE = r"(?:build|make|making|assemble|construct|synthesi[sz]e|manufactur\w*|produce|weaponi[sz]e|cook)"
CATEGORIES: dict[str, tuple[str, re.Pattern[str]]] = {
    "weapons": ("instructions for weapons of mass harm", _rx(
        _MAKE + r" (?:\w+ ){0,3}(?:pipe ?bombs?|nail bombs?|dirty bombs?|car bombs?|suicide vests?|"
        r"nuclear (?:bombs?|weapons?|devices?)|nerve (?:agents?|gas)|sarin|tabun|vx|ricin|anthrax|"
        r"bio-?weapons?|biological weapons?|chemical weapons?|explosives?|napalm|thermite charges?)",
        r"(?:enrich|weapons-grade) uranium (?:at home|for a bomb)",
    )),
    "malware": ("writing malware", _rx(
        r"(?:write|create|build|code|develop|generate|make)\w* (?:\w+ ){0,3}(?:ransomware|keyloggers?|"
        r"botnets?|credential[- ]stealers?|info-?stealers?|rootkits?|computer virus(?:es)?|"
        r"self-propagating worms?|polymorphic malware|malware)",
        r"(?:evade|bypass|disable)\w* (?:\w+ ){0,2}(?:antivirus|edr|windows defender) (?:detection )?"
        r"(?:with|for|in) (?:my|our|a|the) (?:payload|malware|ransomware|trojan)",
    )),
    "self-harm": ("instructions for self-harm or suicide", _rx(
        r"(?:how|ways?|best way|easiest way|quickest way) (?:to|i can|can i) (?:kill|hurt|harm|cut) myself",
        r"suicide (?:methods?|instructions|notes? for me)", r"(?:painless|easy|quick) ways? to die",
        r"how (?:many|much) (?:\w+ ){0,3}(?:to|would) (?:overdose|kill me)",
    )),
    "violent-threats": ("threats of violence against people", _rx(
        r"i(?:'m| am|'ll| will| am going to|'m going to| gonna) (?:going to )?(?:kill|murder|shoot|stab|behead)"
        r" (?:you|him|her|them|everyone|my (?:boss|wife|husband|teacher|neighbou?r))",
        r"bomb threat", r"(?:shoot|bomb|attack) (?:up )?(?:the|a|my) (?:school|office|church|mosque|synagogue)",
    )),
    "sexual-minors": ("sexual content involving minors", _rx(
        r"child (?:porn\w*|sexual abuse material|erotica)", r"csam", r"cp (?:links?|videos?|pics?)",
        r"(?:sexual|sexy|nude|naked|erotic|explicit)\w* (?:\w+ ){0,3}(?:minors?|children|child|kids?|"
        r"(?:\d|1[0-7])[- ]year[- ]olds?|underage \w+|pre-?teens?|schoolgirls?|schoolboys?)",
        r"(?:minors?|children|child|kids?|underage \w+|pre-?teens?) (?:\w+ ){0,3}(?:sexual|nude|naked|erotic|explicit)\w*",
    )),
}


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    action: str = "block"
    stages: tuple[str, ...] = STAGES
    description: str = ""


@dataclass
class Verdict:
    """One rule that matched one text: what goes into the audit record."""

    rule: str
    action: str
    stage: str  # input | output
    source: str  # prompt, transcript, ocr, output, narration, ...
    match: str  # the matched words (at most 60 characters)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def normalize(text: str) -> str:
    """Full-width letters, ligatures and compatibility forms folded (NFKC), case folded, zero-width
    characters removed: "ＢＯＭＢ" and "bo\u200bmb" read as "bomb"."""
    text = unicodedata.normalize("NFKC", text)
    return re.sub("[\u200b\u200c\u200d\u2060\ufeff\u00ad]", "", text).casefold()


def _terms_pattern(terms: Iterable[str], where: str) -> re.Pattern[str]:
    words = [normalize(t).strip() for t in terms if str(t).strip()]
    if not words:
        raise InvalidRequestError(f"{where}: no terms", param="policy")
    escaped = sorted((r"\s+".join(map(re.escape, w.split())) for w in words), key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(escaped) + r")(?!\w)")


def _file_rules(path: Path) -> list[Rule]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InvalidRequestError(f"policy file not found: {path}", param="policy_file") from None
    except yaml.YAMLError as exc:
        raise InvalidRequestError(f"policy file {path} is not valid YAML: {exc}", param="policy_file") from None
    entries = data.get("rules") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise InvalidRequestError(f"policy file {path} needs a list under 'rules'", param="policy_file")
    rules = []
    for i, entry in enumerate(entries):
        where = f"policy file {path}, rules[{i}]"
        if not isinstance(entry, dict) or not entry.get("name"):
            raise InvalidRequestError(f"{where}: each rule needs a name", param="policy_file")
        unknown = sorted(set(entry) - {"name", "terms", "patterns", "action", "stages", "description"})
        if unknown:
            raise InvalidRequestError(f"{where}: unknown field(s) {', '.join(unknown)}", param="policy_file")
        action = entry.get("action", "block")
        if action not in ACTIONS:
            raise InvalidRequestError(f"{where}: action must be block or flag, not {action!r}", param="policy_file")
        stages = tuple(entry.get("stages") or STAGES)
        if not set(stages) <= set(STAGES):
            raise InvalidRequestError(f"{where}: stages are input and/or output", param="policy_file")
        parts = []
        if entry.get("terms"):
            parts.append(_terms_pattern(entry["terms"], where).pattern)
        for p in entry.get("patterns") or []:
            try:
                re.compile(p)
            except re.error as exc:
                raise InvalidRequestError(f"{where}: pattern {p!r} is not a valid regex: {exc}",
                                          param="policy_file") from None
            parts.append(f"(?:{p})")
        if not parts:
            raise InvalidRequestError(f"{where}: give terms or patterns", param="policy_file")
        rules.append(Rule(str(entry["name"]), re.compile("|".join(parts), re.IGNORECASE), action, stages,
                          str(entry.get("description", ""))))
    return rules


@dataclass
class ContentPolicy:
    rules: list[Rule] = field(default_factory=list)
    ocr: bool = True  # read the text in input and generated images

    @classmethod
    def from_settings(cls, settings: Any) -> ContentPolicy:
        rules = []
        for name in settings.policy_categories:
            if name not in CATEGORIES:
                raise InvalidRequestError(f"policy category {name!r} is not one of {', '.join(CATEGORIES)}",
                                          param="policy_categories")
            what, pattern = CATEGORIES[name]
            rules.append(Rule(name, pattern, "block", STAGES, what))
        if settings.policy_blocklist:
            rules.append(Rule("blocklist", _terms_pattern(settings.policy_blocklist, "policy_blocklist"),
                              "block", STAGES, "words and phrases of the policy_blocklist setting"))
        if settings.policy_file:
            rules.extend(_file_rules(Path(settings.policy_file).expanduser()))
        return cls(rules, settings.policy_ocr)

    @property
    def active(self) -> bool:
        return bool(self.rules)

    def verdicts(self, text: str, stage: str, source: str) -> list[Verdict]:
        """Every rule that matches `text` (one verdict per rule)."""
        folded = normalize(text)
        found = []
        for rule in self.rules:
            if stage in rule.stages:
                m = rule.pattern.search(folded)
                if m:
                    found.append(Verdict(rule.name, rule.action, stage, source, m.group(0)[:60]))
        return found

    def check(self, texts: str | Iterable[str], stage: str, source: str, param: str | None = None) -> list[Verdict]:
        """Screen `texts`: record every verdict on the current request, raise ContentPolicyError
        if a rule blocks. Returns the flags."""
        if not self.rules:
            return []
        found: list[Verdict] = []
        for text in [texts] if isinstance(texts, str) else texts:
            if text:
                found.extend(v for v in self.verdicts(text, stage, source)
                             if all(v.rule != w.rule for w in found))
        if found:
            record(found)
        blocked = [v for v in found if v.action == "block"]
        if blocked:
            names = ", ".join(sorted({v.rule for v in blocked}))
            raise ContentPolicyError(f"the {source} {'was refused' if stage == 'input' else 'was stopped'} by "
                                     f"the content policy (rule {names})", param=param)
        return found

    def screen(self, source: str = "output", param: str | None = None) -> OutputScreen:
        return OutputScreen(self, source, param)


class OutputScreen:
    """Checks streamed output as it grows: each piece with the tail of what came before, so a
    phrase split across pieces is still seen; a rule that flagged is recorded once."""

    def __init__(self, policy: ContentPolicy, source: str, param: str | None) -> None:
        self.policy, self.source, self.param = policy, source, param
        self.tail = ""
        self.seen: set[str] = set()

    def feed(self, piece: str) -> None:
        if not self.policy.rules or not piece:
            return
        window = self.tail + piece
        self.tail = window[-TAIL_CHARS:]
        found = [v for v in self.policy.verdicts(window, "output", self.source) if v.rule not in self.seen]
        if not found:
            return
        self.seen.update(v.rule for v in found)
        record(found)
        blocked = sorted({v.rule for v in found if v.action == "block"})
        if blocked:
            raise ContentPolicyError(f"the generated {self.source} was stopped by the content policy "
                                     f"(rule {', '.join(blocked)})", param=self.param)


def record(verdicts: list[Verdict]) -> None:
    """Put verdicts on the current request's usage (the audit record reads them there)."""
    from ..router.meter import current

    usage = current()
    for v in verdicts:
        log.info("content policy %s: rule %s on %s %s", v.action, v.rule, v.stage, v.source)
    if usage is not None:
        with usage.lock:
            usage.policy.extend(v.to_dict() for v in verdicts)


__all__ = ["ACTIONS", "CATEGORIES", "STAGES", "ContentPolicy", "OutputScreen", "Rule", "Verdict", "normalize"]
