"""Scenes to MP4 with the bundled ffmpeg: streams, timing, size, subtitles and bad input."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from PIL import Image, ImageDraw

from omniforge.audio.codec import ffmpeg_exe
from omniforge.errors import InvalidRequestError, UnsupportedMediaError
from omniforge.video.assemble import PAUSE_S, Scene, assemble, probe

RATE = 24_000
W, H = 160, 96


def _image(colour: str) -> Image.Image:
    image = Image.new("RGB", (48, 48), "navy")
    ImageDraw.Draw(image).ellipse((8, 8, 32, 32), fill=colour)
    return image


def _tone(hz: float, seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def _scenes() -> list[Scene]:
    return [
        Scene(_image("red"), _tone(440, 1.5), RATE, "A red ball rolls across the night sky."),
        Scene(_image("yellow"), _tone(660, 1.0), RATE, "The sun rises."),
    ]


def _frame(mp4: bytes, tmp_path, seconds: float) -> np.ndarray:
    path = tmp_path / "v.mp4"
    path.write_bytes(mp4)
    raw = subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-ss", str(seconds), "-i", str(path), "-frames:v", "1",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return np.frombuffer(raw, np.uint8).reshape(H, W, 3).astype(int)


def test_video_and_voice_over_last_as_long_as_the_narration() -> None:
    scenes = _scenes()
    calls: list[tuple[int, int]] = []
    mp4 = assemble(scenes, W, H, fps=12, subtitles="none", progress=lambda d, n: calls.append((d, n)))
    info = probe(mp4)
    narration = sum(len(s.audio) for s in scenes) / RATE
    assert info["video"] and info["audio"] and not info["subtitles"]
    assert (info["width"], info["height"], info["fps"]) == (W, H, 12.0)
    assert info["video_codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["audio_codec"] == "aac"
    assert info["duration"] == pytest.approx(narration + (len(scenes) - 1) * PAUSE_S, rel=0.05)
    assert info["duration"] == pytest.approx(narration, rel=0.15)
    assert calls == [(1, 2), (2, 2)]
    assert mp4[4:8] == b"ftyp" and mp4.find(b"moov") < mp4.find(b"mdat")  # +faststart


def test_soft_subtitles_are_a_mov_text_stream() -> None:
    info = probe(assemble(_scenes(), W, H, fps=12, subtitles="soft"))
    assert info["subtitles"] and info["subtitle_codec"] == "mov_text" and info["audio"]


def test_burned_subtitles_change_the_bottom_of_the_picture(tmp_path) -> None:
    plain = _frame(assemble(_scenes(), W, H, fps=12, subtitles="none"), tmp_path, 0.5)
    burned = _frame(assemble(_scenes(), W, H, fps=12, subtitles="burn"), tmp_path, 0.5)
    bottom = np.abs(burned[H * 2 // 3 :] - plain[H * 2 // 3 :]).mean()
    top = np.abs(burned[: H // 4] - plain[: H // 4]).mean()
    assert bottom > 5 * max(top, 0.5)


def test_probe_reads_a_path_too(tmp_path) -> None:
    path = tmp_path / "v.mp4"
    path.write_bytes(assemble(_scenes()[:1], W, H, fps=8, subtitles="none"))
    assert probe(path)["video"]
    with pytest.raises(UnsupportedMediaError):
        probe(b"not a video")


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [({"width": 161}, "width"), ({"height": 8}, "height"), ({"fps": 0}, "fps"), ({"subtitles": "ass"}, "subtitles")],
)
def test_bad_settings_name_their_parameter(kwargs: dict, param: str) -> None:
    args = {"width": W, "height": H, "fps": 12, "subtitles": "burn", **kwargs}
    with pytest.raises(InvalidRequestError) as info:
        assemble(_scenes(), **args)
    assert info.value.param == param


def test_bad_scenes_are_refused() -> None:
    good = _scenes()[0]
    with pytest.raises(ValueError, match="at least one scene"):
        assemble([], W, H)
    with pytest.raises(ValueError, match="int16"):
        assemble([Scene(good.image, good.audio.astype(np.float32), RATE, "x")], W, H)
    with pytest.raises(TypeError, match="PIL image"):
        assemble([Scene(np.zeros((4, 4, 3)), good.audio, RATE, "x")], W, H)
    with pytest.raises(ValueError, match="one sample rate"):
        assemble([good, Scene(good.image, good.audio, 16_000, "x")], W, H)
