"""The printed table: one block per section, medians with their slow tail, ratios vs direct."""

from __future__ import annotations

from typing import Any

TARGET_THROUGHPUT_PCT = 95.0  # omniforge completions vs llama-cpp-python in-process
TARGET_ADDED_TTFT_MS = 15.0


def _mp(s: dict[str, float], fmt: str = "{:.1f}", slow: str = "p95") -> str:
    """'median / p95' of a summary; slow='p5' for rates, whose slow tail is the low end."""
    return f"{fmt.format(s['median'])} / {fmt.format(s[slow])}" if s.get("n") else "-"


def _load(section: dict[str, Any]) -> str:
    """1-minute load average before -> after a section."""
    return f"{section['loadavg_before'][0]} -> {section['loadavg_after'][0]}"


def _header(results: dict[str, Any]) -> list[str]:
    m, cfg = results["machine"], results["config"]
    dirty = " + uncommitted src" if m.get("src_uncommitted_changes") else ""
    run = f"omniforge bench ({results['mode']}) {m['date']}  commit {m['git_commit']}{dirty}"
    machine = f"{m['cpu_model']}, {m['cpu_cores']} cores, {cfg['threads']} threads per engine"
    load = f"load {m['loadavg_start']} -> {m['loadavg_end']}; {m['wall_s']} s"
    return [f"{run} (src sha256 {m.get('src_sha256', '?')})", f"{machine}; {load}"]


def _text(t: dict[str, Any]) -> list[str]:
    title = (
        f"TEXT gemma-3-270m, max_tokens {t['max_tokens']}, temperature 0, {t['repeats']} repeats "
        f"(median / p95; for tok/s the slow tail, p5); load {_load(t)}"
    )
    lines = [
        "",
        title,
        f"  {'variant':<30} {'decode tok/s':>15} {'TTFT ms':>17} {'end-to-end tok/s':>17} {'tokens':>7}",
    ]
    for name, v in t["single"].items():
        lines.append(
            f"  {name:<30} {_mp(v['decode_tps'], slow='p5'):>15} {_mp(v['ttft_ms']):>17} "
            f"{_mp(v['e2e_tps'], slow='p5'):>17} {v['tokens']['median']:>7.0f}"
        )
    lines.append("  vs direct (paired by repeat: median / p95 of the per-repeat ratio and difference)")
    for name, r in t["ratios"].items():
        pct, add = r["throughput_pct"], r["added_ttft_ms"]
        line = f"  {name:<30} throughput {_mp(pct, slow='p5')} %   added TTFT {_mp(add, '{:+.1f}')} ms"
        if name == "omniforge completions":
            ok = pct["median"] >= TARGET_THROUGHPUT_PCT and add["median"] <= TARGET_ADDED_TTFT_MS
            verdict = "meets target" if ok else "MISSES target"
            line += f"   [target >= {TARGET_THROUGHPUT_PCT:.0f} %, <= {TARGET_ADDED_TTFT_MS:.0f} ms: {verdict}]"
        lines.append(line)
    return lines


def _concurrency(t: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    conc = t["concurrency"]
    names = list(conc)
    title = (
        f"TEXT aggregate throughput, concurrent /v1/completions streams, max_tokens {cfg['concurrency_max_tokens']}, "
        f"{cfg['concurrency_repeats']} repeats (tok/s median / p5; TTFT ms median over streams)"
    )
    columns = "".join(f" {n + ' tok/s':>26} {n + ' TTFT':>24}" for n in names)
    lines = ["", title, f"  {'streams':>7}{columns}"]
    for level in conc[names[0]]:
        row = f"  {level:>7}"
        for n in names:
            c = conc[n][level]
            row += f" {_mp(c['aggregate_tps'], slow='p5'):>26} {c['ttft_ms_median']['median']:>24.0f}"
        lines.append(row)
    return lines


def _speech(s: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    title = (
        "SPEECH piper-en-us-joe real-time factor (synthesis s / audio s; lower is faster), "
        f"{cfg['audio_repeats']} repeats; load {_load(s)}"
    )
    lines = ["", title, f"  {'variant':<30} {'RTF':>15} {'first audio ms':>17} {'audio s':>8} {'x direct':>9}"]
    for name, v in s["variants"].items():
        lines.append(
            f"  {name:<30} {_mp(v['rtf'], '{:.3f}'):>15} {_mp(v['first_audio_ms'], '{:.0f}'):>17} "
            f"{v['audio_s']['median']:>8.1f} {s['rtf_vs_direct'].get(name, 1.0):>9.2f}"
        )
    return lines


def _transcription(s: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    title = (
        f"TRANSCRIPTION whisper-tiny.en real-time factor on a {s['audio_s']:.1f} s Piper clip, "
        f"beam {s['beam_size']}, {cfg['audio_repeats']} repeats; load {_load(s)}"
    )
    lines = ["", title, f"  {'variant':<30} {'RTF':>15} {'seconds':>17} {'WER':>8} {'x direct':>9}"]
    for name, v in s["variants"].items():
        lines.append(
            f"  {name:<30} {_mp(v['rtf'], '{:.3f}'):>15} {_mp(v['elapsed_s'], '{:.2f}'):>17} "
            f"{100 * v['wer']:>7.1f}% {s['rtf_vs_direct'].get(name, 1.0):>9.2f}"
        )
    return lines


def _image(s: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    title = (
        f"IMAGE {s['model']} {s['size']}, {s['steps']} steps, guidance {s['guidance']}, "
        f"{cfg['image_repeats']} repeats (s/image median / p90); load {_load(s)}"
    )
    ratio = s["omniforge_vs_direct"]["paired_ratio"]
    lines = ["", title, f"  {'variant':<34} {'s/image':>15} {'warm-up s':>10} {'x direct':>15}"]
    for name, v in s["variants"].items():
        x = _mp(ratio, "{:.2f}", slow="p90") if name == "omniforge" else "1.00"
        lines.append(
            f"  {name:<34} {_mp(v['s_per_image'], '{:.2f}', slow='p90'):>15} {s['warmup_s'][name]:>10.2f} {x:>15}"
        )
    lines.append(
        f"  x direct: per-repeat ratio (median / p90); max pixel difference direct vs omniforge: {s['max_pixel_diff']}"
    )
    b = s["batch"]
    lines.append(f"  n={b['n']} in one request vs {b['n']} single requests, {b['repeats']} repeats:")
    for name, v in b["variants"].items():
        lines.append(f"  {name:<34} {_mp(v['s_per_image'], '{:.2f}', slow='p90'):>15}")
    lines.append(f"  one request / singles, s per image: {_mp(b['one_request_vs_singles'], '{:.2f}', slow='p90')}")
    return lines


def report(results: dict[str, Any]) -> str:
    cfg, sec = results["config"], results["sections"]
    lines = _header(results)
    if "text" in sec:
        lines += _text(sec["text"]) + _concurrency(sec["text"], cfg)
    if "speech" in sec:
        lines += _speech(sec["speech"], cfg)
    if "transcription" in sec:
        lines += _transcription(sec["transcription"], cfg)
    if "image" in sec:
        lines += _image(sec["image"], cfg)
    if "llama_cpp_server_error" in results:
        lines += ["", "llama_cpp.server was skipped: " + results["llama_cpp_server_error"].splitlines()[0]]
    return "\n".join(lines)
