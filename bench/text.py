"""Text bench: gemma-3-270m streamed in-process, through omniforge and through llama_cpp.server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common import SETTLE_S, interleave, loadavg, summary
from openai import OpenAI

MODEL = "gemma-3-270m"
N_BATCH = 512  # what omniforge's llama.cpp backend uses
# Distinct openings, one per repeat (the same for every variant at that repeat): each run
# pays the full prompt prefill instead of reusing the KV cache of the previous run.
PROMPTS = [
    "The history of the printing press is a story of many inventors. In this essay we follow it from",
    "Growing tomatoes at home takes patience, sunlight and good soil. Here is a step by step guide that",
    "A lighthouse keeper on a remote island kept a diary for forty years. The first entry reads as follows:",
    "Rivers shape the land they cross. Over thousands of years a river valley changes because",
    "To bake a simple loaf of bread you need flour, water, salt and yeast. First, mix the",
    "The city council met on Tuesday evening to discuss the new library. Several residents spoke about",
    "Every good software project begins with a clear plan. The plan should describe what the program",
    "Bees are among the most important animals on the farm. They carry pollen from flower to flower and",
    "Sailing across the ocean in a small boat requires careful preparation. The crew must check the",
    "The old clockmaker opened his shop at dawn, as he had done every morning since he was a boy, and",
]
CHAT_PREFIX = "Write a long, detailed essay that continues this text: "
SAMPLING = {"temperature": 0.0, "top_p": 1.0}  # greedy: the same tokens on every path


@dataclass
class Run:
    """One streamed completion: times in seconds from sending the request."""

    ttft: float  # first chunk carrying text
    total: float  # the chunk with finish_reason: the last token is out (held-back stop text too)
    tokens: int  # completion tokens (usage when the server reports it, else text chunks)
    chunks: int  # chunks carrying text

    @property
    def decode_tps(self) -> float | None:
        """Tokens per second after the first token (what the engine sustains); None for a
        stream too short to tell (a chat answer that ended at once)."""
        span = self.total - self.ttft
        return (self.tokens - 1) / span if self.tokens > 2 and span > 0 else None

    @property
    def e2e_tps(self) -> float:
        return self.tokens / self.total if self.total > 0 else 0.0


# -- the three ways to stream a completion ---------------------------------------------------
def load_direct(model_path: Path, threads: int, n_ctx: int) -> Any:
    import llama_cpp

    return llama_cpp.Llama(
        model_path=str(model_path),
        n_ctx=n_ctx,
        n_batch=min(N_BATCH, n_ctx),
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )


def run_direct(llm: Any, prompt: str, max_tokens: int) -> Run:
    """llama_cpp.Llama.create_completion(stream=True): one chunk per generated token."""
    t0 = time.perf_counter()
    first = last = 0.0
    chunks = 0
    stream = llm.create_completion(prompt, max_tokens=max_tokens, stream=True, repeat_penalty=1.0, **SAMPLING)
    for chunk in stream:
        now = time.perf_counter()
        choice = chunk["choices"][0]
        if choice["text"]:
            if not chunks:
                first = now
            chunks += 1
        if choice["finish_reason"] is not None or choice["text"]:
            last = now
    if not chunks:  # no text at all (an immediate end of turn): both times are the end
        first = last = time.perf_counter()
    return Run(first - t0, last - t0, chunks, chunks)


def client(base_url: str) -> OpenAI:
    return OpenAI(base_url=base_url + "/v1", api_key="bench", max_retries=0, timeout=600.0)


def run_openai(oai: OpenAI, endpoint: str, prompt: str, max_tokens: int, extra: dict[str, Any] | None = None) -> Run:
    """One stream through the official openai client; tokens from usage (include_usage)."""
    common = {
        "model": MODEL,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "extra_body": extra,
        **SAMPLING,
    }
    t0 = time.perf_counter()
    if endpoint == "completions":
        stream = oai.completions.create(prompt=prompt, **common)
    else:
        stream = oai.chat.completions.create(messages=[{"role": "user", "content": CHAT_PREFIX + prompt}], **common)
    first = last = 0.0
    chunks = 0
    usage = None
    for chunk in stream:
        now = time.perf_counter()
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        text = choice.text if endpoint == "completions" else choice.delta.content
        if text:
            if not chunks:
                first = now
            chunks += 1
        if text or choice.finish_reason is not None:
            last = now
    if not chunks:
        first = last = time.perf_counter()
    return Run(first - t0, last - t0, usage if usage is not None else chunks, chunks)


# -- single stream, interleaved --------------------------------------------------------------
def single_stream(variants: dict[str, Callable[[str], Run]], repeats: int, log: Callable[[str], None]) -> dict:
    """Every variant once per repeat (rotated order, same prompt within a repeat), after one
    untimed warm-up each (model load, first-call allocations)."""
    for name, fn in variants.items():
        log(f"  warm-up {name}")
        fn(PROMPTS[-1])
    runs: dict[str, list[Run]] = {name: [] for name in variants}
    for i, name in interleave(list(variants), repeats):
        time.sleep(SETTLE_S)
        runs[name].append(variants[name](PROMPTS[i % len(PROMPTS)]))
        r = runs[name][-1]
        log(
            f"  [{i + 1}/{repeats}] {name:<30} ttft {r.ttft * 1e3:7.1f} ms  decode {r.decode_tps or 0:6.1f} tok/s  {r.tokens} tok"
        )
    out = {}
    for name, rs in runs.items():
        out[name] = {
            "decode_tps": summary([r.decode_tps for r in rs if r.decode_tps is not None]),
            "ttft_ms": summary([r.ttft * 1e3 for r in rs]),
            "e2e_tps": summary([r.e2e_tps for r in rs]),
            "tokens": summary([r.tokens for r in rs]),
            "runs": [asdict(r) | {"decode_tps": r.decode_tps} for r in rs],
        }
    return out


def paired(out: dict, name: str, base: str) -> dict[str, float]:
    """Ratios against `base` from runs paired by repeat (same prompt, adjacent in time)."""
    a, b = out[name]["runs"], out[base]["runs"]
    ratios = [
        x["decode_tps"] / y["decode_tps"] for x, y in zip(a, b, strict=True) if x["decode_tps"] and y["decode_tps"]
    ]
    added = [(x["ttft"] - y["ttft"]) * 1e3 for x, y in zip(a, b, strict=True)]
    return {
        "throughput_pct": summary([100 * r for r in ratios]),
        "added_ttft_ms": summary(added),
        "throughput_pct_of_medians": 100 * out[name]["decode_tps"].get("median", 0) / out[base]["decode_tps"]["median"],
        "added_ttft_ms_of_medians": out[name]["ttft_ms"]["median"] - out[base]["ttft_ms"]["median"],
    }


# -- concurrent streams ----------------------------------------------------------------------
def concurrent(base_url: str, streams: int, max_tokens: int, extra: dict[str, Any] | None) -> dict[str, float]:
    """`streams` threads, each with its own client, start together; aggregate = all completion
    tokens / wall time until the last stream ends."""
    clients = [client(base_url) for _ in range(streams)]
    barrier = threading.Barrier(streams + 1)
    results: list[Run | Exception] = [RuntimeError("not run")] * streams

    def worker(k: int) -> None:
        barrier.wait()
        try:
            results[k] = run_openai(clients[k], "completions", PROMPTS[k % len(PROMPTS)], max_tokens, extra)
        except Exception as exc:  # noqa: BLE001  (reported below, with the others' numbers)
            results[k] = exc

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(streams)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for c in clients:
        c.close()
    errors = [r for r in results if isinstance(r, Exception)]
    if errors:
        raise RuntimeError(f"{len(errors)} of {streams} streams failed: {errors[0]!r}")
    runs = [r for r in results if isinstance(r, Run)]
    tokens = sum(r.tokens for r in runs)
    return {
        "aggregate_tps": tokens / wall,
        "wall_s": wall,
        "tokens": tokens,
        "ttft_ms_median": summary([r.ttft * 1e3 for r in runs])["median"],
        "ttft_ms_max": max(r.ttft for r in runs) * 1e3,
    }


def concurrency(
    servers: dict[str, tuple[str, dict | None]],
    levels: list[int],
    repeats: int,
    max_tokens: int,
    log: Callable[[str], None],
) -> dict:
    out: dict[str, dict[str, Any]] = {name: {} for name in servers}
    for n in levels:
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        for i, name in interleave(list(servers), repeats):
            time.sleep(SETTLE_S)
            url, extra = servers[name]
            samples[name].append(concurrent(url, n, max_tokens, extra))
            s = samples[name][-1]
            log(
                f"  [{i + 1}/{repeats}] {name:<18} {n} streams: {s['aggregate_tps']:6.1f} tok/s aggregate, "
                f"{s['tokens']} tok in {s['wall_s']:.1f} s"
            )
        for name, ss in samples.items():
            out[name][str(n)] = {
                "aggregate_tps": summary([s["aggregate_tps"] for s in ss]),
                "ttft_ms_median": summary([s["ttft_ms_median"] for s in ss]),
                "ttft_ms_max": summary([s["ttft_ms_max"] for s in ss]),
                "samples": ss,
            }
    return out


def bench_text(
    cfg: dict[str, Any],
    omniforge_url: str,
    lcs_url: str | None,
    model_path: Path,
    n_ctx: int,
    log: Callable[[str], None],
) -> dict:
    """Single-stream variants side by side, then aggregate throughput at each concurrency."""
    max_tokens, repeats, threads = cfg["max_tokens"], cfg["repeats"], cfg["threads"]
    llm = load_direct(model_path, threads, n_ctx)
    of = client(omniforge_url)
    lcs_extra = {"repeat_penalty": 1.0}  # llama_cpp.server's request default is 1.1; the others use 1.0
    variants: dict[str, Callable[[str], Run]] = {
        "direct": lambda p: run_direct(llm, p, max_tokens),
        "omniforge completions": lambda p: run_openai(of, "completions", p, max_tokens),
        "omniforge chat": lambda p: run_openai(of, "chat", p, max_tokens),
    }
    if lcs_url:
        lcs = client(lcs_url)
        variants["llama_cpp.server completions"] = lambda p: run_openai(lcs, "completions", p, max_tokens, lcs_extra)
        variants["llama_cpp.server chat"] = lambda p: run_openai(lcs, "chat", p, max_tokens, lcs_extra)
    log(f"text: {len(variants)} variants x {repeats} repeats, max_tokens {max_tokens}, threads {threads}")
    result: dict[str, Any] = {"loadavg_before": loadavg(), "max_tokens": max_tokens, "repeats": repeats, "n_ctx": n_ctx}
    result["single"] = single_stream(variants, repeats, log)
    result["ratios"] = {name: paired(result["single"], name, "direct") for name in variants if name != "direct"}
    llm.close()  # its memory and threads are not needed for the concurrency runs
    servers: dict[str, tuple[str, dict | None]] = {"omniforge": (omniforge_url, None)}
    if lcs_url:
        servers["llama_cpp.server"] = (lcs_url, lcs_extra)
    levels = cfg["concurrency"]
    log(
        f"text concurrency: {levels} streams x {cfg['concurrency_repeats']} repeats, max_tokens {cfg['concurrency_max_tokens']}"
    )
    result["concurrency"] = concurrency(servers, levels, cfg["concurrency_repeats"], cfg["concurrency_max_tokens"], log)
    result["loadavg_after"] = loadavg()
    return result
