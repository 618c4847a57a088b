"""A first EU AI Act (Regulation (EU) 2024/1689) risk tier for a use case, from its words and tasks.

This is an aid to find the provisions worth reading, not legal advice and not a conformity
assessment: the rules are keyword and phrase matches, so they can miss a use case described in
other words and they do not understand negation ("not for hiring" still matches "hiring"). Every
finding quotes the phrase that triggered it and names the article or Annex point, so a person can
check it. Tiers, highest first:

    unacceptable  Art. 5 prohibited practices (social scoring, manipulation, exploiting
                  vulnerabilities, untargeted facial-image scraping, emotion recognition at work
                  or school, real-time remote biometric identification in public for law enforcement ...)
    high          Annex III areas (Art. 6(2)) and safety components of regulated products (Art. 6(1))
    limited       Art. 50 transparency: systems that talk with people, synthetic content, deepfakes
    minimal       everything else (AI literacy, Art. 4, applies to every tier)

Emotion recognition outside work and school is listed in Annex III point 1(c), so it is "high"
here, with the Art. 50(3) duty to inform the people exposed to it. Personal and special-category
data add GDPR notes; they do not change the tier.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import InvalidRequestError

TIERS = ("minimal", "limited", "high", "unacceptable")  # ascending
SENSITIVITIES = ("public", "internal", "personal", "special-category")  # ascending
DISCLAIMER = ("An aid from keyword rules, not legal advice: check each finding against the Regulation's text "
              "and the use case's intended purpose, and ask counsel before relying on it.")


def _rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", re.IGNORECASE)


@dataclass(frozen=True)
class Rule:
    tier: str
    ref: str  # the article or Annex point, e.g. "Art. 5(1)(c)"
    what: str  # what the provision covers, in a few words
    pattern: re.Pattern[str]
    contexts: tuple[re.Pattern[str], ...] = ()  # each must also occur somewhere in the text
    obligation: tuple[str, str] | None = None  # (what to do, its article) this finding adds


@dataclass
class Finding:
    tier: str
    ref: str
    what: str
    phrases: list[str]  # the quoted words that matched (the main phrase, then any context)

    def reason(self) -> str:
        quoted = " + ".join(f'"{p}"' for p in self.phrases)
        return f"{quoted}: {self.ref}, {self.what} ({self.tier})"


@dataclass
class RiskAssessment:
    tier: str
    reasons: list[str]
    obligations: list[str]
    articles: list[str]
    data_sensitivity: str = "internal"
    gdpr: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    disclaimer: str = DISCLAIMER

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- shared vocabulary -------------------------------------------------------------------------
_EMOTION = _rx(r"emotion (?:recognition|detection|analysis|tracking|ai)",
               r"(?:detect|recogni[sz]|infer|read|track|monitor|analy[sz])\w* (?:\w+ ){0,2}"
               r"(?:emotions?|moods?|feelings)",
               r"facial expression analysis", r"affect recognition")
_WORK_SCHOOL = _rx(r"workplaces?", r"at work", r"employees?", r"workers?", r"job interviews?", r"schools?",
                   r"classrooms?", r"students?", r"pupils?", r"universit(?:y|ies)", r"lectures?", r"teachers?")
_BIOMETRIC = _rx(r"biometric\w*", r"faces?", r"facial", r"fingerprints?", r"voice ?prints?", r"gait", r"iris")
_PUBLIC = _rx(r"public(?:ly accessible)?(?: spaces?| places?| areas?)?", r"streets?", r"crowds?", r"stations?")
_LAW = _rx(r"police", r"policing", r"law enforcement")
_PROFILING = _rx(r"profil\w*", r"personality", r"(?:personal )?traits")
_PREDICT_CRIME = _rx(r"predict\w* (?:\w+ ){0,3}(?:commit\w* (?:a )?crimes?|criminal (?:behaviou?r|offen[cs]es?)|"
                     r"re-?offend\w*)",
                     r"crime prediction", r"predictive policing", r"risk of (?:re-?)?offending")
_SENSITIVE_TRAIT = _rx(r"(?:infer|deduc|categori[sz]|classif|predict|determin)\w* (?:\w+ ){0,4}(?:race|racial \w+|"
                       r"ethnic\w*|religio\w*|political (?:opinions?|views|leanings?)|trade[- ]union \w+|"
                       r"sexual orientation|sex life)")

_O_501 = (("Tell people they are interacting with an AI system, at the latest at the first interaction, "
          "unless it is obvious"), "Art. 50(1)")
_O_502 = (("Mark generated audio, images, video and text in a machine-readable way so it is detectable as "
          "AI-generated (e.g. C2PA manifest or metadata, watermark)"), "Art. 50(2)")
_O_503 = (("Inform the people exposed to emotion recognition or biometric categorisation, and process their "
          "personal data under the GDPR"), "Art. 50(3)")
_O_504 = (("Disclose deepfakes (image, audio or video resembling real people, places or events) as artificially "
          "generated or manipulated"), "Art. 50(4)")

RULES: tuple[Rule, ...] = (
    # -- Art. 5: prohibited practices ------------------------------------------------------------
    Rule("unacceptable", "Art. 5(1)(a)", "subliminal, manipulative or deceptive techniques that materially "
         "distort behaviour and cause significant harm",
         _rx(r"subliminal\w*", r"manipulative (?:techniques?|design|tactics|nudges?)", r"deceptive techniques?",
             r"manipulat\w* (?:people|users|customers|consumers|voters|children|behaviou?r)", r"dark patterns?")),
    Rule("unacceptable", "Art. 5(1)(b)", "exploiting vulnerabilities of age, disability or social or economic "
         "situation to distort behaviour",
         _rx(r"exploit\w* (?:\w+ ){0,3}vulnerabilit\w*", r"vulnerabilit\w* (?:\w+ ){0,2}exploit\w*",
             r"(?:exploit|prey on)\w* (?:\w+ ){0,2}(?:children|minors|the elderly|elderly people|people in debt|"
             r"gamblers|addicts|disabled people|people with disabilities)")),
    Rule("unacceptable", "Art. 5(1)(c)", "social scoring: rating people by social behaviour or personal traits "
         "leading to unjustified or disproportionate treatment",
         _rx(r"social[- ]scor\w*", r"citizen scor\w*", r"trustworthiness scor\w*",
             r"(?:scor|rat|rank)\w* (?:citizens|people|individuals|persons|residents) (?:\w+ ){0,4}"
             r"(?:social )?behaviou?r")),
    Rule("unacceptable", "Art. 5(1)(d)", "predicting a person's risk of committing a crime based solely on "
         "profiling or personality traits", _PREDICT_CRIME, (_PROFILING,)),
    Rule("unacceptable", "Art. 5(1)(e)", "untargeted scraping of facial images from the internet or CCTV to "
         "build facial recognition databases",
         _rx(r"scrap\w* (?:\w+ ){0,4}(?:facial images|face images|faces|images of faces|photos of (?:people|faces)|"
             r"selfies|cctv footage)",
             r"(?:facial recognition|face recognition|face) databases? (?:\w+ ){0,4}(?:scraped|from (?:the )?"
             r"(?:internet|web|social media|cctv))")),
    Rule("unacceptable", "Art. 5(1)(f)", "emotion recognition in the workplace or in education (except for "
         "medical or safety reasons)", _EMOTION, (_WORK_SCHOOL,)),
    Rule("unacceptable", "Art. 5(1)(g)", "biometric categorisation inferring race, political opinions, "
         "trade-union membership, religion, sex life or sexual orientation", _SENSITIVE_TRAIT, (_BIOMETRIC,)),
    Rule("unacceptable", "Art. 5(1)(h)", "real-time remote biometric identification in publicly accessible "
         "spaces for law enforcement (narrow exceptions with prior authorisation, Art. 5(2)-(7))",
         _rx(r"real[- ]time (?:remote )?(?:biometric identification|facial recognition|face recognition|"
             r"face matching)"), (_PUBLIC, _LAW)),
    # -- Annex III (Art. 6(2)) and Art. 6(1): high risk ---------------------------------------------
    Rule("high", "Annex III point 1(a)", "remote biometric identification (1:1 verification such as unlocking "
         "a phone is excluded)",
         _rx(r"(?:remote )?biometric identification", r"facial recognition", r"face recognition",
             r"identif\w* (?:people|persons|individuals|faces|suspects) (?:\w+ ){0,3}(?:from|by|in|on) (?:their )?"
             r"(?:faces|cctv|cameras?|video|voices?|photos)", r"speaker identification", r"voice identification")),
    Rule("high", "Annex III point 1(b)", "biometric categorisation by sensitive or protected attributes",
         _rx(r"biometric categori[sz]ation"), obligation=_O_503),
    Rule("high", "Annex III point 1(c)", "emotion recognition", _EMOTION, obligation=_O_503),
    Rule("high", "Annex III point 2", "safety components in critical infrastructure (digital infrastructure, "
         "road traffic, water, gas, heating, electricity)",
         _rx(r"critical (?:digital )?infrastructure", r"(?:power|electricity|energy|gas|water|heating) "
             r"(?:grids?|supply|networks?|distribution)", r"road traffic", r"traffic (?:control|management|lights)")),
    Rule("high", "Annex III point 3", "education: admission, evaluating learning outcomes, steering learning, "
         "monitoring students during tests",
         _rx(r"(?:exam|test|essay|assignment|homework)s? (?:scor|grad|mark)\w*",
             r"(?:scor|grad|mark)\w* (?:\w+ ){0,2}(?:exams?|tests|essays|assignments|homework|students?|pupils?)",
             r"(?:school|university|college|student) admissions?", r"admissions? (?:decisions|tests?|to (?:a |the )?"
             r"(?:school|university|college|course|programme))", r"learning outcomes", r"proctor\w*",
             r"cheating detection", r"detect\w* cheating")),
    Rule("high", "Annex III point 4", "employment: recruitment and selection (CV screening, ranking "
         "candidates, targeted job ads), promotion, termination, task allocation, monitoring workers",
         _rx(r"recruit\w*", r"hiring", r"(?:cv|résumé|resume|job application|applicant|candidate)s? "
             r"(?:screening|filtering|ranking|scoring|evaluation|selection|shortlisting)",
             r"(?:screen|filter|rank|scor|evaluat|shortlist|select|sort)\w* (?:\w+ ){0,2}(?:cvs|résumés|resumes|"
             r"job applications|job applicants|applicants|candidates)",
             r"targeted job ads?", r"(?:promotion|termination|dismissal|firing) decisions",
             r"(?:employee|worker|staff) (?:performance|monitoring|evaluation|surveillance|productivity)",
             r"(?:monitor|evaluat|track)\w* (?:the )?(?:performance of )?(?:employees|workers|staff)",
             r"task allocation")),
    Rule("high", "Annex III point 5", "access to essential services: public benefits, creditworthiness and "
         "credit scores (fraud detection excluded), life and health insurance risk and pricing, emergency calls "
         "and triage",
         _rx(r"credit[- ]?scor\w*", r"creditworthiness", r"(?:loan|credit|mortgage) (?:approvals?|decisions?|"
             r"applications?|eligibility|underwriting)", r"(?:life |health )?insurance (?:pricing|premiums?|"
             r"underwriting|risk assessment)", r"underwriting", r"(?:public|social|welfare|state) "
             r"(?:assistance|benefits?)", r"benefits? eligibility", r"emergency (?:calls?|dispatch|triage)",
             r"(?:patient|emergency) triage")),
    Rule("high", "Annex III point 6", "law enforcement: victim risk, polygraphs, evidence reliability, "
         "offending risk (prohibited when based solely on profiling, Art. 5(1)(d)), profiling in investigations",
         _rx(r"law enforcement", r"police", r"policing", r"crime prediction", r"polygraphs?", r"lie detect\w*",
             r"(?:reliability|evaluation) of evidence", r"evidence (?:evaluation|assessment)",
             r"criminal investigations?", r"predict\w* (?:\w+ ){0,3}(?:commit\w* (?:a )?crimes?|criminal "
             r"(?:behaviou?r|offen[cs]es?)|re-?offend\w*)", r"risk of (?:re-?)?offending")),
    Rule("high", "Annex III point 7", "migration, asylum and border control",
         _rx(r"migration", r"migrants?", r"immigration", r"asylum", r"visa (?:applications?|decisions)",
             r"border control", r"residence permits?")),
    Rule("high", "Annex III point 8", "administration of justice and democratic processes (researching and "
         "applying the law to facts; influencing elections or voting behaviour)",
         _rx(r"judicial \w+", r"courts? (?:rulings?|decisions|cases)", r"sentencing", r"legal rulings",
             r"(?:interpret|appl)\w* (?:the )?law to (?:the )?facts", r"dispute resolution", r"arbitration",
             r"elections?", r"referend\w*", r"voting behaviou?r", r"voters?", r"political campaign\w*")),
    Rule("high", "Art. 6(1) and Annex I", "a safety component of a product under EU product legislation "
         "(machinery, toys, lifts, medical devices, vehicles, aviation ...) that needs third-party conformity "
         "assessment",
         _rx(r"safety components?", r"medical devices?", r"autonomous (?:vehicles?|driving|cars?)", r"self-driving",
             r"(?:machinery|lift|elevator|toy|aviation|railway|vehicle) safety")),
    # -- Art. 50: transparency (limited) ---------------------------------------------------------
    Rule("limited", "Art. 50(1)", "an AI system that interacts directly with people",
         _rx(r"chat ?bots?", r"virtual (?:assistants?|agents?)", r"voice (?:assistants?|agents?|bots?)",
             r"conversational (?:ai|agents?|assistants?|interfaces?)",
             r"(?:talk|speak|chat|convers)\w* (?:directly )?(?:to|with) (?:our )?(?:customers|users|people|visitors|"
             r"citizens|patients|callers|students|clients)",
             r"(?:answer|handl|tak)\w* (?:customer |incoming |phone )?calls"), obligation=_O_501),
    Rule("limited", "Art. 50(2)", "synthetic audio, image, video or text content",
         _rx(r"synthetic (?:audio|images?|videos?|voices?|speech|media|content|text)",
             r"(?:ai|machine)[- ]generated (?:\w+ )?(?:content|images?|videos?|audio|text|articles|voices?)",
             r"generat\w* (?:\w+ ){0,3}(?:images?|pictures|videos?|audio|voices?|illustrations|artwork|photos)",
             r"text[- ]to[- ](?:image|video|speech)", r"voice[- ]?overs?", r"narrat(?:ed|ion)"), obligation=_O_502),
    Rule("limited", "Art. 50(4)", "deepfakes: generated or manipulated content resembling real people, places "
         "or events",
         _rx(r"deep ?fakes?", r"face[- ]?swap\w*", r"voice clon\w*", r"clon\w* (?:\w+ ){0,2}voices?",
             r"(?:fake|synthetic) (?:videos?|photos|images) of (?:real )?(?:people|persons|politicians|celebrities)"),
         obligation=_O_504),
)

# Declared tasks (router.advisor.TASKS) that bring a transparency duty by themselves.
TASK_RULES: dict[str, tuple[str, str, tuple[str, str]]] = {
    "chat": ("Art. 50(1)", "an AI system that interacts directly with people", _O_501),
    "speech": ("Art. 50(2)", "synthetic audio (generated speech)", _O_502),
    "image-generation": ("Art. 50(2)", "synthetic images", _O_502),
    "video-generation": ("Art. 50(2)", "synthetic video (and Art. 50(4) if it depicts real people or events)",
                         _O_502),
    "writing": ("Art. 50(2)", "synthetic text meant to be published", _O_502),
}

_TIER_OBLIGATIONS: dict[str, list[tuple[str, str]]] = {
    "unacceptable": [
        (("Do not place on the market, put into service or use this system: Art. 5 prohibitions apply since "
         "2 February 2025 (fines up to EUR 35 million or 7% of worldwide annual turnover)"), "Art. 99(3)"),
        (("Redesign so the prohibited practice is gone, or check whether a narrow listed exception truly applies "
         "(medical or safety reasons for emotion recognition; authorised law-enforcement objectives)"), "Art. 5"),
    ],
    "high": [
        ("Risk management system over the whole lifecycle", "Art. 9"),
        ("Data governance: relevant, representative, examined-for-bias training, validation and test data",
         "Art. 10"),
        ("Technical documentation (Annex IV) before placing on the market", "Art. 11"),
        ("Automatic logging of events (record-keeping) for traceability", "Art. 12"),
        ("Transparency and instructions for use to deployers", "Art. 13"),
        ("Human oversight: people who can understand, monitor, override and stop the system", "Art. 14"),
        ("Accuracy, robustness and cybersecurity, with declared accuracy metrics", "Art. 15"),
        ("Quality management system", "Art. 17"),
        ("Conformity assessment, EU declaration of conformity and CE marking", "Art. 43"),
        ("Registration in the EU database", "Art. 49"),
        ("Post-market monitoring and serious-incident reporting", "Art. 72"),
        (("Deployers: use per instructions, assign human oversight, keep logs at least six months, inform "
         "affected workers and people subject to decisions"), "Art. 26"),
        (("Fundamental rights impact assessment for public bodies and deployers scoring credit or pricing "
         "life/health insurance"), "Art. 27"),
        (("Check Art. 6(3): an Annex III system that only does a narrow procedural or preparatory task and does "
         "not profile people may not be high-risk; document that assessment if you rely on it"), "Art. 6(3)"),
    ],
    "minimal": [("No obligations specific to this tier; voluntary codes of conduct are encouraged", "Art. 95")],
}
_LITERACY = ("Make sure staff who operate or use the system have sufficient AI literacy", "Art. 4")

# -- data sensitivity ---------------------------------------------------------------------------
_SPECIAL = _rx(r"health\w*", r"medical", r"patients?", r"diagnos\w*", r"biometric\w*", r"fingerprints?",
               r"fac(?:e|ial) recognition", r"emotions? (?:recognition|detection)",
               r"genetic", r"ethnic\w*", r"racial", r"religio\w*", r"political (?:opinions?|views)",
               r"trade[- ]union", r"sexual orientation", r"sex life", r"disabilit\w*", r"criminal records?")
_PERSONAL = _rx(r"personal (?:data|information|details)", r"pii", r"customers?", r"clients?", r"employees?",
                r"applicants?", r"candidates?", r"cvs?", r"résumés?", r"resumes?", r"students?", r"pupils?",
                r"citizens?", r"callers?", r"users'? (?:data|messages|questions|voices?)", r"e-?mail addresses",
                r"phone numbers", r"voice recordings", r"recordings of \w+", r"names and \w+")
_INTERNAL = _rx(r"internal", r"confidential", r"proprietary", r"in-house", r"company (?:documents|docs|files|data)")
_PUBLIC_DATA = _rx(r"public (?:data|documents|information|websites?)", r"open data", r"published (?:articles|papers)")


def infer_sensitivity(text: str) -> tuple[str | None, str | None]:
    """The data sensitivity the words suggest and the phrase that says so, or (None, None)."""
    for level, pattern in (("special-category", _SPECIAL), ("personal", _PERSONAL), ("internal", _INTERNAL),
                           ("public", _PUBLIC_DATA)):
        m = pattern.search(text)
        if m:
            return level, m.group(0)
    return None, None


def gdpr_notes(sensitivity: str, tier: str = "minimal") -> list[str]:
    """What the GDPR asks when the use case handles this kind of data (no tier change)."""
    if sensitivity not in SENSITIVITIES:
        raise InvalidRequestError(f"data sensitivity must be one of {', '.join(SENSITIVITIES)}, not "
                                  f"{sensitivity!r}", param="data_sensitivity")
    if sensitivity in ("public", "internal"):
        return []
    notes = [
        ("Personal data: a lawful basis (GDPR Art. 6), information to the people concerned (Art. 13/14), "
        "purpose limitation, minimisation and a retention limit (Art. 5); self-hosting keeps the data on this "
        "machine, which avoids third-country transfers but not these duties."),
        ("Decisions with legal or similarly significant effects made solely by automated means need a human to "
        "review and a way to contest them (GDPR Art. 22)."),
        "Records of processing (Art. 30) and security of processing (Art. 32): log access, not content.",
    ]
    if sensitivity == "special-category":
        notes.insert(0, "Special-category data (health, biometric identification, ethnicity, religion, political "
                        "opinions, trade-union membership, sex life or orientation, genetics) is prohibited unless "
                        "a GDPR Art. 9(2) condition holds, e.g. explicit consent; a DPIA (Art. 35(3)(b)) is "
                        "required at large scale.")
        if tier == "high":
            notes.append("AI Act Art. 10(5) allows processing special categories for bias detection in "
                         "high-risk systems only under strict safeguards.")
    elif tier in ("high", "unacceptable"):
        notes.append("A data protection impact assessment (GDPR Art. 35) is likely required for this use.")
    return notes


# -- assessing ------------------------------------------------------------------------------------
def _parts(use_case: Any) -> tuple[str, list[str], str | None]:
    """(the words, the declared tasks, the declared sensitivity) of a str, mapping or UseCase-like object."""
    if isinstance(use_case, str):
        return use_case, [], None
    get = use_case.get if isinstance(use_case, Mapping) else (lambda k, d=None: getattr(use_case, k, d))
    text = ". ".join(str(get(k) or "") for k in ("name", "description") if get(k))
    tasks = get("tasks") or []
    if isinstance(tasks, str) or not isinstance(tasks, Iterable):
        raise InvalidRequestError("tasks must be a list of task names", param="tasks")
    return text, [str(t) for t in tasks], get("data_sensitivity")


def _match(rule: Rule, text: str) -> Finding | None:
    m = rule.pattern.search(text)
    if not m:
        return None
    phrases = [m.group(0)]
    for ctx in rule.contexts:
        c = ctx.search(text)
        if not c:
            return None
        phrases.append(c.group(0))
    return Finding(rule.tier, rule.ref, rule.what, phrases)


def assess(use_case: Any) -> RiskAssessment:
    """The EU AI Act tier of `use_case` (plain words, a mapping, or a router.advisor.UseCase) with the
    reasons, the obligations that follow and the articles to read."""
    text, tasks, sensitivity = _parts(use_case)
    if not text.strip() and not tasks:
        raise InvalidRequestError("describe the use case in a few words (or declare its tasks)", param="use_case")
    findings: list[Finding] = []
    extra: list[tuple[str, str]] = []
    for rule in RULES:
        found = _match(rule, text)
        if found:
            findings.append(found)
            if rule.obligation:
                extra.append(rule.obligation)
    for task in tasks:
        if task in TASK_RULES:
            ref, what, obligation = TASK_RULES[task]
            findings.append(Finding("limited", ref, what, [f"task {task}"]))
            extra.append(obligation)
    tier = max((f.tier for f in findings), key=TIERS.index, default="minimal")
    if tier == "unacceptable":  # the other findings do not matter while the practice is prohibited
        extra = []
    pairs = [_LITERACY, *_TIER_OBLIGATIONS.get(tier, []), *extra]
    seen: set[str] = set()
    obligations = []
    for text_, ref in pairs:
        if text_ not in seen:
            seen.add(text_)
            obligations.append(f"{text_} ({ref})")
    articles = list(dict.fromkeys([*(f.ref for f in findings), *(ref for _, ref in pairs)]))
    if sensitivity is None:  # Art. 5 and Annex III practices concern people: personal data unless said otherwise
        sensitivity = infer_sensitivity(text)[0] or ("personal" if tier in ("high", "unacceptable") else "internal")
    notes = _notes(tier, tasks)
    return RiskAssessment(tier, [f.reason() for f in findings] or [("no prohibited, high-risk or transparency "
                                                                   "trigger found in the words or tasks")],
                          obligations, articles, sensitivity, gdpr_notes(sensitivity, tier), notes, findings)


def _notes(tier: str, tasks: list[str]) -> list[str]:
    notes = []
    if tier in ("minimal", "limited") and {"summarization", "translation"} & set(tasks):
        notes.append("Summaries and translations of your own documents are assistive and keep the input's "
                     "meaning, so Art. 50(2) marking generally does not apply to them; publishing AI-written "
                     "text to inform the public on matters of public interest does need disclosure (Art. 50(4)).")
    if tier == "minimal":
        notes.append("The tier follows the intended purpose: a new purpose (e.g. screening people) needs a new "
                     "assessment.")
    return notes


__all__ = ["DISCLAIMER", "RULES", "SENSITIVITIES", "TASK_RULES", "TIERS", "Finding", "RiskAssessment", "Rule",
           "assess", "gdpr_notes", "infer_sensitivity"]
