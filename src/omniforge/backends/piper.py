"""Piper speech synthesis: a Piper ONNX voice (.onnx with its .onnx.json beside it) as a SpeechModel.

The text is split into sentences and phonemized (espeak-ng) up front, so bad input fails before
any audio is promised; each sentence is then synthesized and yielded as soon as it is ready.
This module knows nothing about audio formats: it yields int16 samples at the voice's rate.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime
from piper import PiperVoice
from piper.config import PiperConfig, SynthesisConfig

from ..errors import InvalidRequestError, ModelLoadError
from .base import SpeechModel

if TYPE_CHECKING:
    from ..catalog.spec import ModelSpec
    from ..config import Settings

MIN_SPEED, MAX_SPEED = 0.25, 4.0  # OpenAI's range for `speed`
_INT16_MAX = 32767.0


class PiperSpeech(SpeechModel):
    """One Piper voice. The ONNX session runs on `threads` CPU threads; `speed` scales the
    phoneme lengths (length_scale = the voice's own length_scale / speed)."""

    def __init__(self, spec: ModelSpec, voice: PiperVoice) -> None:
        super().__init__(spec)
        self._voice: PiperVoice | None = voice
        self.sample_rate = voice.config.sample_rate

    @property
    def voice(self) -> PiperVoice:
        if self._voice is None:
            raise ModelLoadError(f"model {self.spec.id} was unloaded")
        return self._voice

    def synthesize(self, text: str, speed: float = 1.0) -> Iterator[np.ndarray]:
        """Check the input and phonemize now; return an iterator that synthesizes one sentence
        per step, yielding mono int16 samples at `sample_rate`."""
        if not text or not text.strip():
            raise InvalidRequestError("input must be non-empty text to speak", param="input")
        if not MIN_SPEED <= speed <= MAX_SPEED:
            raise InvalidRequestError(f"speed must be between {MIN_SPEED} and {MAX_SPEED}, not {speed}", param="speed")
        voice = self.voice
        sentences = [p for p in voice.phonemize(text) if p]
        if not sentences:
            raise InvalidRequestError("input has nothing speakable in it (no words)", param="input")
        return self._sentences(voice, sentences, voice.config.length_scale / speed)

    @staticmethod
    def _sentences(voice: PiperVoice, sentences: list[list[str]], length_scale: float) -> Iterator[np.ndarray]:
        config = SynthesisConfig(length_scale=length_scale)
        for phonemes in sentences:
            audio = np.asarray(voice.phoneme_ids_to_audio(voice.phonemes_to_ids(phonemes), config), dtype=np.float32)
            peak = float(np.max(np.abs(audio))) if audio.size else 0.0
            if peak > 1e-8:  # Piper's own default (normalize_audio): each sentence peaks at full scale
                audio = audio / peak
            yield (np.clip(audio.reshape(-1), -1.0, 1.0) * _INT16_MAX).astype(np.int16)

    def close(self) -> None:
        self._voice = None


def load(spec: ModelSpec, settings: Settings) -> PiperSpeech:
    """Load a Piper voice: `spec.local_path()` is the .onnx file, its config is `<file>.json`."""
    model_path = Path(spec.local_path(settings.cache_dir))
    config_path = model_path.with_name(model_path.name + ".json")
    for path in (model_path, config_path):
        if not path.is_file():
            raise ModelLoadError(f"model {spec.id}: Piper voice file {path} is missing")
    try:
        config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
    except (ValueError, KeyError) as exc:
        raise ModelLoadError(f"model {spec.id}: {config_path} is not a valid Piper voice config: {exc}") from exc
    # PiperVoice.load() builds its session with default options, which take every core: build
    # the session here instead, with the thread count omniforge was given.
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = 1
    try:
        session = onnxruntime.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable models
        raise ModelLoadError(f"model {spec.id}: onnxruntime could not load {model_path}: {exc}") from exc
    voice = PiperVoice(session=session, config=config, download_dir=Path(settings.cache_dir) / "piper")
    return PiperSpeech(spec, voice)
