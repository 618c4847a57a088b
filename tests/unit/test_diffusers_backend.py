"""diffusers image and video backends on tiny random models built offline (tests/tinymodels.py),
loaded through load_model exactly as a user's model is: a diffusers folder, a single-file
checkpoint in the original layout with a local config folder, a text-to-video folder and an
AnimateDiff pipeline made of a Stable Diffusion folder plus a MotionAdapter folder."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omniforge.backends import load_model
from omniforge.catalog.spec import ModelSpec
from omniforge.config import Settings, load_settings
from omniforge.errors import InvalidRequestError, ModelLoadError
from omniforge.types import ImageParams, VideoParams
from tests.conftest import make_home
from tests.tinymodels import tiny_animatediff, tiny_sd, tiny_sd_single_file, tiny_text_to_video

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(home=make_home(tmp_path_factory.mktemp("diffusers")), threads=1)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "tinymodels"


@pytest.fixture(scope="session")
def sd_folder(tiny: Path) -> Path:
    return tiny_sd(tiny / "sd")


def image_spec(source: Path, **options: object) -> ModelSpec:
    return ModelSpec(id="tiny-sd", modality="image", backend="diffusers", source=str(source), options=dict(options))


@pytest.fixture(scope="module")
def sd(sd_folder: Path, settings: Settings):
    model = load_model(image_spec(sd_folder), settings)
    yield model
    model.close()


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_folder_model_reports_its_limits(sd) -> None:
    assert sd.modality == "image"
    assert sd.default_size == (64, 64)  # UNet sample 32 x VAE scale 2
    assert sd.size_multiple == 8
    assert sd.supports_image_to_image and sd.supports_inpainting
    assert sd.max_prompt_tokens == 77
    assert sd.prompt_tokens("a red cat") == 5  # BOS + 3 words + EOS, as the tokenizer produces
    assert sd.prompt_tokens(" ".join(["cat"] * 100)) == 102  # counted, not truncated
    assert sd.memory_bytes() > 100_000


def test_text_to_image_with_progress_per_step(sd) -> None:
    calls: list[tuple[int, int]] = []
    result = sd.generate(ImageParams(prompt="a red cat", width=64, height=64, steps=5, seed=7),
                         progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 5) for i in range(1, 6)]
    assert result.seed == 7 and result.steps == 5
    [image] = result.images
    assert image.mode == "RGB" and image.size == (64, 64)
    assert pixels(image).std() > 1  # a picture, not a blank


def test_non_square_size_and_random_seed(sd) -> None:
    result = sd.generate(ImageParams(prompt="a blue dog", width=48, height=32, steps=2))
    assert result.images[0].size == (48, 32)
    assert isinstance(result.seed, int)


def test_seed_determinism_and_n(sd) -> None:
    params = {"prompt": "a green dog in the snow", "steps": 4, "guidance": 5.0, "negative_prompt": "blurry"}
    a = sd.generate(ImageParams(**params, seed=11, n=2))
    b = sd.generate(ImageParams(**params, seed=11, n=2))
    c = sd.generate(ImageParams(**params, seed=12))
    assert len(a.images) == 2
    assert np.array_equal(pixels(a.images[0]), pixels(b.images[0]))
    assert np.array_equal(pixels(a.images[1]), pixels(b.images[1]))
    assert np.abs(pixels(a.images[0]) - pixels(a.images[1])).max() > 10  # image i used seed + i
    assert np.abs(pixels(a.images[1]) - pixels(c.images[0])).max() <= 2  # same seed, batched or not


def test_scheduler_switch_and_unknown_scheduler(sd) -> None:
    base = sd.generate(ImageParams(prompt="a red cat", steps=4, seed=3)).images[0]
    ddim = sd.generate(ImageParams(prompt="a red cat", steps=4, seed=3, scheduler="DDIMScheduler")).images[0]
    again = sd.generate(ImageParams(prompt="a red cat", steps=4, seed=3)).images[0]
    assert np.abs(pixels(base) - pixels(ddim)).max() > 0
    assert np.array_equal(pixels(base), pixels(again))  # the switch lasted one request
    with pytest.raises(InvalidRequestError) as err:
        sd.generate(ImageParams(prompt="a red cat", steps=2, scheduler="NoSuchScheduler"))
    assert err.value.param == "scheduler"
    assert "EulerDiscreteScheduler" in err.value.message and "DDIMScheduler" in err.value.message


def test_image_to_image(sd) -> None:
    source = sd.generate(ImageParams(prompt="a red cat", steps=3, seed=1)).images[0]
    calls: list[tuple[int, int]] = []
    result = sd.generate(ImageParams(prompt="a blue mat", steps=10, strength=0.5, seed=2, image=source),
                         progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 5) for i in range(1, 6)]  # strength 0.5 runs half the steps
    assert result.images[0].size == (64, 64)
    calls.clear()
    sd.generate(ImageParams(prompt="a blue mat", steps=10, strength=0.1, seed=2, image=source),
                progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 1)]


def test_inpainting(sd) -> None:
    source = sd.generate(ImageParams(prompt="a red cat", steps=3, seed=1)).images[0]
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    result = sd.generate(ImageParams(prompt="a dog", steps=5, strength=1.0, seed=4, image=source, mask=mask))
    out = pixels(result.images[0])
    assert out.shape == (64, 64, 3)
    inside = np.abs(out - pixels(source))[20:44, 20:44].mean()
    outside = np.abs(out - pixels(source))[:8].mean()
    assert inside > outside  # the masked square was repainted


def test_bad_image_requests(sd) -> None:
    source = Image.new("RGB", (64, 64), "white")
    with pytest.raises(InvalidRequestError) as err:
        sd.generate(ImageParams(prompt="x", image=source, mask=Image.new("L", (32, 32), 255)))
    assert err.value.param == "mask"
    with pytest.raises(InvalidRequestError) as err:
        sd.generate(ImageParams(prompt="x", mask=Image.new("L", (64, 64), 255)))
    assert err.value.param == "image"
    with pytest.raises(InvalidRequestError) as err:
        sd.generate(ImageParams(prompt="x", width=60, height=64))
    assert err.value.param == "size"
    with pytest.raises(InvalidRequestError) as err:
        sd.generate(ImageParams(prompt="x", image=source, steps=2, strength=0.2))
    assert err.value.param == "strength"


def test_single_file_checkpoint_matches_folder(sd, sd_folder: Path, tiny: Path, settings: Settings) -> None:
    ckpt = tiny_sd_single_file(tiny / "sd-single.safetensors", sd_folder)
    model = load_model(image_spec(ckpt, config=str(sd_folder)), settings)
    try:
        params = ImageParams(prompt="a photo of a red cat", steps=4, seed=5)
        assert np.array_equal(pixels(model.generate(params).images[0]), pixels(sd.generate(params).images[0]))
        assert model.max_prompt_tokens == 77 and model.supports_inpainting
    finally:
        model.close()


def test_single_file_without_config_says_what_to_set(sd_folder: Path, tiny: Path, settings: Settings) -> None:
    ckpt = tiny_sd_single_file(tiny / "sd-single.safetensors", sd_folder)
    with pytest.raises(ModelLoadError, match="options.config"):
        load_model(image_spec(ckpt), settings)
    with pytest.raises(ModelLoadError, match="model_index.json"):
        load_model(image_spec(ckpt, config=str(tiny)), settings)


def test_missing_or_unknown_source(tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(image_spec(tmp_path / "nowhere"), settings)
    with pytest.raises(ModelLoadError, match="model_index.json"):
        load_model(image_spec(tmp_path), settings)
    with pytest.raises(ModelLoadError, match="options.dtype"):
        load_model(image_spec(tmp_path, dtype="float7"), settings)


def test_memory_options_load(sd_folder: Path, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    options = {"attention_slicing": True, "vae_tiling": True, "cpu_offload": "model", "device": "cpu"}
    model = load_model(image_spec(sd_folder, **options), settings)
    try:
        assert "cpu_offload" in caplog.text  # a logged no-op without CUDA
        assert model.generate(ImageParams(prompt="a red cat", steps=2, seed=1)).images[0].size == (64, 64)
    finally:
        model.close()


# ---- video ----

def ffprobe(mp4: bytes, tmp_path: Path) -> tuple[int, float, str]:
    """(decoded frames, duration in seconds, stream line) of an MP4, read back with ffmpeg."""
    import imageio_ffmpeg

    path = tmp_path / "out.mp4"
    path.write_bytes(mp4)
    log = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path), "-f", "null", "-"],
                         capture_output=True, text=True, check=True).stderr
    frames = int(re.findall(r"frame=\s*(\d+)", log)[-1])
    h, m, s = re.search(r"Duration: (\d+):(\d+):([\d.]+)", log).groups()
    stream = next(line for line in log.splitlines() if "Video:" in line)
    return frames, int(h) * 3600 + int(m) * 60 + float(s), stream


def video_spec(source: Path, **options: object) -> ModelSpec:
    return ModelSpec(id="tiny-video", modality="video", backend="diffusers-video", source=str(source),
                     options=dict(options))


@pytest.fixture(scope="module")
def t2v(tiny: Path, settings: Settings):
    model = load_model(video_spec(tiny_text_to_video(tiny / "t2v")), settings)
    yield model
    model.close()


def test_text_to_video_makes_a_playable_mp4(t2v, tmp_path: Path) -> None:
    assert t2v.modality == "video" and not t2v.supports_image_to_video
    calls: list[tuple[int, int]] = []
    result = t2v.generate(VideoParams(prompt="a tiny robot walks", seconds=1.0, fps=8, steps=3, seed=1),
                          progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert (result.width, result.height, result.seconds, result.has_audio) == (64, 64, 1.0, False)
    frames, duration, stream = ffprobe(result.mp4, tmp_path)
    assert frames == 8 and abs(duration - 1.0) < 0.05
    assert "h264" in stream and "yuv420p" in stream and "64x64" in stream


def test_video_length_rounds_to_whole_frames(t2v, tmp_path: Path) -> None:
    result = t2v.generate(VideoParams(prompt="a cat", seconds=0.3, fps=10, steps=1, seed=1, width=48, height=32))
    assert (result.width, result.height, result.seconds) == (48, 32, 0.3)
    assert ffprobe(result.mp4, tmp_path)[0] == 3


def test_bad_video_requests(t2v) -> None:
    with pytest.raises(InvalidRequestError) as err:
        t2v.generate(VideoParams(prompt="x", image=Image.new("RGB", (64, 64))))
    assert err.value.param == "image"
    with pytest.raises(InvalidRequestError) as err:
        t2v.generate(VideoParams(prompt="x", width=60))
    assert err.value.param == "size"
    with pytest.raises(InvalidRequestError) as err:
        t2v.generate(VideoParams(prompt="x", seconds=t2v.max_seconds + 1))
    assert err.value.param == "seconds"


def test_animatediff_from_sd_folder_and_motion_adapter(tiny: Path, sd_folder: Path, settings: Settings,
                                                        tmp_path: Path) -> None:
    adapter = tiny_animatediff(tiny / "animatediff") / "motion_adapter"
    model = load_model(video_spec(sd_folder, motion_adapter=str(adapter)), settings)
    try:
        assert type(model.pipe).__name__ == "AnimateDiffPipeline"
        result = model.generate(VideoParams(prompt="a red cat", seconds=0.5, fps=8, steps=2, seed=1))
        assert ffprobe(result.mp4, tmp_path)[0] == 4
    finally:
        model.close()


def test_image_folder_is_not_a_video_model(sd_folder: Path, settings: Settings) -> None:
    with pytest.raises(ModelLoadError, match="not a video pipeline"):
        load_model(video_spec(sd_folder), settings)
