"""The statistical text watermark: a green-list logit bias while generating, and its z-score detector.

Kirchenbauer et al. 2023, "A Watermark for Large Language Models". Before each token is sampled,
a secret key and the previous token id pick a pseudo-random "green" fraction `gamma` of the
vocabulary, and `delta` is added to the green logits. Unmarked text lands on green tokens with
probability gamma; marked text far more often. The detector re-tokenizes a text with the same
vocabulary, counts green tokens among the T scored ones and reports
z = (green - gamma*T) / sqrt(T*gamma*(1-gamma)); z >= 4 says "watermarked". A (previous, token)
pair that repeats is scored once (the paper's variant that keeps repetitive text from piling up
green counts).

Green lists without permutations: green(prev, v) is output number v of a SplitMix64 stream seeded
with HMAC-SHA256(key, prev), green when it falls in the lowest gamma of the 64-bit range. So one
token's colour costs one hash (detection never builds a vocabulary-sized list), and a whole
vocabulary's list is one vectorised numpy pass (~2.5 ms for gemma-3's 262k tokens), kept packed
(32 KB) in an LRU cache per previous token.

The key: settings `textmark_key` (any string) when set, else 32 random bytes made on first use in
<home>/provenance/textmark.key, readable by the owner only. Who holds the key can detect, and can
also write green text on purpose: keep it with the signing key.

This module knows nothing about models: backends call `bias` on their logits, and hand `detect`
the token ids of their own tokenizer.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import tempfile
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_DELTA", "DEFAULT_GAMMA", "DEFAULT_THRESHOLD", "KEY_FILE", "Detection", "TextWatermark", "key_path", "load_key",
    "as_text", "verify_text",
]

DEFAULT_GAMMA = 0.25  # green fraction of the vocabulary
DEFAULT_DELTA = 2.0  # logit bonus of a green token
DEFAULT_THRESHOLD = 4.0  # z at or above which a text counts as watermarked
KEY_FILE = "textmark.key"  # under <home>/provenance/
KEY_BYTES = 32
_CACHE_SIZE = 512  # green lists kept (packed: n_vocab/8 bytes each, 32 KB for gemma-3)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


@dataclass(frozen=True)
class Detection:
    """What the detector found in one token sequence."""

    z: float  # (green - gamma*scored) / sqrt(scored*gamma*(1-gamma)); 0 when nothing was scored
    green: int  # scored tokens on their green list
    scored: int  # distinct (previous, token) pairs
    p_value: float  # exact one-sided binomial tail P[X >= green], X ~ Binomial(scored, gamma)
    watermarked: bool  # z >= the threshold

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class TextWatermark:
    """One key's green lists: `bias` marks logits while sampling, `detect` scores token ids.
    `bias` and `green_mask` reuse work buffers: one instance per generating model (detect is
    safe from any thread)."""

    def __init__(
        self,
        key: bytes,
        gamma: float = DEFAULT_GAMMA,
        delta: float = DEFAULT_DELTA,
        threshold: float = DEFAULT_THRESHOLD,
        cache_size: int = _CACHE_SIZE,
    ) -> None:
        if not key:
            raise ValueError("the text watermark key is empty")
        if not 0 < gamma < 1:
            raise ValueError(f"gamma must be in (0, 1), not {gamma}")
        self.key = bytes(key)
        self.gamma = float(gamma)
        self.delta = float(delta)
        self.threshold = float(threshold)
        self._cut = np.uint64(min(int(gamma * 2.0**64), 2**64 - 1))  # green below this
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._steps: np.ndarray = np.zeros(0, dtype=np.uint64)  # v * golden for v < n_vocab
        self._work: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # reused: fresh 2 MB arrays cost 3x

    @classmethod
    def from_settings(cls, settings: Any, **options: float) -> TextWatermark:
        """The installation's watermark: settings `textmark_key`, else the key file under <home>."""
        return cls(load_key(settings), **options)  # type: ignore[arg-type]

    @property
    def key_id(self) -> str:
        """A short public name of the key (the first 8 hex digits of its SHA-256), for reports."""
        return hashlib.sha256(self.key).hexdigest()[:8]

    # -- green lists ----------------------------------------------------------------------------
    def _seed(self, prev: int) -> int:
        """The stream's start for `prev`: the first 8 bytes of HMAC-SHA256(key, prev as int64 LE)."""
        digest = hmac.new(self.key, int(prev).to_bytes(8, "little", signed=True), hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "little")

    def _packed(self, prev: int, n_vocab: int) -> np.ndarray:
        key = (int(prev), n_vocab)
        packed = self._cache.get(key)
        if packed is not None:
            self._cache.move_to_end(key)
            return packed
        if self._steps.size != n_vocab or self._work is None:
            self._steps = np.arange(n_vocab, dtype=np.uint64) * _GOLDEN
            self._work = (np.empty(n_vocab, np.uint64), np.empty(n_vocab, np.uint64), np.empty(n_vocab, bool))
        state, scratch, green = self._work
        np.add(self._steps, np.uint64(self._seed(prev)), out=state)
        packed = np.packbits(self._green(state, scratch, green))
        self._cache[key] = packed
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return packed

    def _green(self, state: np.ndarray, scratch: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """SplitMix64's output function on uint64 states (wrapping arithmetic, overwrites `state`),
        compared to the cut."""
        x = state
        scratch = np.empty_like(x) if scratch is None else scratch
        for shift, mul in ((_S30, _MIX1), (_S27, _MIX2), (_S31, None)):
            np.right_shift(x, shift, out=scratch)
            x ^= scratch
            if mul is not None:
                x *= mul
        return np.less(x, self._cut, out=out)

    def green_mask(self, prev: int, n_vocab: int) -> np.ndarray:
        """Booleans over the vocabulary: which tokens are green after `prev`."""
        return np.unpackbits(self._packed(prev, n_vocab), count=n_vocab).view(bool)

    def is_green(self, prev: Sequence[int] | np.ndarray, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """Whether tokens[i] is green after prev[i], one hash per pair."""
        prev, tokens = np.asarray(prev, dtype=np.int64), np.asarray(tokens, dtype=np.int64)
        if prev.shape != tokens.shape:
            raise ValueError(f"prev and tokens differ in shape: {prev.shape} and {tokens.shape}")
        seeds = np.array([self._seed(p) for p in prev.tolist()], dtype=np.uint64)
        return self._green(seeds + tokens.astype(np.uint64) * _GOLDEN)

    # -- generation and detection ---------------------------------------------------------------
    def bias(self, logits: np.ndarray, prev: int) -> None:
        """Add delta to the green logits after `prev`, in place (float32, one per vocabulary entry)."""
        n = logits.shape[-1]
        bits = np.unpackbits(self._packed(prev, n), count=n)
        logits += bits * np.float32(self.delta)

    def detect(self, token_ids: Sequence[int]) -> Detection:
        """Score a token sequence: every token after the first, each distinct (prev, token) pair once."""
        ids = [int(t) for t in token_ids]
        pairs = list(dict.fromkeys(zip(ids, ids[1:], strict=False)))
        if not pairs:
            return Detection(z=0.0, green=0, scored=0, p_value=1.0, watermarked=False)
        prev, tokens = zip(*pairs, strict=True)
        green = int(self.is_green(prev, tokens).sum())
        return self.score(green, len(pairs))

    def score(self, green: int, scored: int) -> Detection:
        """The z-score and p-value of `green` hits among `scored` tokens."""
        if scored <= 0:
            return Detection(z=0.0, green=0, scored=0, p_value=1.0, watermarked=False)
        g = self.gamma
        z = (green - g * scored) / math.sqrt(scored * g * (1 - g))
        return Detection(z=z, green=green, scored=scored, p_value=_binomial_tail(green, scored, g),
                         watermarked=z >= self.threshold)


def _binomial_tail(k: int, n: int, p: float) -> float:
    """P[X >= k] for X ~ Binomial(n, p), summed in log space (exact for the short texts where the
    normal approximation behind z is poor)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
             for i in range(k, n + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(t - top) for t in terms))


# -- the key ------------------------------------------------------------------------------------


def key_path(settings: Any) -> Path:
    """<home>/provenance/textmark.key."""
    return Path(settings.home) / "provenance" / KEY_FILE


def load_key(settings: Any) -> bytes:
    """Settings `textmark_key` as UTF-8 bytes when set, else the key file, made on first use."""
    configured = getattr(settings, "textmark_key", None)
    if configured:
        return str(configured).encode("utf-8")
    path = key_path(settings)
    if not path.exists():
        _create_key(path)
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ValueError(
            f"the text watermark key {path} holds {len(key)} bytes, not {KEY_BYTES}: restore it from a backup, "
            "or delete it to start a new key (text marked with the old key will no longer be detected)"
        )
    return key


def _create_key(path: Path) -> None:
    """32 random bytes at `path`, mode 0600, written whole before the name appears (os.link fails
    if another process made the key first, and then theirs is kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".textmark-", dir=path.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(KEY_BYTES))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)


def as_text(data: bytes, media_type: str | None = None) -> str | None:
    """`data` as a text to check for the text watermark (a text/* type, or no type given and no
    media file recognised, and valid UTF-8), else None: it goes to the provenance checks."""
    from .provenance import sniff_media_type

    if not ((media_type or "").startswith("text/") or (media_type is None and sniff_media_type(data) is None)):
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def verify_text(text: str, spec: Any, settings: Any) -> dict[str, Any]:
    """The report `omniforge verify` and POST /v1/verify give for a text: the watermark detection
    with `spec`'s vocabulary (only llama.cpp models watermark) and the installation's key."""
    from ..errors import InvalidRequestError

    if spec.backend != "llama-cpp":
        raise InvalidRequestError(f"model {spec.id} does not watermark text; name a llama.cpp model (--model)",
                                  param="model")
    if not text.strip():
        raise InvalidRequestError("the text is empty", param="file")
    from ..backends.llama_cpp import detect_text

    mark = TextWatermark.from_settings(settings)
    found = detect_text(text, spec, settings, mark)
    return {"media_type": "text/plain", "model": spec.id, "key_id": mark.key_id, "text_watermark": found.as_dict()}
