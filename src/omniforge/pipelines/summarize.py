"""Map-reduce summaries through Service.chat: text of any length, in chunks that fit the chat model's context."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError
from ..types import GenerationParams, Message

if TYPE_CHECKING:
    from ..service import Service

LENGTHS = {  # length option -> (what to ask for, max tokens of the answer)
    "short": ("in one or two sentences", 96),
    "medium": ("in one paragraph of about five sentences", 256),
    "long": ("in several paragraphs", 512),
}
DEFAULT_CHUNK_TOKENS = 1500  # a small model summarizes a short passage better than a long one
PROMPT_RESERVE = 160  # tokens for the instructions around a chunk
MAP_TOKENS = 160  # each partial summary
MAX_ROUNDS = 6


def summarize(service: Service, text: str, *, length: str = "medium", style: str | None = None,
              model: str | None = None, chunk_tokens: int | None = None,
              progress: Callable[[float, str], None] | None = None,
              check: Callable[[], None] | None = None) -> dict[str, Any]:
    """{"text": summary, "chunks": pieces read in the first round, "rounds": map rounds}."""
    if length not in LENGTHS:
        raise InvalidRequestError(f"length must be one of {', '.join(LENGTHS)}, not {length!r}", param="length")
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequestError("there is no text to summarize", param="text")
    spec = service.pick(model, "text")
    count, n_ctx = _counter(service, spec)
    budget = max(64, n_ctx - PROMPT_RESERVE - LENGTHS["long"][1])
    if chunk_tokens is not None:
        if not isinstance(chunk_tokens, int) or chunk_tokens < 32:
            raise InvalidRequestError("chunk_tokens must be an integer of at least 32", param="chunk_tokens")
        budget = min(budget, chunk_tokens)
    else:
        budget = min(budget, DEFAULT_CHUNK_TOKENS)
    report = progress or (lambda fraction, message: None)
    first_chunks, rounds = 0, 0
    while count(text) > budget:  # map: each chunk to a short summary, until the whole fits
        rounds += 1
        if rounds > MAX_ROUNDS:
            break
        chunks = split_text(text, budget, count)
        first_chunks = first_chunks or len(chunks)
        notes = []
        for i, chunk in enumerate(chunks):
            if check:
                check()
            report(0.9 * i / len(chunks), f"round {rounds}: part {i + 1} of {len(chunks)}")
            notes.append(_ask(service, spec.id, _map_prompt(chunk), MAP_TOKENS))
        text = "\n\n".join(n for n in notes if n) or text[: budget * 3]
    if check:
        check()
    report(0.9, "final summary")
    how, max_tokens = LENGTHS[length]
    summary = _ask(service, spec.id, _reduce_prompt(text, how, style, partial=rounds > 0), max_tokens)
    return {"text": summary, "chunks": first_chunks or 1, "rounds": rounds}


def _counter(service: Service, spec: Any) -> tuple[Callable[[str], int], int]:
    """A token counter and the context length of the chat model (about 4 characters a token if it cannot say)."""
    with service.runtime.lease(spec) as instance:
        n_ctx = int(getattr(instance, "context_length", 2048) or 2048)
        tokenize = getattr(instance, "tokenize", None)
    if tokenize is None:
        return (lambda s: len(s) // 4 + 1), n_ctx
    return (lambda s: len(tokenize(s))), n_ctx


def split_text(text: str, budget: int, count: Callable[[str], int]) -> list[str]:
    """Pieces of at most `budget` tokens, cut at paragraphs, then sentences, then words."""
    pieces: list[str] = []
    for unit in _units(text, budget, count):
        if pieces and count(pieces[-1] + "\n\n" + unit) <= budget:
            pieces[-1] += "\n\n" + unit
        else:
            pieces.append(unit)
    return pieces


def _units(text: str, budget: int, count: Callable[[str], int]) -> list[str]:
    out: list[str] = []
    for para in (p.strip() for p in re.split(r"\n\s*\n", text)):
        if not para:
            continue
        if count(para) <= budget:
            out.append(para)
            continue
        for sentence in re.split(r"(?<=[.!?])\s+", para):
            if count(sentence) <= budget:
                out.append(sentence)
                continue
            words, line = sentence.split(), ""
            for word in words:
                if line and count(line + " " + word) > budget:
                    out.append(line)
                    line = word
                else:
                    line = f"{line} {word}".strip()
            if line:
                out.append(line)
    return out


def _map_prompt(chunk: str) -> str:
    return f"Summarize the main points of this part of a document in two or three sentences.\n\n{chunk}"


def _reduce_prompt(text: str, how: str, style: str | None, partial: bool) -> str:
    what = "these notes on the parts of a document" if partial else "this document"
    styled = f" Style: {style}." if style else ""
    return f"Write a summary of {what} {how}.{styled}\n\n{text}"


def _ask(service: Service, model: str, prompt: str, max_tokens: int) -> str:
    params = GenerationParams(temperature=0.0, max_tokens=max_tokens)
    return service.chat([Message("user", prompt)], model, params)[0].text.strip()
