"""Audio bench: Piper synthesis and faster-whisper transcription, in-process vs the omniforge server."""

from __future__ import annotations

import json
import re
import struct
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from common import SETTLE_S, interleave, loadavg, summary
from openai import OpenAI

SPEECH_MODEL = "piper-en-us-joe"
TRANSCRIPTION_MODEL = "whisper-tiny.en"
PCM_RATE = 24_000  # OpenAI's (and omniforge's) "pcm": 16-bit mono at 24 kHz
SPEECH_TEXT = (
    "Welcome to the weekly update. The new warehouse opened on Monday, and the first deliveries "
    "arrived on time. Please remember to submit your travel requests before the end of the month."
)
# About twenty-five seconds of speech for the round trip; words only, no digits (no "25" vs
# "twenty five" argument in the word error rate).
ROUNDTRIP_TEXT = (
    "Good morning everyone, and thank you for joining the quarterly planning meeting. "
    "Today we will review the progress of the customer portal, discuss the budget for the "
    "coming season, and agree on the priorities for the support team. "
    "The portal now handles most account changes without a phone call, and the number of "
    "complaints has fallen steadily since the spring. "
    "We still need better search, clearer invoices, and a faster way to reset passwords. "
    "Please send your questions to the project office before Friday, so that we can answer "
    "them at the next meeting."
)


# -- Piper -----------------------------------------------------------------------------------
def load_piper(model_path: Path, threads: int) -> Any:
    """A PiperVoice whose ONNX session uses `threads` (PiperVoice.load would take every core)."""
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    config = PiperConfig.from_dict(json.loads(Path(str(model_path) + ".json").read_text(encoding="utf-8")))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=config)


def piper_samples(voice: Any, text: str) -> tuple[np.ndarray, float]:
    """(int16 samples, seconds to first sentence) from voice.synthesize()."""
    t0 = time.perf_counter()
    first = 0.0
    parts = []
    for chunk in voice.synthesize(text):
        if not parts:
            first = time.perf_counter() - t0
        parts.append(chunk.audio_int16_array)
    return np.concatenate(parts), first


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


def wav_seconds(data: bytes) -> float:
    """Duration of 16-bit WAV bytes, walking the chunks (a streamed header says 0xFFFFFFFF)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a WAV stream")
    pos, rate, channels, width = 12, 0, 1, 2
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if cid == b"fmt ":
            channels, rate = struct.unpack("<HI", data[pos + 10 : pos + 16])
            width = struct.unpack("<H", data[pos + 22 : pos + 24])[0] // 8
        elif cid == b"data":
            return (len(data) - pos - 8) / (rate * channels * width)
        pos += 8 + size
    raise ValueError("WAV stream has no data chunk")


def speech_direct(voice: Any, text: str) -> dict[str, float]:
    t0 = time.perf_counter()
    samples, first = piper_samples(voice, text)
    elapsed = time.perf_counter() - t0
    audio_s = len(samples) / voice.config.sample_rate
    return {"rtf": elapsed / audio_s, "first_audio_ms": first * 1e3, "elapsed_s": elapsed, "audio_s": audio_s}


def speech_server(oai: OpenAI, text: str, fmt: str) -> dict[str, float]:
    """/v1/audio/speech streamed; first_audio_ms: first byte after the (WAV) header."""
    t0 = time.perf_counter()
    first = 0.0
    buf = bytearray()
    with oai.audio.speech.with_streaming_response.create(
        model=SPEECH_MODEL,
        voice="alloy",
        input=text,
        response_format=fmt,  # type: ignore[arg-type]
    ) as resp:
        for piece in resp.iter_bytes():
            buf += piece
            if not first and len(buf) > (44 if fmt == "wav" else 0):
                first = time.perf_counter() - t0
    elapsed = time.perf_counter() - t0
    audio_s = wav_seconds(bytes(buf)) if fmt == "wav" else len(buf) / (2 * PCM_RATE)
    return {"rtf": elapsed / audio_s, "first_audio_ms": first * 1e3, "elapsed_s": elapsed, "audio_s": audio_s}


# -- faster-whisper --------------------------------------------------------------------------
def load_whisper(folder: Path, threads: int) -> Any:
    """The same construction as omniforge's backend: CPU, int8, `threads`, one worker."""
    from faster_whisper import WhisperModel

    return WhisperModel(
        str(folder), device="cpu", compute_type="int8", cpu_threads=threads, num_workers=1, local_files_only=True
    )


def transcribe_direct(model: Any, wav: Path) -> dict[str, Any]:
    """The file path goes in, so faster-whisper decodes and resamples it, as the server must.
    Beam size: whatever omniforge's backend uses, read from it so the two never drift apart."""
    from omniforge.backends.faster_whisper import BEAM_SIZE

    t0 = time.perf_counter()
    segments, info = model.transcribe(str(wav), beam_size=BEAM_SIZE, vad_filter=False)
    text = "".join(s.text for s in segments).strip()  # segments are lazy: decoding happens here
    elapsed = time.perf_counter() - t0
    return {"rtf": elapsed / info.duration, "elapsed_s": elapsed, "audio_s": info.duration, "text": text}


def transcribe_server(oai: OpenAI, wav: Path, audio_s: float) -> dict[str, Any]:
    data = wav.read_bytes()
    t0 = time.perf_counter()
    out = oai.audio.transcriptions.create(
        model=TRANSCRIPTION_MODEL, file=(wav.name, data, "audio/wav"), response_format="json"
    )
    elapsed = time.perf_counter() - t0
    return {"rtf": elapsed / audio_s, "elapsed_s": elapsed, "audio_s": audio_s, "text": out.text}


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower().replace("-", " ")).split())


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    return float(jiwer.wer(normalize(reference), normalize(hypothesis)))


# -- interleaved repeats ---------------------------------------------------------------------
def _repeat(
    variants: dict[str, Callable[[], dict[str, Any]]],
    repeats: int,
    log: Callable[[str], None],
) -> dict[str, list[dict[str, Any]]]:
    for name, fn in variants.items():
        log(f"  warm-up {name}")
        fn()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for i, name in interleave(list(variants), repeats):
        time.sleep(SETTLE_S)
        runs[name].append(variants[name]())
        r = runs[name][-1]
        log(
            f"  [{i + 1}/{repeats}] {name:<32} RTF {r['rtf']:.3f}  ({r['elapsed_s']:.2f} s for {r['audio_s']:.1f} s audio)"
        )
    return runs


def _summarize(runs: dict[str, list[dict[str, Any]]], keys: tuple[str, ...]) -> dict[str, Any]:
    return {name: {k: summary([r[k] for r in rs]) for k in keys} | {"runs": rs} for name, rs in runs.items()}


def bench_speech(cfg: dict[str, Any], oai: OpenAI, model_path: Path, log: Callable[[str], None]) -> dict:
    voice = load_piper(model_path, cfg["threads"])
    variants = {
        "direct piper": lambda: speech_direct(voice, SPEECH_TEXT),
        "omniforge wav": lambda: speech_server(oai, SPEECH_TEXT, "wav"),
        "omniforge pcm": lambda: speech_server(oai, SPEECH_TEXT, "pcm"),
    }
    log(f"speech: {len(variants)} variants x {cfg['audio_repeats']} repeats")
    before = loadavg()
    out = _summarize(_repeat(variants, cfg["audio_repeats"], log), ("rtf", "first_audio_ms", "elapsed_s", "audio_s"))
    base = out["direct piper"]["rtf"]["median"]
    ratios = {name: out[name]["rtf"]["median"] / base for name in variants if name != "direct piper"}
    return {
        "loadavg_before": before,
        "text": SPEECH_TEXT,
        "variants": out,
        "rtf_vs_direct": ratios,
        "loadavg_after": loadavg(),
    }


def bench_transcription(
    cfg: dict[str, Any], oai: OpenAI, piper_path: Path, whisper_path: Path, workdir: Path, log: Callable[[str], None]
) -> dict:
    # 1. The clip: synthesized once by Piper, 16-bit WAV at the voice's rate.
    voice = load_piper(piper_path, cfg["threads"])
    samples, _ = piper_samples(voice, ROUNDTRIP_TEXT)
    wav = workdir / "roundtrip.wav"
    write_wav(wav, samples, voice.config.sample_rate)
    audio_s = len(samples) / voice.config.sample_rate
    del voice
    log(f"transcription: clip {audio_s:.1f} s at {wav}")
    # 2. Direct faster-whisper vs the server, interleaved.
    model = load_whisper(whisper_path, cfg["threads"])
    variants = {
        "direct faster-whisper": lambda: transcribe_direct(model, wav),
        "omniforge transcriptions": lambda: transcribe_server(oai, wav, audio_s),
    }
    before = loadavg()
    runs = _repeat(variants, cfg["audio_repeats"], log)
    out = _summarize(runs, ("rtf", "elapsed_s"))
    # 3. Word error rate of the round trip (Piper -> Whisper) per variant, last run's text.
    for name, rs in runs.items():
        out[name]["text"] = rs[-1]["text"]
        out[name]["wer"] = wer(ROUNDTRIP_TEXT, rs[-1]["text"])
    base = out["direct faster-whisper"]["rtf"]["median"]
    from omniforge.backends.faster_whisper import BEAM_SIZE

    return {
        "loadavg_before": before,
        "reference": ROUNDTRIP_TEXT,
        "audio_s": audio_s,
        "beam_size": BEAM_SIZE,
        "variants": out,
        "rtf_vs_direct": {"omniforge transcriptions": out["omniforge transcriptions"]["rtf"]["median"] / base},
        "loadavg_after": loadavg(),
    }
