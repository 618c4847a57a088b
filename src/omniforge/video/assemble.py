"""Scenes to MP4: each scene's image with a gentle pan/zoom (Ken Burns) for as long as its narration
lasts, the narration as the voice-over, and the scene text as burned or soft subtitles.

Frames are rendered here with PIL (a sub-pixel crop-and-resize per frame, so the motion is
smooth even on a 32-pixel image) and piped as raw RGB into the ffmpeg bundled with
imageio-ffmpeg, which writes H.264 (yuv420p) + AAC (+ mov_text subtitles) with +faststart.
Burned subtitles are drawn with PIL's own font, so neither libass nor a system font is needed.
Everything is written in a temp dir and returned as bytes: no half-written file is ever seen.
`probe` reads an MP4's streams back from `ffmpeg -i` (imageio-ffmpeg ships no ffprobe).

This module knows nothing about models: images, int16 samples and text in, MP4 bytes out.
"""

from __future__ import annotations

import math
import re
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..audio.codec import ffmpeg_exe
from ..audio.subtitles import to_srt
from ..errors import InvalidRequestError, OmniforgeError, UnsupportedMediaError
from ..types import ProgressFn, Segment, Transcript

__all__ = ["SUBTITLE_MODES", "Scene", "assemble", "probe"]

SUBTITLE_MODES = ("burn", "soft", "none")
PAUSE_S = 0.2  # silence between one scene's narration and the next, so they do not run together
ZOOM = 0.12  # the Ken Burns window moves between 1x and 1.12x magnification
MAX_LINES = 2  # subtitle lines on screen at once; longer text becomes several cues
MIN_SIZE, MAX_SIZE = 16, 4096
MAX_FPS = 60
ENCODE_TIMEOUT_S = 600.0
_X264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p"]
_AAC = ["-c:a", "aac", "-b:a", "96k"]


@dataclass
class Scene:
    """One shot: an image shown while `audio` (mono int16 at `sample_rate`) narrates `text`."""

    image: Any  # PIL.Image.Image, any mode and size: it is cropped to the video's aspect
    audio: np.ndarray
    sample_rate: int
    text: str = ""


@dataclass
class _Cue:
    start: float
    end: float
    lines: list[str]


# -- validation ----------------------------------------------------------------------------------


def _check(scenes: list[Scene], width: int, height: int, fps: int, subtitles: str) -> None:
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or not MIN_SIZE <= value <= MAX_SIZE or value % 2:
            raise InvalidRequestError(
                f"{name} must be an even number of pixels from {MIN_SIZE} to {MAX_SIZE}, not {value!r} "
                "(H.264 in yuv420p needs even sizes)",
                param=name,
            )
    if not isinstance(fps, int) or not 1 <= fps <= MAX_FPS:
        raise InvalidRequestError(f"fps must be a whole number from 1 to {MAX_FPS}, not {fps!r}", param="fps")
    if subtitles not in SUBTITLE_MODES:
        raise InvalidRequestError(
            f"subtitles must be one of {', '.join(SUBTITLE_MODES)}, not {subtitles!r}", param="subtitles"
        )
    if not scenes:
        raise ValueError("a video needs at least one scene")
    rate = scenes[0].sample_rate
    for i, scene in enumerate(scenes):
        if not isinstance(scene.image, Image.Image):
            raise TypeError(f"scenes[{i}].image must be a PIL image, not {type(scene.image).__name__}")
        audio = np.asarray(scene.audio)
        if audio.dtype != np.int16 or audio.ndim != 1 or audio.size == 0:
            raise ValueError(
                f"scenes[{i}].audio must be non-empty mono int16 samples, not {audio.dtype} of shape {audio.shape}"
            )
        if not isinstance(scene.sample_rate, int) or scene.sample_rate <= 0:
            raise ValueError(f"scenes[{i}].sample_rate must be a positive integer, not {scene.sample_rate!r}")
        if scene.sample_rate != rate:
            raise ValueError(
                f"every scene's audio must share one sample rate: scenes[{i}] has {scene.sample_rate} Hz, "
                f"scenes[0] has {rate} Hz"
            )


# -- timing --------------------------------------------------------------------------------------


def _frame_bounds(scenes: list[Scene], fps: int, pause: float) -> list[tuple[int, int]]:
    """[first frame, end frame) of each scene. Boundaries are rounded from the running total, so
    the picture never drifts from the voice-over however many scenes there are."""
    bounds, t, start = [], 0.0, 0
    for i, scene in enumerate(scenes):
        t += len(scene.audio) / scene.sample_rate + (pause if i < len(scenes) - 1 else 0.0)
        end = max(start + 1, round(t * fps))
        bounds.append((start, end))
        start = end
    return bounds


def _voice_over(scenes: list[Scene], bounds: list[tuple[int, int]], fps: int) -> np.ndarray:
    """The narrations laid end to end on the frame timeline, each followed by silence."""
    rate = scenes[0].sample_rate
    track = np.zeros(round(bounds[-1][1] / fps * rate), dtype=np.int16)
    for scene, (f0, f1) in zip(scenes, bounds):
        s0, s1 = round(f0 / fps * rate), round(f1 / fps * rate)
        clip = np.asarray(scene.audio)[: s1 - s0]
        track[s0 : s0 + len(clip)] = clip
    return track


# -- subtitles -----------------------------------------------------------------------------------


def _font(height: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """PIL's bundled font (no system font needed), sized to the frame."""
    return ImageFont.load_default(size=max(12, round(height * 0.06)))


def _wrap(text: str, font: Any, max_width: float) -> list[str]:
    """Greedy word wrap by measured width; a word wider than the line gets a line of its own."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= max_width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _cues(scenes: list[Scene], bounds: list[tuple[int, int]], fps: int, font: Any, width: int) -> list[_Cue]:
    """Each scene's text in screenfuls of MAX_LINES lines, timed over its narration in
    proportion to their length; the last screenful stays up to the end of the scene."""
    cues = []
    for scene, (f0, f1) in zip(scenes, bounds):
        lines = _wrap(" ".join(scene.text.split()).replace("-->", "->"), font, width * 0.9)
        if not lines:
            continue
        chunks = [lines[i : i + MAX_LINES] for i in range(0, len(lines), MAX_LINES)]
        weights = [sum(len(line) for line in chunk) for chunk in chunks]
        start, end = f0 / fps, f1 / fps
        spoken = len(scene.audio) / scene.sample_rate
        t = start
        for k, (chunk, weight) in enumerate(zip(chunks, weights)):
            stop = end if k == len(chunks) - 1 else t + spoken * weight / sum(weights)
            cues.append(_Cue(t, stop, chunk))
            t = stop
    return cues


def _subtitle_patch(lines: list[str], font: Any, width: int, height: int) -> tuple[Image.Image, tuple[int, int]]:
    """White text with a black outline on a transparent patch, and where it goes (bottom centre)."""
    stroke = max(1, round(font.size / 12)) if hasattr(font, "size") else 1
    probe_draw = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    text = "\n".join(lines)
    box = probe_draw.multiline_textbbox((0, 0), text, font=font, align="center", stroke_width=stroke)
    left, top, right, bottom = (math.floor(box[0]), math.floor(box[1]), math.ceil(box[2]), math.ceil(box[3]))
    patch = Image.new("RGBA", (right - left + 2, bottom - top + 2), (0, 0, 0, 0))
    ImageDraw.Draw(patch).multiline_text(
        (1 - left, 1 - top),
        text,
        font=font,
        fill=(255, 255, 255, 255),
        align="center",
        stroke_width=stroke,
        stroke_fill=(0, 0, 0, 255),
    )
    x = (width - patch.width) // 2
    y = height - patch.height - max(4, round(height * 0.05))
    return patch, (x, max(0, y))


def _srt(cues: list[_Cue]) -> str:
    segments = [Segment(i, c.start, c.end, " ".join(c.lines)) for i, c in enumerate(cues)]
    return to_srt(Transcript(text="", language="en", duration=cues[-1].end if cues else 0.0, segments=segments))


# -- pictures ------------------------------------------------------------------------------------


def _cover(image: Image.Image, width: int, height: int) -> Image.Image:
    """Crop the image's centre to the video's aspect, scaled so the most zoomed window still
    has a source pixel per output pixel."""
    image = image.convert("RGB")
    aspect = width / height
    w, h = image.size
    if w / h > aspect:
        cw = h * aspect
        box = ((w - cw) / 2, 0.0, (w + cw) / 2, float(h))
    else:
        ch = w / aspect
        box = (0.0, (h - ch) / 2, float(w), (h + ch) / 2)
    size = (math.ceil(width * (1 + ZOOM)), math.ceil(height * (1 + ZOOM)))
    # Lanczos rings around hard edges when it enlarges a small image many times: bicubic there.
    enlarging = size[0] > (box[2] - box[0]) * 2
    return image.resize(size, Image.Resampling.BICUBIC if enlarging else Image.Resampling.LANCZOS, box=box)


# (start zoom, end zoom, start centre, end centre) with centres in [0, 1] of the free range:
# zoom in, pan right, zoom out, pan left; scene i takes motion i % 4 so neighbours differ.
_MOTIONS = (
    (1.0, 1 + ZOOM, (0.5, 0.5), (0.35, 0.4)),
    (1 + ZOOM, 1 + ZOOM, (0.0, 0.5), (1.0, 0.5)),
    (1 + ZOOM, 1.0, (0.65, 0.6), (0.5, 0.5)),
    (1 + ZOOM, 1 + ZOOM, (1.0, 0.3), (0.0, 0.7)),
)


def _window(src: Image.Image, zoom: float, cx: float, cy: float) -> tuple[float, float, float, float]:
    """The source box seen at `zoom` (1 = the whole source), its centre placed at (cx, cy) of the
    range that keeps the box inside the image."""
    w, h = src.width / zoom, src.height / zoom
    x0, y0 = (src.width - w) * cx, (src.height - h) * cy
    return x0, y0, x0 + w, y0 + h


def _frames(src: Image.Image, motion: int, count: int, width: int, height: int):
    z0, z1, (ax, ay), (bx, by) = _MOTIONS[motion % len(_MOTIONS)]
    for k in range(count):
        u = k / (count - 1) if count > 1 else 0.0
        u = u * u * (3 - 2 * u)  # smoothstep: the camera eases in and out
        box = _window(src, z0 + (z1 - z0) * u, ax + (bx - ax) * u, ay + (by - ay) * u)
        yield src.transform((width, height), Image.Transform.EXTENT, box, resample=Image.Resampling.BILINEAR)


# -- encoding ------------------------------------------------------------------------------------


def _write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2", copy=False).tobytes())


def _error_text(path: Path) -> str:
    text = path.read_text("utf-8", "replace").strip() if path.exists() else ""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "ffmpeg gave no reason"


def assemble(
    scenes: list[Scene],
    width: int,
    height: int,
    fps: int = 24,
    subtitles: str = "burn",
    progress: ProgressFn | None = None,
    *,
    pause: float = PAUSE_S,
    threads: int = 1,
) -> bytes:
    """An MP4 (H.264 yuv420p + AAC, +faststart) of `scenes` in order at `width`x`height`.

    Scene i lasts as long as its narration, plus `pause` seconds before the next scene, rounded to
    whole frames.
    `subtitles`: "burn" draws the text onto the frames, "soft" adds a mov_text stream a player
    can switch on, "none" leaves the text out. `progress(done, total)` is called per scene.
    """
    _check(scenes, width, height, fps, subtitles)
    bounds = _frame_bounds(scenes, fps, pause)
    rate = scenes[0].sample_rate
    font = _font(height)
    cues = _cues(scenes, bounds, fps, font, width) if subtitles != "none" else []
    patches = [_subtitle_patch(c.lines, font, width, height) for c in cues] if subtitles == "burn" else []
    with tempfile.TemporaryDirectory(prefix="omniforge-video-") as tmp:
        root = Path(tmp)
        _write_wav(root / "voice.wav", _voice_over(scenes, bounds, fps), rate)
        inputs = ["-i", str(root / "voice.wav")]
        maps = ["-map", "0:v:0", "-map", "1:a:0"]
        codecs = [*_X264, "-threads", str(max(1, threads)), *_AAC]
        if subtitles == "soft" and cues:
            (root / "subs.srt").write_text(_srt(cues), encoding="utf-8")
            inputs += ["-i", str(root / "subs.srt")]
            maps += ["-map", "2:s:0"]
            codecs += ["-c:s", "mov_text", "-metadata:s:s:0", "language=eng"]
        out, log = root / "video.mp4", root / "ffmpeg.log"
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            *("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", str(fps)),
            *("-i", "pipe:0"), *inputs, *maps, *codecs, "-movflags", "+faststart", str(out),
        ]  # fmt: skip
        with log.open("wb") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        assert proc.stdin is not None
        try:
            _render(proc.stdin, scenes, bounds, cues, patches, fps, width, height, progress)
            proc.stdin.close()
            returncode = proc.wait(timeout=ENCODE_TIMEOUT_S)
        except BrokenPipeError:
            returncode = proc.wait(timeout=ENCODE_TIMEOUT_S)  # ffmpeg failed: its log says why
        finally:
            if proc.poll() is None:  # rendering failed or was cancelled (progress raised)
                proc.kill()
                proc.wait()
            if not proc.stdin.closed:
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
        if returncode != 0 or not out.exists():
            raise OmniforgeError(f"ffmpeg could not encode the video: {_error_text(log)}")
        return out.read_bytes()


def _render(
    sink: Any,
    scenes: list[Scene],
    bounds: list[tuple[int, int]],
    cues: list[_Cue],
    patches: list[tuple[Image.Image, tuple[int, int]]],
    fps: int,
    width: int,
    height: int,
    progress: ProgressFn | None,
) -> None:
    """Render every frame and write it to ffmpeg as raw RGB."""
    for i, (scene, (f0, f1)) in enumerate(zip(scenes, bounds)):
        src = _cover(scene.image, width, height)
        for k, frame in enumerate(_frames(src, i, f1 - f0, width, height)):
            t = (f0 + k + 0.5) / fps  # the middle of the frame decides which cue shows
            for cue, (patch, xy) in zip(cues, patches):
                if cue.start <= t < cue.end:
                    frame.paste(patch, xy, patch)
                    break
            sink.write(frame.tobytes())
        if progress is not None:
            progress(i + 1, len(scenes))


# -- probing -------------------------------------------------------------------------------------

_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_STREAM = re.compile(r"^\s*Stream #\d+:\d+.*?: (Video|Audio|Subtitle): (\w+)(.*)$", re.MULTILINE)
_SIZE = re.compile(r",\s(\d+)x(\d+)\b")
_FPS = re.compile(r",\s(\d+(?:\.\d+)?)\sfps\b")
_PIX_FMT = re.compile(r"^[^,]*,\s*(\w+)")
_RATE = re.compile(r",\s(\d+)\sHz\b")


def probe(mp4: bytes | Path | str) -> dict[str, Any]:
    """What a video file holds, read from `ffmpeg -i`: duration (s), video/audio/subtitles
    (present or not), width, height, fps, pix_fmt and codecs, sample_rate. Missing facts are None.

    Raises UnsupportedMediaError(param="file") for a file ffmpeg cannot read.
    """
    if isinstance(mp4, bytes | bytearray):
        with tempfile.NamedTemporaryFile(prefix="omniforge-probe-", suffix=".mp4") as f:
            f.write(mp4)
            f.flush()
            return _probe_path(Path(f.name))
    return _probe_path(Path(mp4))


def _probe_path(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UnsupportedMediaError(f"no video file at {path}", param="file")
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    text = proc.stderr.decode("utf-8", "replace")  # ffmpeg -i without an output exits 1: that is expected
    duration = _DURATION.search(text)
    if duration is None:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        raise UnsupportedMediaError(f"could not read the video: {lines[-1] if lines else 'no output'}", param="file")
    h, m, s = duration.groups()
    info: dict[str, Any] = {
        "duration": int(h) * 3600 + int(m) * 60 + float(s),
        "video": False, "audio": False, "subtitles": False,
        "width": None, "height": None, "fps": None, "pix_fmt": None, "video_codec": None,
        "audio_codec": None, "sample_rate": None, "subtitle_codec": None,
    }  # fmt: skip
    for kind, codec, rest in _STREAM.findall(text):
        if kind == "Video" and not info["video"]:
            info.update(video=True, video_codec=codec)
            if size := _SIZE.search(rest):
                info.update(width=int(size[1]), height=int(size[2]))
            if fps := _FPS.search(rest):
                info["fps"] = float(fps[1])
            if pix := _PIX_FMT.search(rest):
                info["pix_fmt"] = pix[1]
        elif kind == "Audio" and not info["audio"]:
            info.update(audio=True, audio_codec=codec)
            if hz := _RATE.search(rest):
                info["sample_rate"] = int(hz[1])
        elif kind == "Subtitle" and not info["subtitles"]:
            info.update(subtitles=True, subtitle_codec=codec)
    return info
