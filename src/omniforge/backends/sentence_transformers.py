"""sentence-transformers embeddings: a local sentence-transformers folder as an EmbeddingModel.

Vectors are L2-normalized. Inputs are counted with the model's own tokenizer; an input longer
than the model reads is rejected, naming its index, rather than silently truncated (OpenAI
rejects over-long inputs too). `max_tokens` and `prompt_tokens` count the input's own tokens,
without the [CLS]/[SEP] the model adds: max_tokens = max_seq_length - those (254 for MiniLM).
Nothing here reaches a model hub: the folder is loaded with local_files_only.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub reads it at import time

from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

from ..errors import InvalidRequestError, ModelLoadError  # noqa: E402
from ..types import EmbeddingResult  # noqa: E402
from .base import EmbeddingModel  # noqa: E402

if TYPE_CHECKING:
    from ..catalog.spec import ModelSpec
    from ..config import Settings

BATCH_SIZE = 32


class SentenceTransformerEmbeddings(EmbeddingModel):
    def __init__(self, spec: ModelSpec, model: SentenceTransformer) -> None:
        super().__init__(spec)
        self._model: SentenceTransformer | None = model
        tokenizer = model.tokenizer
        self._specials = int(tokenizer.num_special_tokens_to_add(pair=False))
        self._max_tokens = int(model.max_seq_length) - self._specials
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self._dimensions = int(get_dim())
        self._counter = _token_counter(tokenizer)

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            raise ModelLoadError(f"model {self.spec.id} was unloaded")
        return self._model

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens of each text, without the special tokens the model adds."""
        return self._counter(texts)

    def embed(self, texts: list[str]) -> EmbeddingResult:
        if not texts:
            raise InvalidRequestError("input must contain at least one text", param="input")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidRequestError(f"input[{i}] must be a string, not {type(text).__name__}", param="input")
            if not text:
                raise InvalidRequestError(f"input[{i}] is an empty string; every input must have text", param="input")
        counts = self.count_tokens(texts)
        for i, n in enumerate(counts):
            if n > self._max_tokens:
                raise InvalidRequestError(
                    f"input[{i}] has {n} tokens; model {self.spec.id} reads at most {self._max_tokens} per input",
                    param="input",
                )
        vectors = self.model.encode(
            texts,
            batch_size=BATCH_SIZE,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return EmbeddingResult(vectors=np.asarray(vectors, dtype=np.float32).tolist(), prompt_tokens=sum(counts))

    def close(self) -> None:
        self._model = None


def _token_counter(tokenizer: Any) -> Any:
    """A counter that never truncates and never logs: a private copy of the fast tokenizer (the
    model's own copy keeps its truncation settings for encoding), else the tokenizer itself."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        from tokenizers import Tokenizer

        counter = Tokenizer.from_str(backend.to_str())
        counter.no_truncation()
        counter.no_padding()
        return lambda texts: [len(e.ids) for e in counter.encode_batch(texts, add_special_tokens=False)]
    return lambda texts: [
        len(ids) for ids in tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    ]


def load(spec: ModelSpec, settings: Settings) -> SentenceTransformerEmbeddings:
    """Load a sentence-transformers folder (modules.json, weights, tokenizer) on the CPU."""
    folder = Path(spec.local_path(settings.cache_dir))
    if not folder.is_dir():
        raise ModelLoadError(f"model {spec.id}: {folder} is not a sentence-transformers model folder")
    torch.set_num_threads(settings.threads)  # torch takes every core otherwise (process-wide)
    try:
        model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"model {spec.id}: sentence-transformers could not load {folder}: {exc}") from exc
    model.eval()
    return SentenceTransformerEmbeddings(spec, model)
