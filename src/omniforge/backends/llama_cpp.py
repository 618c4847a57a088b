"""The llama.cpp text backend: GGUF models through llama-cpp-python, streamed token by token.

It owns prompt rendering (the GGUF's Jinja chat template, or a plain dialogue for base models),
sampling options, stop sequences, JSON grammars for `response_format`, fill-in-the-middle, the
green-list text watermark (governance/textmark.py) and the context-window check. It knows nothing
about HTTP, queues or which model a request wants: the runtime hands it one request at a time
(concurrency = 1).
"""

from __future__ import annotations

import codecs
import ctypes
import json
import math
import random
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import (
    InvalidRequestError,
    MissingDependencyError,
    ModelLoadError,
    OmniforgeError,
)
from ..types import GenerationParams, Message, TextDelta, Usage
from .base import TextModel, completion_budget

if TYPE_CHECKING:
    import llama_cpp

    from ..catalog.spec import ModelSpec
    from ..config import Settings
    from ..governance.textmark import Detection, TextWatermark

__all__ = ["DEFAULT_MAX_CONTEXT", "PLAIN_DIALOGUE_PREAMBLE", "LlamaCppModel", "detect_text", "load"]

DEFAULT_MAX_CONTEXT = 8192  # n_ctx when the spec gives none: the trained context, capped here
# A base model answers best when the dialogue opens with a description and two short example
# turns (measured on gemma-3-270m: without them it answers about itself instead of the question).
PLAIN_DIALOGUE_PREAMBLE = (
    "Below is a conversation between a user and an AI assistant. The assistant is helpful, honest and "
    "answers in full sentences.\n"
    "\n"
    "User: What is the largest planet in the solar system?\n"
    "Assistant: Jupiter is the largest planet in the solar system.\n"
    "User: How do I boil an egg?\n"
    "Assistant: Put the egg in boiling water for about nine minutes, then cool it in cold water.\n"
)
_PLAIN_STOPS = ["\nUser:", "\nSystem:"]
_PLAIN_ROLES = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}
# llama-cpp-python's own sampling defaults; top_k also keeps sampling cheap on a 262k vocabulary.
_TOP_K = 40
_MIN_P = 0.05
_GRAMMAR_CACHE_SIZE = 32
_PROMPT_CACHE_MODES = ("auto", "always", "never")  # spec option prompt_cache, see _reuse_cache


def load(spec: ModelSpec, settings: Settings) -> LlamaCppModel:
    """Load a GGUF file with llama.cpp; n_ctx from spec.options["n_ctx"] or the trained context
    capped at DEFAULT_MAX_CONTEXT."""
    llama_cpp, path = gguf(spec, settings)
    n_ctx = context_size(spec, path)
    if spec.options.get("prompt_cache", "auto") not in _PROMPT_CACHE_MODES:
        raise ModelLoadError(f"model {spec.id}: option prompt_cache must be one of {', '.join(_PROMPT_CACHE_MODES)}")
    return LlamaCppModel(spec, open_llama(llama_cpp, spec, path, n_ctx, settings), path, settings)


def gguf(spec: ModelSpec, settings: Settings) -> tuple[Any, Path]:
    """llama_cpp (imported) and the spec's GGUF file, or a clear error for either."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise MissingDependencyError(f"model {spec.id} needs llama.cpp: pip install llama-cpp-python") from exc
    path = Path(spec.local_path(settings.cache_dir))
    if not path.is_file():
        raise ModelLoadError(f"model {spec.id}: GGUF file not found at {path}")
    return llama_cpp, path


def detect_text(text: str, spec: ModelSpec, settings: Settings, textmark: TextWatermark | None = None) -> Detection:
    """Whether `text` carries the text watermark of `spec`'s vocabulary, without loading the
    weights: only the GGUF's vocabulary is read (~1.2 s for gemma-3's 262k tokens). The key is
    the installation's (TextWatermark.from_settings) unless `textmark` is given."""
    from ..governance.textmark import TextWatermark

    llama_cpp, path = gguf(spec, settings)
    from llama_cpp._internals import LlamaModel

    mark = textmark if textmark is not None else TextWatermark.from_settings(settings)
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    try:
        vocab = LlamaModel(path_model=str(path), params=params, verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelLoadError(f"model {spec.id}: llama.cpp could not read the vocabulary of {path}: {exc}") from exc
    try:
        return mark.detect(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))
    finally:
        vocab.close()


def context_size(spec: ModelSpec, path: Path) -> int:
    """spec.options["n_ctx"], checked, or the GGUF's trained context capped at DEFAULT_MAX_CONTEXT."""
    n_ctx = spec.options.get("n_ctx")
    if n_ctx is None:
        return min(_trained_context(path) or DEFAULT_MAX_CONTEXT, DEFAULT_MAX_CONTEXT)
    if not isinstance(n_ctx, int) or n_ctx < 16:
        raise ModelLoadError(f"model {spec.id}: option n_ctx must be an integer >= 16, not {n_ctx!r}")
    return n_ctx


def open_llama(llama_cpp: Any, spec: ModelSpec, path: Path, n_ctx: int, settings: Settings) -> Any:
    """A llama_cpp.Llama on `path` with omniforge's threads and batch; ModelLoadError if it fails."""
    try:
        return llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=min(512, n_ctx),
            n_threads=settings.threads,
            n_threads_batch=settings.threads,
            verbose=False,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelLoadError(f"model {spec.id}: llama.cpp could not load {path}: {exc}") from exc


_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def _trained_context(path: Path) -> int | None:
    """`<arch>.context_length` from the GGUF header, read in Python before llama.cpp allocates a
    context (a vocab-only load does not fill hyperparameters). None when absent or unreadable."""
    import struct

    def read(f: Any, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        data = f.read(size)
        if len(data) != size:
            raise EOFError
        return struct.unpack("<" + fmt, data)[0]

    def skip(f: Any, vtype: int) -> None:
        if vtype == 8:
            f.seek(read(f, "Q"), 1)
        elif vtype == 9:
            item, count = read(f, "I"), read(f, "Q")
            if item in _GGUF_SCALARS:
                f.seek(struct.calcsize("<" + _GGUF_SCALARS[item]) * count, 1)
            else:
                for _ in range(count):
                    skip(f, item)
        else:
            f.seek(struct.calcsize("<" + _GGUF_SCALARS[vtype]), 1)

    try:
        with path.open("rb") as f:
            if f.read(4) != b"GGUF" or read(f, "I") < 2:
                return None
            read(f, "Q")  # tensor count
            arch = None
            for _ in range(read(f, "Q")):
                key = f.read(read(f, "Q")).decode("utf-8", "replace")
                vtype = read(f, "I")
                if key == "general.architecture" and vtype == 8:
                    arch = f.read(read(f, "Q")).decode("utf-8", "replace")
                elif arch is not None and key == f"{arch}.context_length" and vtype in _GGUF_SCALARS:
                    return int(read(f, _GGUF_SCALARS[vtype]))
                else:
                    skip(f, vtype)
    except (OSError, EOFError, KeyError, UnicodeDecodeError, struct.error):
        return None
    return None


class LlamaCppModel(TextModel):
    """One llama.cpp model and context, used by one request at a time. A new generate() closes a
    stream its previous caller left open, so the KV cache never has two writers."""

    supports_grammar = True
    supports_watermark = True  # GenerationParams.watermark: green-list bias, see governance/textmark.py

    def __init__(self, spec: ModelSpec, llm: llama_cpp.Llama, path: Path, settings: Settings | None = None) -> None:
        super().__init__(spec)
        import llama_cpp

        self._lib = llama_cpp
        self._llm: llama_cpp.Llama | None = llm
        self._vocab = llm._model.vocab  # the C handles, for per-token calls without wrappers
        self._ctx = llm._ctx
        self._n_ctx = llm.n_ctx()
        self._n_vocab = llm.n_vocab()
        meta = llm.metadata
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self._bos = llm.token_bos()
        eos = llm.token_eos()
        self._eos_text = llm._model.token_get_text(eos) if eos >= 0 else ""
        self._bos_text = llm._model.token_get_text(self._bos) if self._bos >= 0 else ""
        fim = [
            llama_cpp.llama_vocab_fim_pre(self._vocab),
            llama_cpp.llama_vocab_fim_suf(self._vocab),
            llama_cpp.llama_vocab_fim_mid(self._vocab),
        ]
        self._fim_tokens: list[int] | None = fim if all(t >= 0 for t in fim) else None
        # A capability of this GGUF file, not of the class: set on the instance the router reads.
        self.supports_fim = self._fim_tokens is not None

        template = meta.get("tokenizer.chat_template")
        self._formatter: Any = None
        self._preamble = str(spec.options.get("chat_preamble", PLAIN_DIALOGUE_PREAMBLE))
        if template and spec.options.get("chat_template") != "plain-dialogue":
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            self._formatter = Jinja2ChatFormatter(template, eos_token=self._eos_text, bos_token=self._bos_text)

        self._prompt_cache = spec.options.get("prompt_cache", "auto")
        self._preamble_tokens = self.tokenize(self._preamble) if self._formatter is None else []
        self._exact = 0  # leading cached tokens evaluated as the canonical preamble batch
        self._memory = path.stat().st_size + _kv_cache_bytes(meta, self._n_ctx)
        self._pieces: dict[int, bytes] = {}  # token -> UTF-8 bytes, filled as tokens appear
        self._piece_buf = ctypes.create_string_buffer(256)
        self._grammars: dict[str, None] = {}  # GBNF texts llama.cpp has parsed (insertion-ordered)
        self._candidates: Any = None  # full-vocabulary array, only for grammar resampling
        self._one = llama_cpp.llama_token_data()
        self._one_array = llama_cpp.llama_token_data_array(
            data=ctypes.pointer(self._one), size=1, selected=-1, sorted=False
        )
        self._active: weakref.ref[Iterator[TextDelta]] | None = None
        self._last_dialogue: str | None = None  # the last plain-dialogue prompt chat_prompt rendered
        self._settings = settings  # where the watermark key lives, read on the first marked request
        self._textmark: TextWatermark | None = None

    # -- TextModel ---------------------------------------------------------------------------
    @property
    def context_length(self) -> int:
        return self._n_ctx

    def tokenize(self, text: str) -> list[int]:
        """The tokens generate() feeds for `text` as a prompt (BOS included when the model adds
        one, special tokens such as <start_of_turn> parsed): len() is usage.prompt_tokens."""
        tokens = self._model().tokenize(text.encode("utf-8"), add_bos=self._add_bos, special=True)
        if self._add_bos and len(tokens) > 1 and tokens[0] == tokens[1] == self._bos:
            del tokens[0]  # a template that writes bos_token itself: keep one
        return tokens

    def chat_prompt(self, messages: list[Message]) -> tuple[str, list[str]]:
        if self._formatter is not None:
            turns = [{"role": "system" if m.role == "developer" else m.role, "content": m.content} for m in messages]
            try:
                rendered = self._formatter(messages=turns)
            except Exception as exc:  # the template's raise_exception(), or a Jinja error
                raise InvalidRequestError(
                    f"model {self.spec.id}: its chat template rejected these messages: {exc}", param="messages"
                ) from exc
            return rendered.prompt, [self._eos_text] if self._eos_text else []
        prompt = _plain_dialogue(messages, self._preamble)
        self._last_dialogue = prompt
        return prompt, list(_PLAIN_STOPS)

    def generate(self, prompt: str, params: GenerationParams, suffix: str | None = None,
                 images: list[Any] | None = None) -> Iterator[TextDelta]:
        """Validate and tokenize now, so every error raises here before any token; then stream."""
        _check_params(params)
        if params.watermark:
            _ = self.textmark  # a missing or unreadable key fails here, before any token
        gbnf = self._grammar(params.response_format)
        tokens = self._fim_prompt(prompt, suffix) if suffix is not None else self.tokenize(prompt)
        if not tokens:
            raise InvalidRequestError(
                "the prompt is empty and this model has no BOS token to start from", param="prompt"
            )
        n_prompt = len(tokens)
        budget = completion_budget(self._n_ctx, n_prompt, params.max_tokens)

        previous = self._active() if self._active is not None else None
        if previous is not None:
            try:
                previous.close()  # left open by its consumer: end it before the KV cache is reused
            except ValueError as exc:  # "generator already executing": two requests at once
                raise OmniforgeError(
                    f"model {self.spec.id} is already generating; its requests must be serialized"
                ) from exc
        # An answer to "...\nAssistant:" starts with a space and may end with a newline before
        # "\nUser:": trim both for the plain dialogue (the chat templates of instruct models
        # end their prompt with a newline instead).
        trim = suffix is None and prompt == self._last_dialogue
        stream = self._stream(tokens, budget, [s for s in params.stop if s], gbnf, params, trim)
        self._active = weakref.ref(stream)
        return stream

    def memory_bytes(self) -> int:
        """GGUF file size plus an f16 KV cache for the whole context."""
        return self._memory

    # -- text watermark ------------------------------------------------------------------------
    @property
    def textmark(self) -> TextWatermark:
        """The watermark that `watermark=True` requests carry: the one set here, else the
        installation's key (settings textmark_key or <home>/provenance/textmark.key)."""
        if self._textmark is None:
            if self._settings is None:
                raise OmniforgeError(
                    f"model {self.spec.id} has no text watermark key: load it with settings, or set model.textmark"
                )
            from ..governance.textmark import TextWatermark

            self._textmark = TextWatermark.from_settings(self._settings)
        return self._textmark

    @textmark.setter
    def textmark(self, mark: TextWatermark) -> None:
        self._textmark = mark

    def detect_watermark(self, text: str) -> Detection:
        """The watermark detector on `text`, tokenized by this model (no BOS, no special tokens)."""
        return self.textmark.detect(self._model().tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()
        self._candidates = None

    # -- generation --------------------------------------------------------------------------
    def _model(self) -> llama_cpp.Llama:
        if self._llm is None:
            raise OmniforgeError(f"model {self.spec.id} was closed")
        return self._llm

    def _stream(
        self,
        tokens: list[int],
        budget: int,
        stops: list[str],
        gbnf: str | None,
        params: GenerationParams,
        trim: bool = False,
    ) -> Iterator[TextDelta]:
        # 1. Samplers: llama-cpp-python's defaults (top_k, min_p) around the request's top_p and
        #    temperature; temperature 0 is greedy. The grammar is a separate sampler (see _constrain).
        llm, lib, vocab = self._model(), self._lib, self._vocab
        chain = self._sampler_chain(params)
        grammar = lib.llama_sampler_init_grammar(vocab, gbnf.encode("utf-8"), b"root") if gbnf else None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces, ctx = self._pieces, self._ctx.ctx
        n_completion = 0
        finish = "length"
        pending = ""  # decoded text held back: it may be the start of a stop sequence
        lead = trim  # still dropping leading whitespace
        mark = self._textmark if params.watermark else None
        prev = tokens[-1]  # the watermark's green list is seeded by the token before
        try:
            # 2. Prompt: evaluate what the KV cache does not already hold (see _reuse_cache).
            self._prefill(llm, tokens, reuse=self._reuse_cache(params))
            # 3. Sample, emit, evaluate: one token per turn, no re-detokenizing.
            while True:
                if mark is not None:
                    mark.bias(self._logits(), prev)  # in place: the samplers and _constrain read it
                token = lib.llama_sampler_sample(chain.sampler, ctx, -1)
                if grammar is not None:
                    token = self._constrain(grammar, chain, token)
                if lib.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                if grammar is not None:
                    lib.llama_sampler_accept(grammar, token)
                n_completion += 1
                piece = pieces.get(token)
                if piece is None:
                    piece = self._piece(token)
                text = decoder.decode(piece)
                if lead and text:
                    text = text.lstrip()
                    lead = not text
                if text:
                    if not stops and not trim:
                        yield TextDelta(text)
                    else:
                        pending += text
                        cut = _find_stop(pending, stops)
                        if cut >= 0:
                            pending = pending[:cut]
                            finish = "stop"
                            break
                        keep = _stop_prefix_len(pending, stops)
                        if trim:  # trailing whitespace waits: it is dropped if the turn ends here
                            keep = max(keep, len(pending) - len(pending.rstrip()))
                        if keep < len(pending):
                            out, pending = pending[: len(pending) - keep], pending[len(pending) - keep :]
                            yield TextDelta(out)
                if n_completion >= budget:
                    break
                prev = token
                llm.eval((token,))
        finally:
            # Also on an early close: the cache holds exactly llm.n_tokens evaluated tokens.
            chain.close()
            if grammar is not None:
                lib.llama_sampler_free(grammar)
        if trim and finish == "stop":
            pending = pending.rstrip()
        usage = Usage(prompt_tokens=len(tokens), completion_tokens=n_completion)
        yield TextDelta(pending, finish_reason=finish, usage=usage)  # type: ignore[arg-type]

    def _reuse_cache(self, params: GenerationParams) -> bool:
        """Whether this request may reuse any prefix the KV cache shares with it (spec option
        prompt_cache: auto, always or never). A token's logits change with the batches its
        context was evaluated in (by up to ~0.7 on gemma-3-270m), so a reused prefix often flips
        greedy choices: "auto" reuses freely only for unseeded sampling, and evaluates greedy or
        seeded requests the canonical way (see _prefill), which makes them reproducible."""
        if self._prompt_cache == "auto":
            return params.seed is None and params.temperature > 0
        return self._prompt_cache == "always"

    def _prefill(self, llm: llama_cpp.Llama, tokens: list[int], reuse: bool) -> None:
        """Evaluate the prompt, leaving its last token's logits ready to sample.

        Canonical evaluation, a function of the prompt alone: the plain-dialogue preamble as one
        batch, then the rest. The preamble's cache stays exact while later calls only cut above
        it (self._exact), so reproducible requests still skip it. With `reuse`, any shared
        prefix is kept instead (the last prompt token is evaluated again, for fresh logits)."""
        pre = self._preamble_tokens
        split = len(pre) if len(tokens) > len(pre) > 0 and tokens[: len(pre)] == pre else 0
        keep = 0
        if reuse:
            limit = min(llm.n_tokens, len(tokens) - 1)
            if limit > 0:
                differ = np.flatnonzero(llm.input_ids[:limit] != np.asarray(tokens[:limit], dtype=np.intc))
                keep = int(differ[0]) if differ.size else limit
        elif split and self._exact == split and llm.n_tokens >= split:
            keep = split
        if keep > 0 and self._ctx.kv_cache_seq_rm(-1, keep, -1):
            llm.n_tokens = keep
            if keep < self._exact:
                self._exact = 0
        else:
            self._exact = 0
            llm.reset()
            keep = 0
        if keep == 0 and split:
            llm.eval(tokens[:split])
            self._exact = keep = split
        llm.eval(tokens[keep:])

    def _sampler_chain(self, params: GenerationParams) -> Any:
        from llama_cpp._internals import LlamaSampler

        chain = LlamaSampler()
        if params.temperature == 0:
            chain.add_greedy()
        else:
            chain.add_top_k(_TOP_K)
            chain.add_top_p(params.top_p, 1)
            chain.add_min_p(_MIN_P, 1)
            chain.add_temp(params.temperature)
            chain.add_dist(params.seed if params.seed is not None else random.getrandbits(32))
        return chain

    def _constrain(self, grammar: Any, chain: Any, token: int) -> int:
        """llama.cpp's common sampler trick: keep the freely sampled token when the grammar
        allows it (one check), else apply the grammar to the whole vocabulary and sample again.
        Masking 262k tokens on every step would cost far more than the model itself."""
        lib, one, single = self._lib, self._one, self._one_array
        one.id, one.logit, one.p = token, 1.0, 0.0
        single.size, single.selected, single.sorted = 1, -1, False
        lib.llama_sampler_apply(grammar, ctypes.byref(single))
        if one.logit != -math.inf:
            return token
        if self._candidates is None:
            from llama_cpp._internals import LlamaTokenDataArray

            self._candidates = LlamaTokenDataArray(n_vocab=self._n_vocab)
        cand = self._candidates
        cand.copy_logits(self._logits())
        array = cand.candidates
        array.data = cand.candidates_data.ctypes.data_as(lib.llama_token_data_p)  # samplers may move it
        array.selected = -1
        lib.llama_sampler_apply(grammar, ctypes.byref(array))
        lib.llama_sampler_apply(chain.sampler, ctypes.byref(array))
        return int(array.data[array.selected].id)

    def _logits(self) -> np.ndarray:
        """The last evaluated token's logits, a writable view of llama.cpp's buffer."""
        return np.ctypeslib.as_array(self._lib.llama_get_logits_ith(self._ctx.ctx, -1), shape=(self._n_vocab,))

    def _piece(self, token: int) -> bytes:
        """The bytes of one token, cached; special tokens render as nothing."""
        buf = self._piece_buf
        n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        if n < 0:  # longer than the buffer
            buf = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        piece = buf.raw[:n]
        self._pieces[token] = piece
        return piece

    def _fim_prompt(self, prefix: str, suffix: str) -> list[int]:
        if self._fim_tokens is None:
            raise InvalidRequestError(
                f"model {self.spec.id} does not support fill-in-the-middle: its vocabulary has no FIM "
                "tokens. Omit `suffix`, or use a code model with FIM tokens.",
                param="suffix",
            )
        pre, suf, mid = self._fim_tokens
        llm = self._model()
        head = [self._bos] if self._add_bos and self._bos >= 0 else []
        prefix_tokens = llm.tokenize(prefix.encode("utf-8"), add_bos=False, special=False)
        suffix_tokens = llm.tokenize(suffix.encode("utf-8"), add_bos=False, special=False)
        return head + [pre, *prefix_tokens, suf, *suffix_tokens, mid]

    # -- response_format ---------------------------------------------------------------------
    def _grammar(self, response_format: dict[str, Any] | None) -> str | None:
        """GBNF for `response_format` that llama.cpp accepts, or None for free text."""
        if not response_format or response_format.get("type") in (None, "text"):
            return None
        from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

        kind = response_format.get("type")
        if kind == "json_object":
            gbnf = JSON_GBNF
        elif kind == "json_schema":
            # The internal shape {"schema": ...}; OpenAI's wire shape {"json_schema": {"schema": ...}}.
            schema = response_format.get("schema")
            if schema is None and isinstance(response_format.get("json_schema"), dict):
                schema = response_format["json_schema"].get("schema")
            if not isinstance(schema, dict):
                raise InvalidRequestError(
                    "response_format json_schema needs a JSON Schema object under 'schema'", param="response_format"
                )
            try:
                gbnf = json_schema_to_gbnf(json.dumps(schema))
            except Exception as exc:  # the converter raises ValueError, KeyError, TypeError ...
                raise InvalidRequestError(
                    f"response_format: unsupported or invalid JSON schema: {exc}", param="response_format"
                ) from exc
        else:
            raise InvalidRequestError(
                f"response_format type {kind!r} is not one of text, json_object, json_schema", param="response_format"
            )
        if gbnf not in self._grammars:
            # A grammar llama.cpp cannot parse yields a NULL sampler: find out now, not mid-stream.
            probe = self._lib.llama_sampler_init_grammar(self._vocab, gbnf.encode("utf-8"), b"root")
            if not probe:
                raise InvalidRequestError(
                    "response_format: the JSON schema gives a grammar llama.cpp cannot parse", param="response_format"
                )
            self._lib.llama_sampler_free(probe)
            if len(self._grammars) >= _GRAMMAR_CACHE_SIZE:
                self._grammars.pop(next(iter(self._grammars)))
            self._grammars[gbnf] = None
        return gbnf


def _plain_dialogue(messages: list[Message], preamble: str) -> str:
    """A transcript a base model can continue: the preamble, system text as "System:" lines, the
    turns as "User:" / "Assistant:" lines, ending with "Assistant:". The answer is cut where the
    model starts a new "User:" or "System:" line (the stops returned with it)."""
    lines = [f"{_PLAIN_ROLES[m.role]}: {m.content.strip()}" for m in messages]
    lines.append("Assistant:")
    return preamble + "\n".join(lines)


def _check_params(params: GenerationParams) -> None:
    if params.max_tokens is not None and params.max_tokens < 1:
        raise InvalidRequestError(f"max_tokens must be at least 1, not {params.max_tokens}", param="max_tokens")
    if params.temperature < 0:
        raise InvalidRequestError(f"temperature must be >= 0, not {params.temperature}", param="temperature")
    if not 0 < params.top_p <= 1:
        raise InvalidRequestError(f"top_p must be in (0, 1], not {params.top_p}", param="top_p")


def _find_stop(text: str, stops: list[str]) -> int:
    """Index of the earliest stop sequence in `text`, or -1."""
    best = -1
    for s in stops:
        i = text.find(s)
        if i >= 0 and (best < 0 or i < best):
            best = i
    return best


def _stop_prefix_len(text: str, stops: list[str]) -> int:
    """Length of the longest tail of `text` that could still grow into a stop sequence."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


def _kv_cache_bytes(meta: dict[str, str], n_ctx: int) -> int:
    """f16 K and V for every layer over the whole context (an upper bound with sliding windows)."""
    arch = meta.get("general.architecture", "")
    try:
        n_layer = int(meta[f"{arch}.block_count"])
        n_embd = int(meta[f"{arch}.embedding_length"])
        n_head = int(meta[f"{arch}.attention.head_count"])
    except (KeyError, ValueError):
        return 0
    n_head_kv = int(meta.get(f"{arch}.attention.head_count_kv", n_head))
    head_k = int(meta.get(f"{arch}.attention.key_length", n_embd // max(n_head, 1)))
    head_v = int(meta.get(f"{arch}.attention.value_length", head_k))
    return n_layer * n_ctx * n_head_kv * (head_k + head_v) * 2
