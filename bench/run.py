"""omniforge vs its engines and peers, side by side in one run: `python bench/run.py [--quick] [--only X]`."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))  # the omniforge under bench/ wins over an installed one

import common
from report import report

SECTIONS = ("text", "speech", "transcription", "image")
MODES = {  # repeats per variant and sizes; quick is a smoke test, not a measurement
    "quick": {
        "max_tokens": 32,
        "repeats": 2,
        "concurrency": [1, 4, 8],
        "concurrency_repeats": 1,
        "concurrency_max_tokens": 16,
        "audio_repeats": 2,
        "image_repeats": 2,
        "image_batch_repeats": 1,
    },
    "full": {
        "max_tokens": 128,
        "repeats": 9,
        "concurrency": [1, 4, 8],
        "concurrency_repeats": 2,
        "concurrency_max_tokens": 64,
        "audio_repeats": 5,
        "image_repeats": 7,
        "image_batch_repeats": 3,
    },
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer repeats and tokens (a smoke test, ~2 minutes)")
    p.add_argument("--only", choices=SECTIONS, action="append", help="run only this section (repeatable)")
    p.add_argument("--threads", type=int, help="engine threads for every variant (default: omniforge's setting)")
    p.add_argument("--no-llama-cpp-server", action="store_true", help="skip the llama_cpp.server peer")
    p.add_argument("--name", help="results file name under bench/results/ (default: <date>-<mode>)")
    return p.parse_args(argv)


def find_spec(model_id: str) -> Any:
    from omniforge.catalog import EMBEDDED

    return next(s for s in EMBEDDED if s.id == model_id)


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through `finally`, which stops the server subprocesses


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    mode = "quick" if args.quick else "full"
    sections = args.only or list(SECTIONS)

    import audio
    import image
    import text

    from omniforge.backends.llama_cpp import DEFAULT_MAX_CONTEXT
    from omniforge.config import load_settings

    # 1. One temporary home for the omniforge server (the shared model cache linked in) and
    #    the same thread count for every variant.
    home = common.prepare_home(Path(tempfile.mkdtemp(prefix="omniforge-bench-")))
    settings = load_settings(home=home)
    threads = args.threads or settings.threads
    server = common.omniforge_server(home, threads)
    cfg = MODES[mode] | {"threads": threads}
    info = common.machine_info(threads)
    results: dict[str, Any] = {"mode": mode, "config": cfg, "machine": info, "sections": {}}
    log(f"bench ({mode}): {', '.join(sections)}; threads {threads}; load {info['loadavg_start']}; home {home}")

    lcs = None
    started = time.perf_counter()
    try:
        # 2. The servers: omniforge always; llama_cpp.server for the text section.
        log("starting omniforge server ...")
        server.start()
        oai = text.client(server.base_url)
        if "text" in sections:
            gguf = find_spec("gemma-3-270m").local_path(settings.cache_dir)
            n_ctx = DEFAULT_MAX_CONTEXT  # what omniforge's backend gives gemma (trained context 32k, capped)
            lcs_url = None
            if not args.no_llama_cpp_server:
                lcs = common.llama_cpp_server(gguf, threads, n_ctx, text.N_BATCH, home)
                try:
                    log("starting llama_cpp.server ...")
                    lcs_url = lcs.start().base_url
                except RuntimeError as exc:
                    log(f"llama_cpp.server unavailable, skipped: {exc}")
                    results["llama_cpp_server_error"] = str(exc)
                    lcs = None
            results["sections"]["text"] = text.bench_text(cfg, server.base_url, lcs_url, gguf, n_ctx, log)
            if lcs is not None:
                lcs.stop()  # frees its memory and threads before the audio sections
                lcs = None
        if "speech" in sections:
            piper = find_spec("piper-en-us-joe").local_path(settings.cache_dir)
            results["sections"]["speech"] = audio.bench_speech(cfg, oai, piper, log)
        if "transcription" in sections:
            piper = find_spec("piper-en-us-joe").local_path(settings.cache_dir)
            whisper = find_spec("whisper-tiny.en").local_path(settings.cache_dir)
            results["sections"]["transcription"] = audio.bench_transcription(cfg, oai, piper, whisper, home, log)
        if "image" in sections:
            weights = find_spec("house-image").local_path(settings.cache_dir)  # the package's weights folder
            results["sections"]["image"] = image.bench_image(cfg, oai, weights, log)
    except BaseException:
        log(f"bench failed; server logs kept in {home}")
        raise
    finally:
        if lcs is not None:
            lcs.stop()
        server.stop()
    info["loadavg_end"] = common.loadavg()
    info["wall_s"] = round(time.perf_counter() - started, 1)

    # 3. The record and the table.
    name = args.name or f"{time.strftime('%Y%m%d-%H%M%S')}-{mode}"
    out = HERE / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(home, ignore_errors=True)
    print(report(results))
    print(f"\nwritten: {out.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
