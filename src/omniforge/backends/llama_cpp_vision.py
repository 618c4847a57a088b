"""llama.cpp vision-language models: a GGUF language model plus its multimodal projector (mmproj).

Built on the llama.cpp text backend (sampling, stop sequences, grammars, usage and the context
check are the same) and on llama-cpp-python's multimodal chat handlers, of which this module
uses two parts: the chat format each model family was trained with, and the libmtmd context
that turns images into embeddings. The handler is picked by spec.options["chat_handler"]
(default llava-1.5); spec.options["mmproj"] names the projector GGUF (relative paths are taken
from the model's folder). chat_prompt() writes libmtmd's media marker where each image goes;
generate() tokenizes text and images together and evaluates them before sampling.
"""

from __future__ import annotations

import ctypes
import io
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    MissingDependencyError,
    ModelLoadError,
    OmniforgeError,
)
from ..types import GenerationParams, Message, TextDelta
from .llama_cpp import LlamaCppModel, _check_params, context_size, gguf, open_llama

if TYPE_CHECKING:
    from collections.abc import Iterator

    import llama_cpp

    from ..catalog.spec import ModelSpec
    from ..config import Settings

__all__ = ["CHAT_HANDLERS", "DEFAULT_CHAT_HANDLER", "LlamaCppVision", "load"]

# spec.options["chat_handler"] -> class in llama_cpp.llama_chat_format (names as llama-cpp-python's
# server spells its chat_format, with dots for versions). "mtmd" renders the GGUF's own template.
CHAT_HANDLERS = {
    "llava-1.5": "Llava15ChatHandler",
    "llava-1.6": "Llava16ChatHandler",
    "obsidian": "ObsidianChatHandler",
    "moondream2": "MoondreamChatHandler",
    "nanollava": "NanoLlavaChatHandler",
    "llama-3-vision-alpha": "Llama3VisionAlphaChatHandler",
    "minicpm-v-2.6": "MiniCPMv26ChatHandler",
    "qwen2.5-vl": "Qwen25VLChatHandler",
    "mtmd": "MTMDChatHandler",
    "gemma-3": "MTMDChatHandler",
    "gemma-4": "Gemma4ChatHandler",
}
DEFAULT_CHAT_HANDLER = "llava-1.5"


def load(spec: ModelSpec, settings: Settings) -> LlamaCppVision:
    """Check the GGUF, the mmproj option and the handler name before loading anything, then load
    the language model and start libmtmd on the projector."""
    # 1. Files and options, cheapest checks first.
    llama_cpp, path = gguf(spec, settings)
    from llama_cpp import llama_chat_format

    mmproj = _mmproj_path(spec, path)
    handler_cls = _handler_class(spec, llama_chat_format)
    n_ctx = context_size(spec, path)

    # 2. The language model.
    llm = open_llama(llama_cpp, spec, path, n_ctx, settings)

    # 3. The projector, in the handler's libmtmd context (freed with the model).
    try:
        handler = handler_cls(clip_model_path=str(mmproj), verbose=False)
        handler._init_mtmd_context(llm)
    except (ValueError, RuntimeError, OSError) as exc:
        llm.close()
        raise ModelLoadError(
            f"model {spec.id}: libmtmd could not load the projector {mmproj} (option mmproj) with "
            f"{handler_cls.__name__}: {exc}. Check that it is the mmproj GGUF made for this model."
        ) from exc
    return LlamaCppVision(spec, llm, path, handler, mmproj)


def _mmproj_path(spec: ModelSpec, gguf: Path) -> Path:
    value = spec.options.get("mmproj")
    if not value:
        raise ModelLoadError(
            f"model {spec.id}: option mmproj is required: the path of the multimodal projector GGUF "
            "(e.g. mmproj-model-f16.gguf) that comes with this model"
        )
    mmproj = Path(str(value)).expanduser()
    if not mmproj.is_absolute():
        mmproj = gguf.parent / mmproj
    if not mmproj.is_file():
        raise ModelLoadError(f"model {spec.id}: option mmproj names {mmproj}, which is not a file")
    return mmproj


def _handler_class(spec: ModelSpec, module: Any) -> type:
    name = str(spec.options.get("chat_handler", DEFAULT_CHAT_HANDLER)).lower().replace("_", "-")
    name = {"llava-1-5": "llava-1.5", "llava-1-6": "llava-1.6", "moondream": "moondream2"}.get(name, name)
    if name not in CHAT_HANDLERS:
        raise ModelLoadError(
            f"model {spec.id}: option chat_handler {name!r} is not one of {', '.join(CHAT_HANDLERS)}"
        )
    cls = getattr(module, CHAT_HANDLERS[name], None)
    if cls is None:
        raise MissingDependencyError(
            f"model {spec.id}: this llama-cpp-python has no {CHAT_HANDLERS[name]} (option chat_handler "
            f"{name!r}): pip install -U llama-cpp-python"
        )
    return cls


class LlamaCppVision(LlamaCppModel):
    """A llama.cpp model that also sees. Text-only prompts take the text backend's path (with its
    prompt cache); a prompt with images is evaluated afresh through libmtmd."""

    accepts_images = True

    def __init__(self, spec: ModelSpec, llm: llama_cpp.Llama, path: Path, handler: Any, mmproj: Path) -> None:
        super().__init__(spec, llm, path)
        self._handler = handler
        self._mtmd = handler._mtmd_cpp
        self.marker: str = self._mtmd.mtmd_default_marker().decode("utf-8")
        self._memory += mmproj.stat().st_size
        self._uses_gguf_template = _is_mtmd_family(handler)
        self._chunks: Any = None  # tokenized text + images waiting for _prefill
        self._pending_images = 0

    def close(self) -> None:
        self._free_chunks()
        super().close()  # the handler's libmtmd context is freed with the llama model

    # -- TextModel ---------------------------------------------------------------------------
    def chat_prompt(self, messages: list[Message]) -> tuple[str, list[str]]:
        """The handler's chat format (or, for the mtmd family, the GGUF's template) with the
        media marker where each image goes: before the text of its user turn."""
        turns: list[dict[str, Any]] = []
        for i, m in enumerate(messages):
            role = "system" if m.role == "developer" else m.role
            if m.images and role != "user":
                raise InvalidRequestError(
                    f"messages[{i}]: images are only accepted in user messages, not {m.role}", param="messages"
                )
            if role == "user" and m.images:
                parts: list[dict[str, Any]] = [
                    {"type": "image_url", "image_url": {"url": self.marker}} for _ in m.images
                ]
                parts.append({"type": "text", "text": m.content})
                turns.append({"role": role, "content": parts})
            else:
                turns.append({"role": role, "content": m.content})
        try:
            prompt = self._render(turns)
        except Exception as exc:  # the template's raise_exception(), or a Jinja error
            raise InvalidRequestError(
                f"model {self.spec.id}: its chat template rejected these messages: {exc}", param="messages"
            ) from exc
        return prompt, [self._eos_text] if self._eos_text else []

    def generate(self, prompt: str, params: GenerationParams, suffix: str | None = None,
                 images: list[Any] | None = None) -> Iterator[TextDelta]:
        """Without images: the text backend's generate (a stray media marker is an error). With
        images: tokenize text and images together now, so every error raises before any token."""
        markers = prompt.count(self.marker)
        if markers != len(images or []):
            raise InvalidRequestError(
                f"model {self.spec.id}: the prompt marks {markers} image(s) ({self.marker}) but "
                f"{len(images or [])} were given",
                param="messages",
            )
        if not images:
            return super().generate(prompt, params, suffix=suffix)
        if suffix is not None:
            raise InvalidRequestError("fill-in-the-middle (`suffix`) cannot be combined with images", param="suffix")
        _check_params(params)
        gbnf = self._grammar(params.response_format)
        self._model()  # raises if closed
        self._free_chunks()
        self._chunks = self._tokenize_with_images(prompt, images)
        n_prompt = int(self._mtmd.mtmd_helper_get_n_tokens(self._chunks))
        if n_prompt >= self._n_ctx or (params.max_tokens is not None and n_prompt + params.max_tokens > self._n_ctx):
            self._free_chunks()
            wanted = n_prompt + (params.max_tokens or 0)
            raise ContextLengthExceededError(
                f"This model's maximum context length is {self._n_ctx} tokens, but the prompt has "
                f"{n_prompt} tokens (images included) and {wanted} are needed with the completion. "
                "Send fewer or smaller images, shorten the prompt or reduce max_tokens.",
                param="max_tokens" if n_prompt < self._n_ctx else "messages",
            )
        budget = params.max_tokens if params.max_tokens is not None else self._n_ctx - n_prompt
        previous = self._active() if self._active is not None else None
        if previous is not None:
            try:
                previous.close()
            except ValueError as exc:
                raise OmniforgeError(
                    f"model {self.spec.id} is already generating; its requests must be serialized"
                ) from exc
        # The text loop counts len(tokens) as prompt tokens; _prefill evaluates self._chunks instead.
        placeholder = [-1] * n_prompt
        stream = self._stream(placeholder, budget, [s for s in params.stop if s], gbnf, params)
        self._active = weakref.ref(stream)
        return stream

    # -- images --------------------------------------------------------------------------------
    def _render(self, turns: list[dict[str, Any]]) -> str:
        llm = self._model()
        if self._uses_gguf_template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            template = self._handler._get_chat_template(llm)
            converted = self._handler._get_template_messages(turns, self.marker)
            formatter = Jinja2ChatFormatter(template, eos_token=self._eos_text, bos_token=self._bos_text)
            return formatter(messages=converted).prompt
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        default_system = getattr(self._handler, "DEFAULT_SYSTEM_MESSAGE", None)
        if default_system and not any(t["role"] == "system" for t in turns):
            turns = [{"role": "system", "content": default_system}, *turns]
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(self._handler.CHAT_FORMAT).render(
            messages=turns, add_generation_prompt=True, eos_token=self._eos_text, bos_token=self._bos_text
        )

    def _tokenize_with_images(self, prompt: str, images: list[Any]) -> Any:
        """libmtmd chunks for `prompt` with each marker replaced by its image's tokens."""
        mtmd = self._mtmd
        bitmaps = []
        try:
            for i, image in enumerate(images):
                try:
                    bitmaps.append(self._handler._create_bitmap_from_bytes(_png(image)))
                except ValueError as exc:
                    raise InvalidRequestError(f"image {i}: libmtmd could not read it: {exc}", param="messages") from exc
            text = mtmd.mtmd_input_text()
            encoded = prompt.encode("utf-8")
            text.text, text.text_len = encoded, len(encoded)
            # BOS once: from the template's own bos_token, or added here as the text backend does.
            starts_with_bos = bool(self._bos_text) and prompt.startswith(self._bos_text)
            text.add_special, text.parse_special = self._add_bos and not starts_with_bos, True
            chunks = mtmd.mtmd_input_chunks_init()
            if chunks is None:
                raise OmniforgeError(f"model {self.spec.id}: libmtmd could not allocate input chunks")
            array = (mtmd.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
            result = mtmd.mtmd_tokenize(self._handler.mtmd_ctx, chunks, ctypes.byref(text), array, len(bitmaps))
            if result != 0:
                mtmd.mtmd_input_chunks_free(chunks)
                raise InvalidRequestError(
                    f"model {self.spec.id}: libmtmd could not tokenize the prompt with its images (error {result})",
                    param="messages",
                )
            return chunks
        finally:
            for bitmap in bitmaps:  # the chunks hold their own preprocessed copy
                mtmd.mtmd_bitmap_free(bitmap)

    def _prefill(self, llm: llama_cpp.Llama, tokens: list[int], reuse: bool) -> None:
        """With images pending: evaluate text and image chunks from position 0 (the handler's
        recipe); image positions in input_ids get -1, so no text prompt ever reuses them."""
        if self._chunks is None:
            super()._prefill(llm, tokens, reuse)
            return
        import llama_cpp as lib

        mtmd, chunks = self._mtmd, self._chunks
        try:
            llm.reset()
            self._ctx.kv_cache_clear()
            self._exact = 0
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                chunk = mtmd.mtmd_input_chunks_get(chunks, i)
                if chunk is None:
                    continue
                if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    n = ctypes.c_size_t()
                    ptr = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                    if ptr and n.value > 0:
                        llm.eval([ptr[j] for j in range(n.value)])
                    continue
                start = llm.n_tokens
                new_past = lib.llama_pos(0)
                result = mtmd.mtmd_helper_eval_chunk_single(
                    self._handler.mtmd_ctx, self._ctx.ctx, chunk, lib.llama_pos(start), lib.llama_seq_id(0),
                    llm.n_batch, False, ctypes.byref(new_past),
                )
                if result != 0:
                    raise OmniforgeError(f"model {self.spec.id}: libmtmd failed to evaluate an image (error {result})")
                llm.n_tokens = new_past.value
                llm.input_ids[start : llm.n_tokens] = -1
        finally:
            self._free_chunks()

    def _free_chunks(self) -> None:
        chunks, self._chunks = self._chunks, None
        if chunks is not None:
            self._mtmd.mtmd_input_chunks_free(chunks)


def _is_mtmd_family(handler: Any) -> bool:
    from llama_cpp import llama_chat_format

    base = getattr(llama_chat_format, "MTMDChatHandler", None)
    return base is not None and isinstance(handler, base)


def _png(image: Any) -> bytes:
    """PNG bytes of a PIL image (libmtmd decodes PNG and JPEG with stb_image)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()
