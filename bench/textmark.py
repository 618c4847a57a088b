"""Text watermark bench: how well the green-list watermark (governance/textmark.py) is detected in
gemma-3-270m text, how often unmarked text is falsely flagged, what light edits do, and what it costs.

    .venv/bin/python bench/textmark.py [--n 20] [--tokens 120] [--threads 1] [--human 200]

Each of --n prompts (plain-text openings: the embedded model is a base model) is continued for
--tokens tokens, sampled at temperature 0.8 (seed = prompt index) and greedy, once without and
once with the watermark (gamma 0.25, delta 2.0, a fixed bench key), interleaved so both share the
machine's load. Every text is scored as `omniforge verify` would: its text re-tokenized with the
model's vocabulary, z >= 4 counting as watermarked. Also scored: the marked texts under a wrong
key; human paragraphs from the READMEs (METADATA) of the installed Python packages; the marked
texts after 10% and 25% of their words were deleted or replaced (half each, seeded); the marked
texts cut to their first 25 / 50 / 100 tokens. Cost: decode ms per token with and without the
watermark, and the bias step alone. Results go to bench/results/textmark.json.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from common import SHARED_CACHE, machine_info  # noqa: E402

from omniforge.backends import llama_cpp as backend  # noqa: E402
from omniforge.catalog.embedded import EMBEDDED  # noqa: E402
from omniforge.config import Settings  # noqa: E402
from omniforge.governance.textmark import TextWatermark  # noqa: E402
from omniforge.types import GenerationParams  # noqa: E402

MODEL = "gemma-3-270m"
BENCH_KEY = b"omniforge bench/textmark.py key"  # fixed, so the numbers can be reproduced
WRONG_KEY = b"some other installation's key"
EDITS = (0.10, 0.25)
PREFIXES = (25, 50, 100)
PER_PACKAGE = 3  # human paragraphs taken from one package's README at most
PROMPTS = [
    "The history of the printing press begins in",
    "To make a simple tomato soup, you will need",
    "Dear Sarah,\n\nThank you for your letter. I wanted to tell you",
    "Once upon a time, in a village at the edge of a great forest,",
    "Photosynthesis is the process by which plants",
    "The city council voted on Tuesday to",
    "Here are five tips for getting a good night's sleep:\n1.",
    "The main difference between a virus and a bacterium is",
    "Our hotel was right next to the old harbour, and every morning",
    "In the final minutes of the match, the home team",
    "To install the software, first download the archive and",
    "The French Revolution changed Europe because",
    "I bought this vacuum cleaner three months ago and",
    "The water cycle describes how water moves",
    "When the spaceship finally landed on the red planet,",
    "A good cover letter should",
    "The museum's new exhibition explores",
    "Volcanoes form when",
    "My grandmother always said that the secret to a happy life was",
    "The committee's report recommends that schools",
    "Machine learning models learn patterns from",
    "The lighthouse keeper climbed the stairs one last time and",
]


def generate(model: backend.LlamaCppModel, prompt: str, params: GenerationParams) -> dict[str, Any]:
    """One completion, timed: decode ms/token from the first delta to the last."""
    start = time.perf_counter()
    first = None
    parts: list[str] = []
    usage = None
    for delta in model.generate(prompt, params):
        if first is None and delta.text:
            first = time.perf_counter()
        parts.append(delta.text)
        usage = delta.usage or usage
    end = time.perf_counter()
    n = usage.completion_tokens if usage else 0
    decode = (end - first) / (n - 1) * 1000 if first is not None and n > 1 else None
    return {"text": "".join(parts), "tokens": n, "total_s": round(end - start, 3),
            "decode_ms_per_token": round(decode, 2) if decode else None}


def human_paragraphs(limit: int) -> list[str]:
    """Prose paragraphs (300-1500 characters, mostly letters, no code or tables) from the installed
    packages' METADATA long descriptions, at most PER_PACKAGE from each, in package-name order."""
    candidates = sorted({p for p in Path(sys.prefix).glob("lib/python*/site-packages/*.dist-info/METADATA")})
    out: list[str] = []
    seen: set[str] = set()
    for meta in candidates:
        body = meta.read_text("utf-8", "replace").split("\n\n", 1)[-1]
        taken = 0
        for para in re.split(r"\n\s*\n", body):
            if taken >= PER_PACKAGE or len(out) >= limit:
                break
            text = " ".join(para.split())
            if not 300 <= len(text) <= 1500 or text in seen:
                continue
            if any(line.lstrip().startswith(("```", "|", ">>>", "..", "$", "#", "*", "-", "+", "<", "[", "pip "))
                   or line.startswith("    ") for line in para.splitlines()):
                continue
            letters = sum(c.isalpha() or c.isspace() for c in text) / len(text)
            if letters < 0.9 or text.count("http") > 1:
                continue
            seen.add(text)
            out.append(text)
            taken += 1
    return out


def edit(text: str, frac: float, rng: random.Random, pool: list[str]) -> str:
    """Delete or replace (half each) `frac` of the words, keeping the whitespace between the rest."""
    parts = re.split(r"(\s+)", text)
    words = [i for i, p in enumerate(parts) if p and not p.isspace()]
    for i in rng.sample(words, round(frac * len(words))):
        parts[i] = "" if rng.random() < 0.5 else rng.choice(pool)
    return re.sub(r"  +", " ", "".join(parts))


def rates(zs: list[float], threshold: float) -> dict[str, Any]:
    if not zs:
        return {"n": 0}
    return {"n": len(zs), "detected": sum(z >= threshold for z in zs),
            "rate": round(sum(z >= threshold for z in zs) / len(zs), 3),
            "mean_z": round(statistics.fmean(zs), 2), "median_z": round(statistics.median(zs), 2),
            "min_z": round(min(zs), 2), "max_z": round(max(zs), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="prompts (at most %d)" % len(PROMPTS))
    ap.add_argument("--tokens", type=int, default=120)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--human", type=int, default=200, help="human paragraphs to score")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "textmark.json")
    args = ap.parse_args()

    settings = Settings(home=SHARED_CACHE, threads=args.threads)
    spec = next(s for s in EMBEDDED if s.id == MODEL)
    model = backend.load(spec, settings)
    mark, wrong = TextWatermark(BENCH_KEY), TextWatermark(WRONG_KEY)
    model.textmark = mark
    threshold = mark.threshold

    def tokens_of(text: str) -> list[int]:
        return model._model().tokenize(text.encode("utf-8"), add_bos=False, special=False)

    # 1. Generations: each prompt, sampled and greedy, unmarked then marked.
    samples: list[dict[str, Any]] = []
    for i, prompt in enumerate(PROMPTS[: args.n]):
        for mode, temperature in (("sampled", 0.8), ("greedy", 0.0)):
            for marked in (False, True):
                params = GenerationParams(max_tokens=args.tokens, temperature=temperature, seed=i,
                                          watermark=marked)
                row = {"prompt": i, "mode": mode, "marked": marked, **generate(model, prompt, params)}
                det = mark.detect(tokens_of(row["text"]))
                row.update(z=round(det.z, 3), green=det.green, scored=det.scored, p_value=det.p_value)
                samples.append(row)
                print(f"{i:2d} {mode:7s} marked={marked!s:5s} tokens={row['tokens']:3d} z={det.z:6.2f} "
                      f"{row['decode_ms_per_token']} ms/tok", flush=True)

    # 2. Scores of the marked texts under a wrong key, after edits, and cut short.
    rng = random.Random(0)
    humans = human_paragraphs(args.human)
    pool = [w for p in humans for w in re.findall(r"[A-Za-z]{3,}", p)] or ["the"]
    marked_rows = [r for r in samples if r["marked"]]
    for r in marked_rows:
        ids = tokens_of(r["text"])
        r["wrong_key_z"] = round(wrong.detect(ids).z, 3)
        r["edited_z"] = {f"{int(f * 100)}%": round(mark.detect(tokens_of(edit(r["text"], f, rng, pool))).z, 3)
                         for f in EDITS}
        r["prefix_z"] = {str(k): round(mark.detect(ids[:k]).z, 3) for k in PREFIXES if len(ids) >= k}
    human_rows = []
    for text in humans:
        det = mark.detect(tokens_of(text))
        human_rows.append({"chars": len(text), "scored": det.scored, "z": round(det.z, 3), "head": text[:80]})

    # 3. The bias step alone: a green list computed (cache miss) and reused (hit).
    import numpy as np

    logits = np.zeros(model._n_vocab, dtype=np.float32)
    probe = TextWatermark(b"timing")
    t = time.perf_counter()
    for prev in range(200):
        probe.bias(logits, prev)
    miss_ms = (time.perf_counter() - t) / 200 * 1000
    t = time.perf_counter()
    for prev in range(200):
        probe.bias(logits, prev)
    hit_ms = (time.perf_counter() - t) / 200 * 1000
    model.close()

    # 4. Summaries.
    def zs(rows: list[dict[str, Any]], key: str = "z") -> list[float]:
        return [r[key] for r in rows]

    summary: dict[str, Any] = {"threshold_z": threshold, "gamma": mark.gamma, "delta": mark.delta}
    for mode in ("sampled", "greedy"):
        m = [r for r in samples if r["mode"] == mode and r["marked"]]
        u = [r for r in samples if r["mode"] == mode and not r["marked"]]
        cost_m = [r["decode_ms_per_token"] for r in m if r["decode_ms_per_token"]]
        cost_u = [r["decode_ms_per_token"] for r in u if r["decode_ms_per_token"]]
        summary[mode] = {
            "marked": rates(zs(m), threshold),
            "unmarked_false_positives": rates(zs(u), threshold),
            "marked_wrong_key": rates(zs(m, "wrong_key_z"), threshold),
            **{f"marked_edited_{k}": rates([r["edited_z"][k] for r in m], threshold)
               for k in (f"{int(f * 100)}%" for f in EDITS)},
            **{f"marked_first_{k}_tokens": rates([r["prefix_z"][str(k)] for r in m if str(k) in r["prefix_z"]],
                                                 threshold) for k in PREFIXES},
            "mean_completion_tokens": {"marked": round(statistics.fmean(r["tokens"] for r in m), 1),
                                       "unmarked": round(statistics.fmean(r["tokens"] for r in u), 1)},
            "mean_scored_pairs": {"marked": round(statistics.fmean(r["scored"] for r in m), 1),
                                  "unmarked": round(statistics.fmean(r["scored"] for r in u), 1)},
            "decode_ms_per_token": {"marked_median": round(statistics.median(cost_m), 2),
                                    "unmarked_median": round(statistics.median(cost_u), 2)},
        }
    summary["human_false_positives"] = rates(zs(human_rows), threshold)
    summary["human_mean_scored"] = round(statistics.fmean(r["scored"] for r in human_rows), 1) if human_rows else 0
    summary["bias_ms"] = {"green_list_computed": round(miss_ms, 3), "green_list_cached": round(hit_ms, 3)}

    result = {"model": MODEL, "tokens": args.tokens, "prompts": args.n, "machine": machine_info(args.threads),
              "summary": summary, "samples": samples, "human": human_rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
