"""Every setting, declared once: defaults < config file (TOML) < OMNIFORGE_* environment < flags.

All state (user catalog, model cache, logs, databases) lives under `home`, so two servers with
two homes never share anything.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from .errors import InvalidRequestError

ENV_PREFIX = "OMNIFORGE_"


def _default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@dataclass
class Settings:
    # -- where state lives
    home: Path = field(default_factory=lambda: Path("~/.omniforge").expanduser())  # all state
    config_file: Path | None = None  # TOML file read between defaults and environment
    # -- server
    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = 8000
    api_keys: list[str] = field(default_factory=list)  # bearer keys; empty: no auth (unless `omniforge keys` made some)
    allow_remote_urls: bool = False  # fetch http(s) image/audio URLs in requests (public addresses only)
    audit_retention_days: float | None = None  # audit records older than this are pruned behind an anchor
    audit_redact: list[str] = field(default_factory=list)  # request params stored as "[redacted]", e.g. user
    accept_licenses: list[str] = field(default_factory=list)  # model terms accepted, e.g. gemma (see `omniforge models licenses`)
    # -- PII (governance/pii.py): names, emails, phones, cards, IBANs, addresses
    pii_redact_audit: bool = True  # redact personal data in what the audit log stores (parameters, error text)
    pii_redact_model: bool = False  # also redact prompts before the model (per key: keys create --pii; per request: x-omniforge-pii)
    pii_entities: list[str] = field(default_factory=list)  # empty: all (PERSON, EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, IBAN_CODE, ADDRESS)
    pii_threshold: float = 0.4  # findings scored below this are ignored (0.5: fewer false positives, fewer names)
    # -- content policy (governance/policy.py): screens every input and output text; all off by default
    policy_categories: list[str] = field(default_factory=list)  # built-in: weapons, malware, self-harm, violent-threats, sexual-minors
    policy_blocklist: list[str] = field(default_factory=list)  # your own words and phrases, blocked in inputs and outputs
    policy_file: Path | None = None  # YAML of named rules (terms, patterns, action block|flag, stages)
    policy_ocr: bool = True  # with rules on: read the text in input and generated images too
    # -- provenance (governance/provenance.py): C2PA manifests and image watermarks on generated files
    provenance: bool = True  # label every generated image, audio file and video
    text_watermark: bool = False  # green-list watermark on all generated text (models that can; governance/textmark.py)
    textmark_key: str | None = None  # text watermark key; default: 32 random bytes in <home>/provenance/textmark.key
    provenance_cert: Path | None = None  # PEM chain (signing cert first); default: a local CA under <home>/provenance
    provenance_key: Path | None = None  # its PEM private key
    provenance_trust_anchors: Path | None = None  # extra PEM roots that `omniforge verify` treats as trusted
    max_upload_mb: float = 25.0  # largest request body (audio uploads, JSON)
    log_level: str = "info"
    # -- runtime
    threads: int = field(default_factory=_default_threads)  # CPU threads per model engine
    memory_budget_mb: int = 8192  # loaded models above this: unload least recently used idle ones
    max_queue: int = 16  # requests waiting per model before overload answers 503
    queue_timeout_s: float = 120.0  # longest wait for a model slot before 503
    preload: list[str] = field(default_factory=list)  # model ids loaded at server start
    # -- defaults per modality (OpenAI model names resolve to these)
    default_chat_model: str = "gemma-3-270m"
    default_speech_model: str = "piper-en-us-joe"
    default_transcription_model: str = "whisper-tiny.en"
    default_translation_model: str = "whisper-base"  # needs a multilingual model
    default_embedding_model: str = "all-minilm-l6-v2"
    default_image_model: str = "house-image"
    default_video_model: str = "storyboard"
    default_vision_model: str = "image-facts"  # analyses images for chat models that cannot see
    # -- text generation defaults
    default_max_tokens: int = 512  # when a request gives none
    # -- cost (router/cost.py): what compute on this machine costs
    machine_usd_per_hour: float = 0.05  # amortized hardware or the VM's hourly price
    machine_watts: float = 65.0  # power draw under load
    usd_per_kwh: float = 0.30  # electricity price
    # -- budgets (router/ledger.py): "SCOPE:LIMIT/PERIOD" entries, e.g. "key:sk-a=1000 requests/day",
    #    "project:web=0.50 usd/month", "*=3600 compute_seconds/day" (every key); see the README
    budgets: list[str] = field(default_factory=list)

    # derived paths -------------------------------------------------------------------------
    @property
    def catalog_path(self) -> Path:
        return self.home / "catalog.yaml"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    def ensure_home(self) -> None:
        for d in (self.home, self.cache_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_HINTS = get_type_hints(Settings)
FIELD_NAMES = tuple(f.name for f in fields(Settings))


def _coerce(name: str, value: Any, source: str) -> Any:
    """Turn a raw value from a file, the environment or a flag into the field's type."""
    hint = _HINTS[name]
    args = [a for a in get_args(hint) if a is not type(None)]
    base = args[0] if get_origin(hint) is not list and args else hint
    try:
        if get_origin(hint) is list or hint == list[str]:
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            return [str(v) for v in value]
        if value is None or value == "":
            if type(None) in get_args(hint):
                return None
        if base is Path or hint == Path | None:
            return Path(str(value)).expanduser()
        if base is bool:
            if isinstance(value, str):
                return value.strip().lower() in {"1", "true", "yes", "on"}
            return bool(value)
        if base in (int, float, str):
            return base(value)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"setting {name!r} from {source}: {value!r} is not a valid {base.__name__}") from exc
    return value


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from defaults, then the config file, then OMNIFORGE_* env, then overrides.

    Overrides whose value is None are ignored, so CLI flags can be passed straight through.
    """
    values: dict[str, Any] = {}
    path = config_file or os.environ.get(ENV_PREFIX + "CONFIG_FILE")
    if path:
        path = Path(path).expanduser()
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError as exc:
            raise InvalidRequestError(f"config file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise InvalidRequestError(f"config file {path} is not valid TOML: {exc}") from exc
        data = data.get("omniforge", data)
        unknown = sorted(set(data) - set(FIELD_NAMES))
        if unknown:
            raise InvalidRequestError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
        for k, v in data.items():
            values[k] = _coerce(k, v, f"config file {path}")
        values["config_file"] = path
    for name in FIELD_NAMES:
        raw = os.environ.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = _coerce(name, raw, f"environment {ENV_PREFIX + name.upper()}")
    for k, v in overrides.items():
        if v is None:
            continue
        if k not in FIELD_NAMES:
            raise InvalidRequestError(f"unknown setting {k!r}")
        values[k] = _coerce(k, v, "flag")
    return Settings(**values)
