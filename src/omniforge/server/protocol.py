"""Pydantic mirrors of the OpenAI request and response bodies omniforge serves.

Fields follow the order of OpenAI's API reference. Requests ignore fields they do not know, as
OpenAI does, but reject wrong types (strict mode: "5" is not an integer, 1 is not a string), so
a client bug shows up as a clear 400 instead of a silent coercion. Request fields that omniforge
accepts but cannot honour are declared too, so the routes can refuse them by name.

This module knows nothing about models or the service layer; the routes translate between these
shapes and omniforge.types.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)


class ResponseModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- shared ----------------------------------------------------------------------------------
class StreamOptions(RequestModel):
    include_usage: bool | None = None


class CostFields(ResponseModel):
    """What omniforge adds to OpenAI's usage: the request's measured cost on this machine."""

    cost: float | None = None  # USD
    compute_seconds: float | None = None
    energy_wh: float | None = None


class CompletionUsage(CostFields):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


# -- models ----------------------------------------------------------------------------------
class Model(ResponseModel):
    model_config = ConfigDict(extra="allow")  # omniforge adds modality, license, loaded, ...

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "omniforge"


class ModelList(ResponseModel):
    object: Literal["list"] = "list"
    data: list[Model]


# -- chat ------------------------------------------------------------------------------------
class ChatMessage(RequestModel):
    role: str
    # A string, a list of content parts ({"type": "text", "text": ...}, image_url, input_audio,
    # file) or null (an assistant turn that only called tools).
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class JSONSchemaFormat(RequestModel):
    name: str
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(RequestModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class ChatCompletionRequest(RequestModel):
    messages: list[ChatMessage]
    model: str | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    max_completion_tokens: int | None = None
    max_tokens: int | None = None
    n: int | None = None
    presence_penalty: float | None = None
    response_format: ResponseFormat | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    tool_choice: str | dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    top_logprobs: int | None = None
    top_p: float | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None  # model "auto": language, quality, task for the router
    modalities: list[str] | None = None
    audio: AudioOutput | None = None
    watermark: bool | None = None  # omniforge: green-list text watermark (extra_body={"watermark": True})


class AssistantMessage(ResponseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    audio: dict[str, Any] | None = None


class ChatChoice(ResponseModel):
    index: int
    message: AssistantMessage
    logprobs: None = None
    finish_reason: str


class ChatCompletion(ResponseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChatChoice]
    usage: CompletionUsage


# -- completions -----------------------------------------------------------------------------
class CompletionRequest(RequestModel):
    model: str | None = None
    prompt: str | list[str] | list[int] | list[list[int]]
    best_of: int | None = None
    echo: bool | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: int | None = None
    max_tokens: int | None = 16  # OpenAI's default for legacy completions
    n: int | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    suffix: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None  # model "auto": language, quality, task for the router
    watermark: bool | None = None  # omniforge: green-list text watermark (extra_body={"watermark": True})


class CompletionChoice(ResponseModel):
    text: str
    index: int
    logprobs: None = None
    finish_reason: str


class Completion(ResponseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[CompletionChoice]
    usage: CompletionUsage


# -- embeddings ------------------------------------------------------------------------------
class EmbeddingRequest(RequestModel):
    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = None
    user: str | None = None


class Embedding(ResponseModel):
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | str  # base64 of little-endian float32 when asked for
    index: int


class EmbeddingUsage(CostFields):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(ResponseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


# -- audio -----------------------------------------------------------------------------------
class VoiceId(RequestModel):
    id: str


class SpeechRequest(RequestModel):
    model: str | None = None
    input: str
    voice: str | VoiceId | None = None
    instructions: str | None = None  # accepted and ignored: Piper voices take no instructions
    response_format: str | None = None
    speed: float | None = None
    stream_format: Literal["audio", "sse"] | None = None


TRANSCRIPTION_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
TIMESTAMP_GRANULARITIES = ("word", "segment")


# -- images ----------------------------------------------------------------------------------
class ImageGenerationRequest(RequestModel):
    prompt: str
    model: str | None = None
    n: int | None = None
    quality: str | None = None
    response_format: str | None = None
    output_format: str | None = None
    size: str | None = None
    style: str | None = None  # accepted and ignored (dall-e-3's vivid / natural)
    background: str | None = None  # opaque or auto; transparent is refused
    stream: bool | None = None  # refused when true: no partial images
    user: str | None = None
    # omniforge's own options (openai client: extra_body)
    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = None


# -- chat audio output -----------------------------------------------------------------------
class AudioOutput(RequestModel):
    voice: str | dict[str, Any] | None = None
    format: str | None = None


# -- pipelines -------------------------------------------------------------------------------
class PipelineRunRequest(RequestModel):
    # Input name -> value: text, a number, or a base64 data: URL for audio, image and documents.
    inputs: dict[str, Any] | None = None
