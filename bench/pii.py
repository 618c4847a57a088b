"""PII bench: recall, precision and F1 of the PII guard on a built labelled set, and what it costs.

    .venv/bin/python bench/pii.py [--n 500] [--seed 2026] [--threshold 0.4] [--out FILE]

The set comes from omniforge.evals.pii.build_labelled_set (Faker values in gazetteer and held-out
locales, negative texts full of look-alikes); the default seed is not the one the recognizers were
tuned on (0). Results go to bench/results/pii.json: per entity, per template family ("fresh" and
"fresh_negative" were written after tuning and never tuned on), names and addresses from the
gazetteer's locales vs held-out ones, ms per text, and the seconds to import and build the engine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from omniforge.evals import pii as pii_eval  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pii.json")
    args = ap.parse_args()

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    from omniforge.governance import pii

    import_seconds = time.perf_counter() - started  # the module alone: presidio is imported on first use
    threshold = pii.DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    result = pii_eval.run_pii_eval(args.n, args.seed, threshold=threshold)
    result["import_seconds"] = round(import_seconds, 2)
    result["threshold_sweep"] = _sweep(args.n, args.seed)
    result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                         "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
                         "versions": _versions()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(pii_eval.table(result))
    print(f"\ncharacters covered {result['characters_covered']}, negative texts flagged "
          f"{result['negative_texts_flagged']['flagged']}/{result['negative_texts_flagged']['texts']}, "
          f"{result['ms_per_text']} ms/text, engine build {result['engine_build_seconds']} s "
          f"({result['engine_import_seconds']} s of imports) "
          f"(load {load_before:.1f}) -> {args.out}")
    for threshold, r in result["threshold_sweep"].items():
        print(f"threshold {threshold}: recall {r['overall']['recall']}, precision {r['overall']['precision']}, "
              f"PERSON recall {r['PERSON']['recall']} precision {r['PERSON']['precision']}, "
              f"negative texts flagged {r['negative_texts_flagged']['flagged']}")


def _sweep(n: int, seed: int) -> dict[str, dict]:
    """Overall and PERSON recall/precision at a few thresholds: what raising it buys."""
    from omniforge.governance import pii

    items = pii_eval.build_labelled_set(n, seed)
    out = {}
    for threshold in (0.4, 0.5, 0.6, 0.8):
        r = pii_eval.score(pii.PiiGuard(threshold=threshold), items, examples=0)
        out[str(threshold)] = {"overall": r["overall"], "PERSON": r["per_entity"]["PERSON"],
                               "PERSON/unseen": r["groups"].get("PERSON/unseen"),
                               "negative_texts_flagged": r["negative_texts_flagged"]}
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("presidio-analyzer", "presidio-anonymizer", "spacy", "faker", "phonenumbers", "tldextract"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


if __name__ == "__main__":
    main()
