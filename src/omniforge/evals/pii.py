"""PII redaction measured: a labelled set of texts built from Faker values, and recall/precision/F1.

build_labelled_set(n, seed) writes chat prompts, emails with signatures, support tickets, forms,
multi-entity paragraphs and negative texts full of look-alikes (order numbers, dates, versions,
prices, product codes, capitalised non-names, 16-digit numbers that fail Luhn, IBANs whose
checksum fails); every personal value is a labelled span. Values come from Faker in two groups of
locales: GAZETTEER_LOCALES, the ones the PERSON gazetteer was built from (so name recall there is
an upper bound: the names come from the very lists the scanner knows) and HELD_OUT_LOCALES, whose
name lists and street forms the scanner was never given. Held-out PERSON spans whose every word is
also in the gazetteer (Anna, Martin ...) are counted apart from the truly unseen ones.

Matching rule: a gold span is found when a finding of the same entity overlaps it by at least one
character; a finding is correct when it overlaps a gold span of its entity. Precision counts every
finding, including those in negative texts. "covered" is the share of gold characters under any
finding, whatever its entity: what a reader of the redacted text can no longer see.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..errors import InvalidRequestError, MissingDependencyError
from ..governance import pii

GAZETTEER_LOCALES = pii.NAME_LOCALES
HELD_OUT_LOCALES = ("pl_PL", "cs_CZ", "sv_SE", "fi_FI", "pt_PT", "hu_HU", "da_DK", "tr_TR")
HELD_OUT_SHARE = 0.35  # of the texts with personal data
NEGATIVE_SHARE = 0.2
ENTITIES = pii.ENTITIES


class Span(NamedTuple):
    start: int
    end: int
    entity: str
    group: str = ""  # PERSON and ADDRESS: "gazetteer", "held_out" or (PERSON only) "unseen"


@dataclass
class Item:
    text: str
    spans: list[Span]
    kind: str  # chat, email, ticket, form, paragraph, names, negative
    locale: str


# -- values ---------------------------------------------------------------------------------------
_FAKERS: dict[str, Any] = {}
_PROVIDERS = [f"faker.providers.{p}" for p in ("person", "address", "phone_number", "bank", "credit_card", "internet",
                                               "date_time", "company", "lorem")]


class _Values:
    """Personal values from one Faker locale, each returned with its entity and group."""

    def __init__(self, locale: str, rng: random.Random, known: Callable[[str], bool]) -> None:
        try:
            from faker import Faker
        except ImportError:
            raise MissingDependencyError("the PII eval draws its values from Faker: pip install faker") from None
        self.locale, self.rng, self.known = locale, rng, known
        self.group = "gazetteer" if locale in GAZETTEER_LOCALES else "held_out"
        if locale not in _FAKERS:  # building a Faker takes ~0.2 s; seeding it again makes it repeat
            _FAKERS[locale] = Faker(locale, providers=_PROVIDERS)
        self.fake = _FAKERS[locale]
        self.fake.seed_instance(rng.randrange(2**31))

    def name(self, first_only: bool = False) -> tuple[str, str, str]:
        first = self.fake.first_name()
        text = first if first_only else f"{first} {self.fake.last_name()}"
        group = self.group
        if group == "held_out" and not all(self.known(w) for w in text.replace("-", " ").split()):
            group = "unseen"  # at least one word the gazetteer lacks
        return text, "PERSON", group

    def last(self) -> tuple[str, str, str]:
        text = self.fake.last_name()
        return text, "PERSON", "unseen" if self.group == "held_out" and not self.known(text) else self.group

    def email(self) -> tuple[str, str, str]:
        return self.fake.email(), "EMAIL_ADDRESS", ""

    def phone(self) -> tuple[str, str, str]:
        return self.fake.phone_number(), "PHONE_NUMBER", ""

    def card(self) -> tuple[str, str, str]:
        number = self.fake.credit_card_number()
        if len(number) == 16 and self.rng.random() < 0.5:
            sep = self.rng.choice(" -")
            number = sep.join(number[i:i + 4] for i in range(0, 16, 4))
        return number, "CREDIT_CARD", ""

    def iban(self) -> tuple[str, str, str]:
        iban = self.fake.iban()
        if self.rng.random() < 0.5:
            iban = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
        return iban, "IBAN_CODE", ""

    def address(self) -> tuple[str, str, str]:
        if self.rng.random() < 0.4:
            text = self.fake.street_address()
        else:
            text = self.fake.address()
            if self.rng.random() < 0.5:
                text = text.replace("\n", ", ")
        return text.strip(), "ADDRESS", self.group


# -- look-alikes ----------------------------------------------------------------------------------
def _not_luhn(rng: random.Random) -> str:
    while True:
        digits = rng.choice("3456") + "".join(rng.choice("0123456789") for _ in range(15))
        if not pii.luhn(digits):
            return " ".join(digits[i:i + 4] for i in range(0, 16, 4)) if rng.random() < 0.5 else digits


def _bad_iban(v: _Values) -> str:
    iban = v.fake.iban()
    pos = v.rng.randrange(4, len(iban))
    wrong = str((int(iban[pos]) + 1) % 10) if iban[pos].isdigit() else "7"
    iban = iban[:pos] + wrong + iban[pos + 1:]  # one changed character: mod-97 fails
    return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4)) if v.rng.random() < 0.5 else iban


def _filler(v: _Values) -> dict[str, str]:
    """Non-personal values a template may use (and the negative texts are made of)."""
    r, f = v.rng, v.fake
    return {
        "order": f"{r.choice(['#', 'A-', 'SO-', ''])}{r.randrange(10**7, 10**8)}",
        "invoice": f"INV-{r.randrange(2019, 2027)}-{r.randrange(1, 10**6):06d}",
        "ticket": str(r.randrange(10**4, 10**6)),
        "date": r.choice([f.date(pattern="%Y-%m-%d"), f.date(pattern="%d/%m/%Y"), f.date(pattern="%B %d, %Y")]),
        "time": f"{r.randrange(7, 19)}:{r.choice(['00', '15', '30', '45'])}",
        "version": f"v{r.randrange(1, 9)}.{r.randrange(0, 30)}.{r.randrange(0, 20)}",
        "price": r.choice([f"${r.randrange(5, 3000):,}.{r.randrange(100):02d}",
                           f"€{r.randrange(5, 900)},{r.randrange(100):02d}"]),
        "sku": f"{r.choice(['SKU', 'PRD', 'ITEM'])}-{r.randrange(1000, 9999)}-{r.choice(['XL', 'M', 'BLK', '01'])}",
        "tracking": f"1Z{r.randrange(10**3, 10**4)}AA{r.randrange(10**9, 10**10)}",
        "qty": str(r.randrange(2, 40)),
        "room": str(r.randrange(100, 999)),
        "amount": f"{r.randrange(10, 5000)}.{r.randrange(100):02d}",
        "ip": f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(256)}",
        "month": r.choice(["January", "March", "May", "June", "August", "October", "December"]),
        "company": r.choice(["Acme Analytics", "Northwind Traders", "Globex", "Initech", "Blue Harbor Labs"]),
        "product": r.choice(["Premium Plan", "Pro Max", "Quarterly Business Review", "Cloud Backup", "Team Edition"]),
    }


# -- templates: {slot} is filled from the values; slots named after _Values methods are labelled ----
_PERSONAL = {"name": "name", "first": "name:first", "last": "last", "email": "email", "phone": "phone",
             "card": "card", "iban": "iban", "address": "address", "name2": "name"}

TEMPLATES: dict[str, list[str]] = {
    "chat": [
        "Hi, my name is {name} and I can't log in since the {version} update. My email is {email}.",
        "Please draft a polite reminder to {name} about invoice {invoice}, due {date}.",
        "My card {card} was charged twice for order {order}. Can you refund it? Call me on {phone}.",
        "Write a short bio for {name}, our new head of sales, joining on {date}.",
        "Translate to French: 'Dear {name}, your IBAN {iban} has been verified.'",
        "I moved to {address}. Please update my shipping address for order {order}.",
        "Can you summarise this: {name} ({email}) reported that the export fails in {version}.",
        "Rewrite more formally: hey {first}, send the {product} numbers to {email} before {time}",
        "Is {card} a valid card number? It is for {name}.",
        "Send a birthday card to {name}, {address}.",
    ],
    "email": [
        "Subject: Invoice {invoice}\n\nHi {first},\n\nplease find attached the invoice for {product} ({price}). "
        "Payment to {iban} within 14 days.\n\nBest regards,\n{name}\n{company}\nTel: {phone}\n{email}",
        "Dear {name},\n\nthank you for your order {order}. It ships on {date} to:\n{address}\n\n"
        "Kind regards,\n{name2}\nCustomer Care, {company}",
        "Hello {first},\n\nI'm out of office until {date}. For urgent matters call {phone} or write to {email}.\n\n"
        "Thanks,\n{name}",
        "From: {name} <{email}>\nTo: {company_email}\nSubject: refund\n\n"
        "Please refund {price} to my account {iban}. My card ending {card} was blocked.\n\nCheers,\n{first}",
    ],
    "ticket": [
        "Ticket #{ticket}\nCustomer: {name}\nEmail: {email}\nPhone: {phone}\n"
        "Issue: refund for order {order} ({price}) to IBAN {iban}.",
        "Ticket #{ticket} | priority high | {product}\nReported by {name} on {date}: app crashes on {version}. "
        "Callback number {phone}.",
        "Case {ticket}: customer {name} disputes a charge of {price} on card {card}. Address on file: {address}.",
    ],
    "form": [
        "Name: {name}\nAddress: {address}\nPhone: {phone}\nEmail: {email}",
        "Full name: {name}\nDate of birth: {date}\nCard number: {card}\nIBAN: {iban}",
        "Applicant: {name}\nCurrent address: {address}\nEmployer: {company}\nMobile: {phone}",
    ],
    "paragraph": [
        "Yesterday {name} moved to {address}. You can reach them on {phone} or at {email}; "
        "the rent of {price} goes to {iban}.",
        "On {date} {name} paid {price} with the card {card} for order {order}, and asked that the receipt "
        "go to {email}.",
        "According to the report, {name} and {name2} met at {time} to review the {product} rollout ({version}).",
    ],
    "names": [
        "Can you ask {first} whether the {product} deck is ready?",
        "Mr. {last} will join the call at {time}.",
        "Meeting notes: {name} presented the {month} numbers; {name2} owns the follow-up.",
        "Please add Dr. {last} to the invite for {date}.",
    ],
    "negative": [
        "Order {order} shipped on {date} with tracking number {tracking}; total {price}.",
        "Release {version} fixes the export bug reported in ticket #{ticket}; see build {order}.",
        "Invoice {invoice}: {qty} x {sku} at {price}, due {date}.",
        "The {product} for {company} renews in {month}. Reference {bad_card}.",
        "Transfer reference {bad_iban} was rejected: invalid account number.",
        "Meeting in Room {room} at {time}. Agenda: {product}, {month} Planning, North America Expansion.",
        "Server {ip} returned error 504 at {time} on {date}; retry id {order}.",
        "Please Review The Attached Quarterly Business Review Before Friday.",
        "Customer Success Team\nWeekly Update {date}\nNew Features: {product}, Cloud Backup, Single Sign-On.",
        "Card test value {bad_card} failed validation; use the sandbox instead.",
        "Part no. {sku}, batch {order}, {qty} units at {amount} each; shelf {room}.",
        "Spring {month} sale: {qty} items from {price}. Code SAVE{qty} valid until {date}.",
    ],
    # Written after the recognizers were tuned on the families above and never tuned on: bench/pii.py
    # reports them apart ("per_kind") as the less optimistic number.
    "fresh": [
        "hey can u check why {name} got billed {price} twice?? her card is {card}",
        "Summarize the complaint below in one line.\n---\nI am writing on behalf of my mother, {name}, who lives at "
        "{address}. She was never contacted at {phone}.",
        "Generate a SQL insert for a user with name '{name}', email '{email}' and iban '{iban}'.",
        "{name} <{email}> wrote:\n> can we move the sync to {time}?\nSure, see you then.",
        "Landlord: {name}. Deposit of {price} paid to {iban} on {date}. Flat: {address}.",
        "Fix the grammar: me and {first} was going to meet {name2} at the office, he's number is {phone}",
    ],
    "fresh_negative": [
        "Apple shipped iOS {version} on {date}; build {order} fixes {qty} crashes in Safari and Maps.",
        "Compare the Galaxy S24 and the Pixel 8 Pro: battery, price ({price}) and camera.",
        "Explain why 4111-1111-1111-1112 fails the Luhn check but 4111-1111-1111-1111 passes.",
        "The German Bundestag met in Berlin on {date}; the vote passed {qty} to {room}.",
        "Use the New York Times style guide for the Annual Report, section {qty}.",
        "Error E{ticket} at Main Street Station kiosk {room}: printer offline since {time}.",
    ],
}


def _fill(template: str, values: dict[str, tuple[str, str, str] | str]) -> tuple[str, list[Span]]:
    """The template with each {slot} replaced; personal values are recorded as spans."""
    import re

    text, spans, pos = [], [], 0
    for m in re.finditer(r"\{(\w+)\}", template):
        text.append(template[pos:m.start()])
        value = values[m.group(1)]
        start = sum(len(t) for t in text)
        if isinstance(value, tuple):
            spans.append(Span(start, start + len(value[0]), value[1], value[2]))
            value = value[0]
        text.append(value)
        pos = m.end()
    text.append(template[pos:])
    return "".join(text), spans


def build_labelled_set(n: int, seed: int = 0, locales: Iterable[str] | None = None) -> list[Item]:
    """n labelled texts; locales default to the gazetteer's plus the held-out ones (see HELD_OUT_SHARE)."""
    if n < 1:
        raise InvalidRequestError(f"n must be at least 1, got {n}", param="n")
    rng = random.Random(seed)
    gazetteer = pii._Gazetteer.load(GAZETTEER_LOCALES)

    def known(word: str) -> bool:
        return word.casefold() in gazetteer.first or word.casefold() in gazetteer.last

    chosen = list(locales) if locales is not None else None
    pools: dict[str, _Values] = {}
    kinds = [k for k in TEMPLATES if "negative" not in k]
    items = []
    for _ in range(n):
        if chosen is not None:
            locale = rng.choice(chosen)
        else:
            held = rng.random() < HELD_OUT_SHARE
            locale = rng.choice(HELD_OUT_LOCALES if held else GAZETTEER_LOCALES)
        if locale not in pools:
            pools[locale] = _Values(locale, random.Random(rng.randrange(2**31)), known)
        v = pools[locale]
        if rng.random() < NEGATIVE_SHARE:
            kind = "fresh_negative" if rng.random() < 0.3 else "negative"
        else:
            kind = rng.choice(kinds)
        template = rng.choice(TEMPLATES[kind])
        values: dict[str, Any] = dict(_filler(v))
        values["company_email"] = (f"billing@{values['company'].lower().replace(' ', '')}.com", "EMAIL_ADDRESS", "")
        values["bad_card"], values["bad_iban"] = _not_luhn(rng), _bad_iban(v)
        for slot, method in _PERSONAL.items():
            if "{" + slot + "}" in template:
                values[slot] = v.name(first_only=True) if method == "name:first" else getattr(v, method)()
        text, spans = _fill(template, values)
        items.append(Item(text, spans, kind, locale))
    return items


# -- scoring --------------------------------------------------------------------------------------
@dataclass
class _Tally:
    gold: int = 0
    found: int = 0
    predicted: int = 0
    correct: int = 0

    def to_dict(self) -> dict[str, Any]:
        recall = self.found / self.gold if self.gold else None
        precision = self.correct / self.predicted if self.predicted else None
        f1 = (2 * recall * precision / (recall + precision)) if recall and precision else None
        return {"recall": _r(recall), "precision": _r(precision), "f1": _r(f1), "gold": self.gold,
                "found": self.found, "predicted": self.predicted, "correct": self.correct}


@dataclass
class _Report:
    per_entity: dict[str, _Tally] = field(default_factory=lambda: {e: _Tally() for e in ENTITIES})
    per_kind: dict[str, _Tally] = field(default_factory=dict)
    groups: dict[str, list[int]] = field(default_factory=dict)  # "PERSON/unseen" -> [found, gold]
    covered: list[int] = field(default_factory=lambda: [0, 0])  # gold characters under any finding, all
    negative_texts: list[int] = field(default_factory=lambda: [0, 0])  # with any finding, all
    missed: list[dict[str, Any]] = field(default_factory=list)
    false: list[dict[str, Any]] = field(default_factory=list)


def _overlaps(a: Any, b: Any) -> bool:
    return a.start < b.end and b.start < a.end


def score(scanner: Any, items: list[Item], *, examples: int = 25) -> dict[str, Any]:
    """Recall, precision and F1 per entity and overall (span overlap, see the module docstring)."""
    rep = _Report()
    started = time.perf_counter()
    for item in items:
        found = [f for f in scanner.find(item.text) if f.entity in rep.per_entity]
        _tally(rep, item, found, examples)
    seconds = time.perf_counter() - started
    total = _Tally()
    for t in rep.per_entity.values():
        for k in ("gold", "found", "predicted", "correct"):
            setattr(total, k, getattr(total, k) + getattr(t, k))
    return {
        "texts": len(items),
        "per_entity": {e: t.to_dict() for e, t in rep.per_entity.items()},
        "overall": total.to_dict(),
        "per_kind": {k: t.to_dict() for k, t in sorted(rep.per_kind.items())},
        "groups": {k: {"recall": _r(f / g if g else None), "found": f, "gold": g}
                   for k, (f, g) in sorted(rep.groups.items())},
        "characters_covered": _r(rep.covered[0] / rep.covered[1] if rep.covered[1] else None),
        "negative_texts_flagged": {"flagged": rep.negative_texts[0], "texts": rep.negative_texts[1]},
        "ms_per_text": round(1000 * seconds / max(1, len(items)), 2),
        "missed_examples": rep.missed,
        "false_examples": rep.false,
    }


def _tally(rep: _Report, item: Item, found: list[Any], examples: int) -> None:
    kind = rep.per_kind.setdefault(item.kind, _Tally())
    if "negative" in item.kind:
        rep.negative_texts[0] += bool(found)
        rep.negative_texts[1] += 1
    for gold in item.spans:
        tally = rep.per_entity[gold.entity]
        tally.gold += 1
        hit = any(f.entity == gold.entity and _overlaps(f, gold) for f in found)
        tally.found += hit
        kind.gold += 1
        kind.found += hit
        if gold.group:
            for group in {gold.group, "held_out" if gold.group == "unseen" else gold.group}:
                g = rep.groups.setdefault(f"{gold.entity}/{group}", [0, 0])
                g[0] += hit
                g[1] += 1
        covered = set()
        for f in found:
            covered.update(range(max(f.start, gold.start), min(f.end, gold.end)))
        rep.covered[0] += len(covered)
        rep.covered[1] += gold.end - gold.start
        if not hit and len(rep.missed) < examples:
            rep.missed.append({"entity": gold.entity, "text": item.text[gold.start:gold.end], "locale": item.locale,
                               "context": item.text[max(0, gold.start - 30):gold.end + 30],
                               "got": [(f.entity, f.text) for f in found if _overlaps(f, gold)]})
    for f in found:
        tally = rep.per_entity[f.entity]
        tally.predicted += 1
        ok = any(g.entity == f.entity and _overlaps(f, g) for g in item.spans)
        tally.correct += ok
        kind.predicted += 1
        kind.correct += ok
        if not ok and len(rep.false) < examples:
            rep.false.append({"entity": f.entity, "text": f.text, "kind": item.kind,
                              "context": item.text[max(0, f.start - 30):f.end + 30]})


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def run_pii_eval(n: int = 500, seed: int = 0, threshold: float = pii.DEFAULT_THRESHOLD,
                 entities: Iterable[str] | None = None) -> dict[str, Any]:
    """Build the labelled set, scan it with a PiiGuard and score it: what `omniforge eval pii` prints."""
    started = time.perf_counter()
    items = build_labelled_set(n, seed)
    set_seconds = time.perf_counter() - started
    guard = pii.PiiGuard(entities=entities, threshold=threshold)
    started = time.perf_counter()
    pii.engine()
    first_use = time.perf_counter() - started
    result = score(guard, items)
    return {"n": n, "seed": seed, "threshold": threshold, "entities": list(guard.entities),
            "gazetteer_locales": list(GAZETTEER_LOCALES), "held_out_locales": list(HELD_OUT_LOCALES),
            "matching": "overlap of at least one character with a span of the same entity",
            "engine_build_seconds": round(pii.build_seconds(), 2),
            "engine_import_seconds": round(pii.engine().import_seconds, 2),
            "engine_first_use_seconds": round(first_use, 2),
            "set_build_seconds": round(set_seconds, 2), **result}


def _row(name: str, t: dict[str, Any]) -> tuple[str, ...]:
    return (name, *(f"{t[k]:.3f}" if t.get(k) is not None else "-" for k in ("recall", "precision", "f1")),
            str(t["gold"]), str(t.get("predicted", "")))


def table(result: dict[str, Any]) -> str:
    """run_pii_eval's result as a text table: one row per entity, then per name/address group and text kind."""
    rows = [("entity", "recall", "precision", "F1", "gold", "predicted")]
    rows += [_row(name, t) for name, t in [*result["per_entity"].items(), ("overall", result["overall"])]]
    rows.append(("", "", "", "", "", ""))
    rows += [_row(group, g) for group, g in result["groups"].items()]
    rows += [_row(f"kind {kind}", t) for kind, t in result["per_kind"].items()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
