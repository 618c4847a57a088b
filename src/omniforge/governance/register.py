"""The risk register: a use case's EU AI Act tier, each obligation that follows, and which omniforge
controls meet it in this configuration (Markdown and JSON, for `omniforge risk assess`).

The tier and obligations come from governance/risk.py (keyword rules: an aid, not legal advice).
Each obligation is matched, by its article, to the omniforge controls that meet it ("meets") or
contribute to it ("helps"), and each control's state is read from the settings and the state in
home: on, off (with how to turn it on) or always there. An obligation no control touches is the
deployer's own work (AI literacy, conformity assessment, registration ...) and the register says so
instead of pretending otherwise. The models the use case would run (the advisor's choice, or the
`models` listed in the file) come with their licenses and whether their terms are accepted.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import InvalidRequestError
from .risk import DISCLAIMER

LOG_RETENTION_DAYS = 183  # Art. 19(1) and 26(6): keep logs at least six months


@dataclass(frozen=True)
class Control:
    id: str
    name: str
    what: str  # what it does, in a sentence
    enable: str  # how to turn it on (or where it lives)
    state: Callable[[Any], tuple[bool, str]]  # settings -> (on, detail)


def _keys_on(settings: Any) -> tuple[bool, str]:
    from .keys import store_has_keys

    if settings.api_keys or store_has_keys(settings.home, active_only=False):  # as the server's key check
        return True, "API keys required on every route"
    return False, "no API keys: anyone who can reach the port can call it (loopback only by default)"


def _audit_state(settings: Any) -> tuple[bool, str]:
    days = settings.audit_retention_days
    if days is None:
        return True, "every request recorded, hash-chained; records kept without limit"
    short = " (shorter than the six months Art. 19/26(6) ask)" if days < LOG_RETENTION_DAYS else ""
    return True, f"every request recorded, hash-chained; records kept {days:g} days{short}"


def _policy_state(settings: Any) -> tuple[bool, str]:
    from .policy import ContentPolicy

    policy = ContentPolicy.from_settings(settings)
    names = [r.name for r in policy.rules]
    return (True, f"rules: {', '.join(names)}") if names else (False, "no rules configured")


def _flag(name: str, on: str, off: str) -> Callable[[Any], tuple[bool, str]]:
    def state(settings: Any) -> tuple[bool, str]:
        value = getattr(settings, name, False)
        return (True, on) if value else (False, off)
    return state


def _limits_state(settings: Any) -> tuple[bool, str]:
    if settings.budgets:
        return True, f"{len(settings.budgets)} budget(s); per-key rpm/tpm limits from `omniforge keys create`"
    return False, "no budgets set (per-key rpm/tpm limits come with keys)"


CONTROLS: tuple[Control, ...] = (
    Control("provenance", "C2PA manifests and image watermarks",
            "every generated image, audio file and video carries a signed C2PA manifest naming the model and "
            "marking it AI-generated (IPTC trainedAlgorithmicMedia); images also carry an invisible watermark; "
            "`omniforge verify` and POST /v1/verify check them",
            "setting provenance = true (the default)",
            _flag("provenance", "labels every generated image, audio file and video", "provenance = false")),
    Control("text-watermark", "text watermark",
            "generated text carries a statistical green-list watermark that `omniforge verify --text` detects "
            "with a z-score", "setting text_watermark = true",
            _flag("text_watermark", "generated text is watermarked", "text_watermark = false")),
    Control("audit-log", "tamper-evident audit log",
            "one hash-chained record per API request (key, endpoint, model and weights digest, parameters, "
            "input/output hashes, route, policy verdicts, cost); `omniforge audit verify|export`",
            "always on in the server; audit_retention_days sets retention", _audit_state),
    Control("api-keys", "API keys with scopes",
            "keys stored hashed, scoped to models, modalities and endpoints; a revoked key stops at its next "
            "request; the server refuses to bind beyond loopback without keys",
            "`omniforge keys create`", _keys_on),
    Control("limits", "rate limits and budgets",
            "per-key requests/tokens per minute and budgets in requests, tokens, compute seconds, USD or Wh",
            "settings budgets; `omniforge keys create --rpm/--tpm`", _limits_state),
    Control("content-policy", "content policy",
            "blocklists, built-in categories and policy-file rules over every input and output text, "
            "transcripts and text in images; blocks are 400 content_policy_violation, verdicts audited",
            "settings policy_categories, policy_blocklist, policy_file", _policy_state),
    Control("pii", "PII redaction",
            "names, emails, phone and card numbers, IBANs and addresses redacted before the audit log "
            "(and optionally before the model)", "settings pii_redact_audit / pii_redact_model",
            _flag("pii_redact_audit", "personal data redacted before the audit log",
                  "pii_redact_audit = false")),
    Control("remote-urls", "SSRF-safe fetching", "remote URLs in requests are off by default; when on, private, "
            "loopback and link-local addresses are refused after DNS and redirects",
            "setting allow_remote_urls", lambda s: (True, "remote URLs " + ("allowed, public addresses only"
                                                                            if s.allow_remote_urls else "refused"))),
    Control("licenses", "model licenses and cards",
            "each model's license and card in the catalog (`omniforge models licenses`); models whose terms "
            "need acceptance are not served until accepted", "setting accept_licenses",
            lambda s: (True, "accepted terms: " + (", ".join(s.accept_licenses) or "none"))),
    Control("evals", "accuracy measurements", "`omniforge eval humaneval|transcription|retrieval|pii` measure "
            "pass@1, WER/CER, recall@k/MRR and PII recall/precision on your data", "`omniforge eval ...`",
            lambda s: (True, "commands available; run them on your own data")),
    Control("register", "this risk register", "the tier, obligations and controls of the use case, kept as "
            "Markdown and JSON with the date it was made", "`omniforge risk assess USECASE.yaml`",
            lambda s: (True, "this document")),
)
_BY_ID = {c.id: c for c in CONTROLS}

# Article -> the controls that meet it ("meets") or contribute to it ("helps"); an article not here is
# the deployer's organisational duty.
OBLIGATION_CONTROLS: dict[str, tuple[tuple[str, str], ...]] = {
    "Art. 50(2)": (("provenance", "meets"), ("text-watermark", "meets")),
    "Art. 50(4)": (("provenance", "helps"),),
    "Art. 50(3)": (("pii", "helps"),),
    "Art. 9": (("register", "helps"), ("content-policy", "helps"), ("evals", "helps")),
    "Art. 10": (("pii", "helps"), ("evals", "helps")),
    "Art. 11": (("register", "helps"), ("licenses", "helps")),
    "Art. 12": (("audit-log", "meets"),),
    "Art. 13": (("licenses", "helps"), ("evals", "helps")),
    "Art. 14": (("api-keys", "helps"), ("audit-log", "helps")),
    "Art. 15": (("api-keys", "helps"), ("limits", "helps"), ("remote-urls", "helps"), ("evals", "helps")),
    "Art. 26": (("audit-log", "helps"),),
    "Art. 72": (("audit-log", "helps"),),
}
# Where a text watermark cannot apply (no text is published), provenance alone meets Art. 50(2).
NOT_YOURS = "not covered by omniforge: the deployer's own process"


@dataclass
class Row:
    obligation: str
    article: str
    controls: list[dict[str, Any]]  # {id, name, role, on, detail, enable}
    status: str  # met | partly met | available, off | deployer
    left: str  # what is still to do


@dataclass
class Register:
    use_case: dict[str, Any]
    tier: str
    reasons: list[str]
    rows: list[Row]
    models: list[dict[str, Any]]
    gdpr: list[str]
    notes: list[str]
    controls: list[dict[str, Any]]
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    disclaimer: str = DISCLAIMER

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def markdown(self) -> str:
        uc = self.use_case
        out = [f"# Risk register: {uc.get('name') or 'use case'}", "",
               f"Made {self.created} by `omniforge risk assess`. {self.disclaimer}", ""]
        if uc.get("description"):
            out += [f"> {uc['description']}", ""]
        out += [f"**EU AI Act tier: {self.tier}**", ""]
        out += [f"- {r}" for r in self.reasons] + [""]
        out += ["## Obligations and controls", "", "| # | Obligation | Article | omniforge controls | Status | Left to do |",
                "|---|---|---|---|---|---|"]
        for i, row in enumerate(self.rows, 1):
            controls = "<br>".join(f"{c['name']} ({c['role']}, {'on' if c['on'] else 'off'})" for c in row.controls)
            out.append(f"| {i} | {_cell(row.obligation)} | {row.article} | {controls or '-'} | {row.status} | "
                       f"{_cell(row.left)} |")
        out += ["", "## Models", "", "| Model | Task | License | Terms to accept | Served | Card |",
                "|---|---|---|---|---|---|"]
        for m in self.models:
            served = "yes" if m["served"] else f"no: accept '{m['terms']}'"
            out.append(f"| {m['id']} | {m.get('task') or '-'} | {_cell(m['license'])} | {m['terms'] or '-'} | "
                       f"{served} | {_cell(m['card'] or '-')} |")
        if self.gdpr:
            out += ["", "## Data protection (GDPR)", ""] + [f"- {g}" for g in self.gdpr]
        if self.notes:
            out += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        out += ["", "## Controls in this configuration", "", "| Control | State | What it does | How to turn it on |",
                "|---|---|---|---|"]
        for c in self.controls:
            out.append(f"| {c['name']} | {'on' if c['on'] else 'off'}: {_cell(c['detail'])} | {_cell(c['what'])} | "
                       f"{_cell(c['enable'])} |")
        return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


_REF = re.compile(r"^(.*) \(([^()]*(?:\([^()]*\))*[^()]*)\)$")


def _split(obligation: str) -> tuple[str, str]:
    """("what", "Art. 50(2)") from the "what (Art. 50(2))" strings of risk.assess."""
    m = _REF.match(obligation)
    return (m.group(1), m.group(2)) if m else (obligation, "")


def _article_key(ref: str) -> str:
    """The OBLIGATION_CONTROLS key for a reference: Art. 50(2) stays, Art. 9 stays, Art. 26(6) -> Art. 26."""
    if ref in OBLIGATION_CONTROLS:
        return ref
    return re.sub(r"\(.*$", "", ref)


def _row(obligation: str, states: dict[str, tuple[bool, str]], tasks: list[str]) -> Row:
    what, ref = _split(obligation)
    links = OBLIGATION_CONTROLS.get(_article_key(ref), ())
    if ref == "Art. 50(2)" and not {"writing", "chat"} & set(tasks):
        links = tuple(link for link in links if link[0] != "text-watermark")  # no text to publish
    controls = []
    for cid, role in links:
        c = _BY_ID[cid]
        on, detail = states[cid]
        controls.append({"id": cid, "name": c.name, "role": role, "on": on, "detail": detail, "enable": c.enable})
    meets = [c for c in controls if c["role"] == "meets"]
    if not controls:
        return Row(what, ref, [], "deployer", NOT_YOURS)
    off = [c for c in controls if not c["on"]]
    if meets and all(c["on"] for c in meets):
        status = "met"
        left = "keep it on" if not off else "optional: " + "; ".join(c["enable"] for c in off)
    elif any(c["on"] for c in controls):
        status = "partly met"
        left = "; ".join([*(f"turn on {c['name']}: {c['enable']}" for c in off)] or
                         ["the rest is the deployer's process (documentation, people, procedures)"])
    else:
        status = "available, off"
        left = "; ".join(f"turn on {c['name']}: {c['enable']}" for c in off)
    if ref == "Art. 26" or ref.startswith("Art. 26("):
        if "shorter than" in states["audit-log"][1]:
            status, left = "partly met", f"set audit_retention_days >= {LOG_RETENTION_DAYS}; " + left
    return Row(what, ref, controls, status, left)


REGISTER_KEYS = ("models",)  # fields of a use-case file beyond the advisor's


def build_register(service: Any, data: Mapping[str, Any]) -> Register:
    """The register for a use case (the mapping of a USECASE.yaml) under `service`'s configuration."""
    from ..router.advisor import advise

    if not isinstance(data, Mapping):
        raise InvalidRequestError("a use-case file holds a mapping: name, description, tasks, languages, volumes, "
                                  "latency, data_sensitivity, models", param="file")
    data = dict(data.get("use_case", data)) if set(data) == {"use_case"} else dict(data)
    listed = data.pop("models", None)
    if listed is not None and (not isinstance(listed, list) or not all(isinstance(m, str) for m in listed)):
        raise InvalidRequestError("models must be a list of model ids", param="models")
    advice = advise(service, data)
    risk = advice.risk
    settings = service.settings
    states = {c.id: c.state(settings) for c in CONTROLS}
    tasks = advice.use_case.tasks
    rows = [_row(o, states, tasks) for o in risk.obligations]
    chosen: list[tuple[str, str | None]] = [(m, None) for m in listed] if listed else [
        (p.model, p.task) for p in advice.plans if p.model]
    models = []
    for model_id, task in dict.fromkeys(chosen):
        spec = service.model(model_id)
        models.append({"id": spec.id, "task": task, "license": spec.license, "terms": spec.terms or None,
                       "served": spec.accepted(settings.accept_licenses), "card": spec.card or None})
    controls = [{"id": c.id, "name": c.name, "on": states[c.id][0], "detail": states[c.id][1], "what": c.what,
                 "enable": c.enable} for c in CONTROLS]
    use_case = {"name": advice.use_case.name, "description": advice.use_case.description, "tasks": tasks,
                "data_sensitivity": risk.data_sensitivity}
    return Register(use_case, risk.tier, risk.reasons, rows, models, risk.gdpr, risk.notes, controls)


def _atomic_write(path: Path, text: str) -> None:
    """Write whole or not at all: a temporary file in the same folder, then a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_register(register: Register, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """<out_dir>/<stem>.md and .json, each written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / f"{stem}.md", out_dir / f"{stem}.json"
    _atomic_write(md, register.markdown())
    _atomic_write(js, json.dumps(register.to_dict(), indent=1) + "\n")
    return md, js


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "use-case"


__all__ = ["CONTROLS", "OBLIGATION_CONTROLS", "Control", "Register", "Row", "build_register", "slug",
           "write_register"]
