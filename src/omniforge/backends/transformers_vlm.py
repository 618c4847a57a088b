"""transformers vision-language models: a local image-text-to-text folder as a TextModel that sees.

The folder is what `save_pretrained` writes (config, weights, processor, tokenizer, chat
template), loaded with AutoProcessor and AutoModelForImageTextToText and never from a hub.
This module owns rendering chat turns with the processor's chat template ({"type": "image"}
parts mark where each image goes), turning prompt + images into model inputs, and streaming
`model.generate` token by token from a worker thread, with the request's sampling options,
stop sequences and usage (prompt tokens include the image tokens the processor expands).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub reads it at import time

import queue
import random
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    InvalidRequestError,
    MissingDependencyError,
    ModelLoadError,
    OmniforgeError,
)
from ..types import GenerationParams, Message, TextDelta, Usage
from .base import TextModel, completion_budget
from .llama_cpp import _check_params, _find_stop, _stop_prefix_len

if TYPE_CHECKING:
    from ..catalog.spec import ModelSpec
    from ..config import Settings

__all__ = ["DEFAULT_CONTEXT", "TransformersVLM", "load"]

DEFAULT_CONTEXT = 4096  # when neither the spec (n_ctx) nor the config says
_DTYPES = ("float32", "bfloat16", "float16")  # spec option dtype; float32 is the safe CPU default
# The llama.cpp backend's sampling defaults, so the two engines sample alike.
_TOP_K = 40
_MIN_P = 0.05
_JOIN_TIMEOUT_S = 60.0


def load(spec: ModelSpec, settings: Settings) -> TransformersVLM:
    """Load the processor and model from the local folder spec.local_path(); options: dtype
    (float32, bfloat16, float16), device ("cpu", "cuda", ...), n_ctx (the context window)."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(f"model {spec.id} needs transformers and torch: pip install transformers torch") from exc

    path = Path(spec.local_path(settings.cache_dir))
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"model {spec.id}: no transformers model at {path} (expected a folder with config.json, "
            "as save_pretrained writes it)"
        )
    dtype_name = spec.options.get("dtype", "float32")
    if dtype_name not in _DTYPES:
        raise ModelLoadError(f"model {spec.id}: option dtype must be one of {', '.join(_DTYPES)}, not {dtype_name!r}")
    device = str(spec.options.get("device", "cpu"))
    torch.set_num_threads(settings.threads)  # torch takes every core otherwise (process-wide)

    try:
        processor = transformers.AutoProcessor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"model {spec.id}: could not load the processor from {path}: {exc}") from exc
    if not hasattr(processor, "image_processor") or not hasattr(processor, "tokenizer"):
        raise ModelLoadError(
            f"model {spec.id}: {path} has no image processor ({type(processor).__name__}); "
            "use the llama-cpp backend for a text-only model"
        )
    model = _load_model(spec, path, getattr(torch, dtype_name))
    try:
        model.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise ModelLoadError(f"model {spec.id}: cannot use device {device!r}: {exc}") from exc
    model.eval()
    return TransformersVLM(spec, model, processor, device)


def _load_model(spec: ModelSpec, path: Path, dtype: Any) -> Any:
    """AutoModelForImageTextToText, else AutoModelForVision2Seq (older transformers), else the
    class the config names in `architectures`."""
    import transformers

    errors: list[str] = []
    for name in ("AutoModelForImageTextToText", "AutoModelForVision2Seq"):
        auto = getattr(transformers, name, None)
        if auto is None:
            continue
        try:
            return auto.from_pretrained(path, local_files_only=True, dtype=dtype)
        except ValueError as exc:  # "Unrecognized configuration class ... for this kind of AutoModel"
            errors.append(f"{name}: {exc}")
        except OSError as exc:
            raise ModelLoadError(f"model {spec.id}: could not read the weights in {path}: {exc}") from exc
    try:
        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model {spec.id}: unreadable config.json in {path}: {exc}") from exc
    for arch in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, arch, None)
        if cls is not None:
            try:
                return cls.from_pretrained(path, local_files_only=True, dtype=dtype)
            except (OSError, ValueError) as exc:
                errors.append(f"{arch}: {exc}")
    raise ModelLoadError(
        f"model {spec.id}: transformers has no image-text-to-text model for {path} ({'; '.join(errors) or 'no architectures in config.json'})"
    )


class TransformersVLM(TextModel):
    """One vision-language model, used by one request at a time. A new generate() ends a stream
    its previous caller left open, so two generate threads never share the model."""

    accepts_images = True

    def __init__(self, spec: ModelSpec, model: Any, processor: Any, device: str = "cpu") -> None:
        super().__init__(spec)
        self._model: Any = model
        self._processor = processor
        self._tokenizer = processor.tokenizer
        self._device = device
        config = model.config
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        n_ctx = spec.options.get("n_ctx") or getattr(text_config, "max_position_embeddings", None) or DEFAULT_CONTEXT
        self._n_ctx = int(n_ctx)
        image_token = getattr(config, "image_token_id", None)
        if image_token is None:
            image_token = getattr(config, "image_token_index", None)
        self._image_token: int | None = image_token
        self._eos = _token_ids(model.generation_config.eos_token_id) | _token_ids(self._tokenizer.eos_token_id)
        self._bos_text: str = self._tokenizer.bos_token or ""
        self._memory = sum(p.numel() * p.element_size() for p in model.parameters())
        self._active: weakref.ref[Iterator[TextDelta]] | None = None

    # -- TextModel ---------------------------------------------------------------------------
    @property
    def context_length(self) -> int:
        return self._n_ctx

    def memory_bytes(self) -> int:
        return self._memory

    def close(self) -> None:
        self._end_previous()
        self._model = None

    def tokenize(self, text: str) -> list[int]:
        """The tokens of `text` as a prompt, without image expansion (BOS added unless the text
        starts with it, as a rendered chat template does)."""
        return list(self._tokenizer(text, add_special_tokens=self._adds_bos(text))["input_ids"])

    def chat_prompt(self, messages: list[Message]) -> tuple[str, list[str]]:
        """The processor's chat template over the turns, with one image part per attached image,
        ahead of the turn's text (most VLMs were trained with the image first)."""
        if not getattr(self._processor, "chat_template", None):
            raise InvalidRequestError(
                f"model {self.spec.id} has no chat template; use the completions endpoint with a raw prompt",
                param="messages",
            )
        conversation = []
        for m in messages:
            parts: list[dict[str, Any]] = [{"type": "image"} for _ in m.images]
            if m.content or not parts:
                parts.append({"type": "text", "text": m.content})
            conversation.append({"role": "system" if m.role == "developer" else m.role, "content": parts})
        try:
            prompt = self._processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # the template's raise_exception(), or a Jinja error
            raise InvalidRequestError(
                f"model {self.spec.id}: its chat template rejected these messages: {exc}", param="messages"
            ) from exc
        return prompt, []

    def generate(self, prompt: str, params: GenerationParams, suffix: str | None = None,
                 images: list[Any] | None = None) -> Iterator[TextDelta]:
        """Validate and encode now, so every error raises here before any token; then stream."""
        _check_params(params)
        if suffix is not None:
            raise InvalidRequestError(f"model {self.spec.id} does not support fill-in-the-middle; omit `suffix`", param="suffix")
        if params.response_format and params.response_format.get("type") not in (None, "text"):
            raise InvalidRequestError(
                f"model {self.spec.id} cannot constrain its output to JSON; omit response_format", param="response_format"
            )
        inputs = self._encode(prompt, images or [])
        n_prompt = int(inputs["input_ids"].shape[1])
        budget = completion_budget(self._n_ctx, n_prompt, params.max_tokens, " (images included)")
        self._end_previous()
        stream = self._stream(inputs, n_prompt, budget, [s for s in params.stop if s], params)
        self._active = weakref.ref(stream)
        return stream

    # -- generation --------------------------------------------------------------------------
    def _adds_bos(self, text: str) -> bool:
        return not (self._bos_text and text.startswith(self._bos_text))

    def _encode(self, prompt: str, images: list[Any]) -> Any:
        """Token ids (image markers expanded to the model's image tokens) and pixel inputs."""
        if self._model is None:
            raise OmniforgeError(f"model {self.spec.id} was closed")
        add_special = self._adds_bos(prompt)
        try:
            if images:
                rgb = [im.convert("RGB") if getattr(im, "mode", "RGB") != "RGB" else im for im in images]
                inputs = self._processor(text=[prompt], images=rgb, return_tensors="pt", add_special_tokens=add_special)
            else:
                inputs = self._tokenizer([prompt], return_tensors="pt", add_special_tokens=add_special)
        except (ValueError, TypeError, IndexError) as exc:  # e.g. markers and images do not match
            raise InvalidRequestError(
                f"model {self.spec.id}: the prompt and its {len(images)} image(s) do not fit together: {exc}",
                param="messages",
            ) from exc
        if not images and self._image_token is not None and bool((inputs["input_ids"] == self._image_token).any()):
            raise InvalidRequestError(
                f"model {self.spec.id}: the prompt marks an image but no image was given", param="messages"
            )
        if inputs["input_ids"].shape[1] == 0:
            raise InvalidRequestError("the prompt is empty", param="prompt")
        return inputs.to(self._device)

    def _stream(self, inputs: Any, n_prompt: int, budget: int, stops: list[str],
                params: GenerationParams) -> Iterator[TextDelta]:
        # 1. Generation runs in a worker thread; its streamer hands each new token to this one.
        cancel = threading.Event()
        tokens: queue.Queue[Any] = queue.Queue()
        worker = threading.Thread(
            target=self._run_generate, args=(inputs, budget, params, tokens, cancel),
            name=f"vlm-{self.spec.id}", daemon=True,
        )
        worker.start()
        generated: list[int] = []
        emitted = ""  # text already yielded or held in `pending`
        pending = ""  # decoded text held back: it may be the start of a stop sequence
        finish = "length"
        try:
            # 2. Decode the whole completion each step (exact for any tokenizer) and emit the new tail.
            while True:
                item = tokens.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise OmniforgeError(f"model {self.spec.id} failed while generating: {item}") from item
                if item in self._eos:
                    finish = "stop"
                    break
                generated.append(item)
                text = self._tokenizer.decode(generated, skip_special_tokens=True)
                if text.endswith("\ufffd"):
                    continue  # an incomplete UTF-8 sequence: wait for its next byte
                new, emitted = text[len(emitted):], text
                if not new:
                    continue
                if not stops:
                    yield TextDelta(new)
                    continue
                pending += new
                cut = _find_stop(pending, stops)
                if cut >= 0:
                    pending = pending[:cut]
                    finish = "stop"
                    break
                keep = _stop_prefix_len(pending, stops)
                if keep < len(pending):
                    out, pending = pending[: len(pending) - keep], pending[len(pending) - keep:]
                    yield TextDelta(out)
            if finish == "length" and len(generated) < budget:
                finish = "stop"  # the model's own stopping rule (stop strings in its generation config)
        finally:
            # Also on an early close: stop the worker before the model takes another request.
            cancel.set()
            worker.join(_JOIN_TIMEOUT_S)
        usage = Usage(prompt_tokens=n_prompt, completion_tokens=len(generated))
        yield TextDelta(pending, finish_reason=finish, usage=usage)  # type: ignore[arg-type]

    def _run_generate(self, inputs: Any, budget: int, params: GenerationParams,
                      tokens: queue.Queue[Any], cancel: threading.Event) -> None:
        """The worker: seed, sample with the request's options, put each token id on `tokens`,
        then None (or the exception that ended it)."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

        sampling: dict[str, Any]
        if params.temperature == 0:
            sampling = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None, "min_p": None}
        else:
            sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p,
                        "top_k": _TOP_K, "min_p": _MIN_P}
        try:
            seed = params.seed if params.seed is not None else random.getrandbits(63)
            torch.manual_seed(seed)  # process-wide: the runtime runs one request per model at a time
            with torch.inference_mode():
                self._model.generate(
                    **inputs,
                    max_new_tokens=budget,
                    streamer=_QueueStreamer(tokens),
                    stopping_criteria=StoppingCriteriaList([Cancelled()]),
                    eos_token_id=sorted(self._eos) or None,
                    pad_token_id=self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else (sorted(self._eos) or [0])[0],
                    **sampling,
                )
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            tokens.put(exc)
        finally:
            tokens.put(None)

    def _end_previous(self) -> None:
        previous = self._active() if self._active is not None else None
        if previous is not None:
            try:
                previous.close()  # left open by its consumer: end its worker first
            except ValueError as exc:  # "generator already executing": two requests at once
                raise OmniforgeError(
                    f"model {self.spec.id} is already generating; its requests must be serialized"
                ) from exc
        self._active = None


class _QueueStreamer:
    """A transformers streamer (put/end) that forwards new token ids, skipping the prompt that
    generate() puts first."""

    def __init__(self, tokens: queue.Queue[Any]) -> None:
        self._tokens = tokens
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self._tokens.put(int(token))

    def end(self) -> None:
        pass


def _token_ids(value: Any) -> set[int]:
    if value is None:
        return set()
    if isinstance(value, int):
        return {value}
    return {int(v) for v in value}
