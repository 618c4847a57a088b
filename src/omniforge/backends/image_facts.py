"""The embedded vision model ("image-facts"): facts measured from an image, for an LLM to describe.

A vision model analyses, the LLM describes. This backend measures what it can measure reliably
on a CPU and writes it as short labelled lines a 270M LLM can turn into a sentence:

    size: 640x480 pixels (landscape)
    colours: blue 62%, red 30%, white 8%
    text: "OPEN 9 TO 5" / "Main Street"
    shapes: a large red circle in the center, on a blue background

Colours come from quantising pixels to a palette of named colours (by hue, saturation and
brightness, so "dark blue" is still blue); text from RapidOCR (PP-OCRv4 ONNX models shipped in
the rapidocr-onnxruntime wheel, loaded lazily once per instance); shapes from the house image
model's vocabulary checker (omniforge.house.checker), when it is installed. It knows nothing
about what the user asked: the same image always gives the same lines.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidRequestError, MissingDependencyError, ModelLoadError
from .base import VisionModel

if TYPE_CHECKING:
    from ..catalog.spec import ModelSpec
    from ..config import Settings

__all__ = ["COLOUR_NAMES", "ImageFacts", "colour_shares", "load"]

COLOUR_NAMES = (
    "red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown", "white", "grey", "black",
)
_SAMPLE_SIDE = 128  # colours are measured on a sampled thumbnail: shares barely move, time drops ~100x
_MIN_COLOUR_SHARE = 0.05  # colours under 5% of the image are noise to the reader
_MAX_COLOURS = 4
# OCR: detection on the image scaled so its longer side is at most this (never upscaled); PP-OCR's
# default (shorter side upscaled to 736) took 6x longer on a 400x160 image and read the same text.
_OCR_MAX_SIDE = 1280
_OCR_UNCLIP = 1.6  # RapidOCR's default text-box growth
# The recogniser (trained mostly on Chinese) sometimes drops the space between English words
# ("HELLOWORLD"); its per-character boxes still show the gap. A gap wider than this fraction of
# the line's median character width becomes a space (the gap inside "WO" measured 0.5).
_SPACE_GAP = 0.75
_MIN_TEXT_CONFIDENCE = 0.6  # spec option min_text_confidence
_MAX_TEXT_LINES = 12
_MAX_TEXT_CHARS = 400
_MIN_SCENE_CONFIDENCE = 0.5  # house checker readings below this are left out


def load(spec: ModelSpec, settings: Settings) -> ImageFacts:
    """Check that RapidOCR is importable; its ONNX sessions start on the first image."""
    try:
        import rapidocr_onnxruntime  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"model {spec.id} needs RapidOCR: pip install rapidocr-onnxruntime"
        ) from exc
    confidence = spec.options.get("min_text_confidence", _MIN_TEXT_CONFIDENCE)
    if not isinstance(confidence, (int, float)) or not 0 <= confidence <= 1:
        raise ModelLoadError(f"model {spec.id}: option min_text_confidence must be in [0, 1], not {confidence!r}")
    return ImageFacts(spec, threads=settings.threads, min_text_confidence=float(confidence))


class ImageFacts(VisionModel):
    """Size, dominant colours, OCR text and house-vocabulary shapes of one image at a time."""

    def __init__(self, spec: ModelSpec, threads: int = 1, min_text_confidence: float = _MIN_TEXT_CONFIDENCE) -> None:
        super().__init__(spec)
        self._threads = max(1, threads)
        self._min_text_confidence = min_text_confidence
        self._ocr: Any = None
        self._lock = threading.Lock()

    def memory_bytes(self) -> int:
        """The three PP-OCR ONNX models (about 15 MB) plus their sessions' buffers."""
        try:
            import rapidocr_onnxruntime

            models = Path(rapidocr_onnxruntime.__file__).parent / "models"
            return 2 * sum(f.stat().st_size for f in models.glob("*.onnx"))
        except (ImportError, OSError):
            return 32 * 2**20

    def close(self) -> None:
        self._ocr = None

    def analyse(self, image: Any, prompt: str | None = None) -> str:
        """Facts about `image` as labelled lines; `prompt` is not used (the facts do not depend
        on the question: the LLM that reads them answers it)."""
        rgb = _as_rgb(image)
        width, height = rgb.size
        lines = [f"size: {width}x{height} pixels ({_orientation(width, height)})"]
        shares = colour_shares(rgb)
        lines.append("colours: " + ", ".join(f"{name} {round(share * 100)}%" for name, share in shares))
        text = self.read_text(rgb)
        lines.append("text: " + (" / ".join(f'"{line}"' for line in text) if text else "none found"))
        scene = _house_scene(rgb)
        if scene is not None:
            lines.append(f"shapes: {scene}")
        return "\n".join(lines)

    def read_text(self, image: Any) -> list[str]:
        """The text RapidOCR reads in `image`, one string per line, top to bottom and left to
        right; text boxes read with less than min_text_confidence are dropped."""
        ocr = self._engine()
        bgr = np.ascontiguousarray(np.asarray(_as_rgb(image))[:, :, ::-1])
        with self._lock:  # one ONNX run at a time per instance: the sessions hold the threads
            # Every option passed each time: RapidOCR resets the ones a call leaves out.
            result, _ = ocr(
                bgr, return_word_box=True, box_thresh=0.5, unclip_ratio=_OCR_UNCLIP,
                text_score=self._min_text_confidence,
            )
        boxes = []
        for item in result or []:
            box, text, score = item[0], str(item[1]), float(item[2])
            if len(item) >= 5:
                text = _respace(text, item[4], item[3])
            if score >= self._min_text_confidence and text.strip():
                boxes.append(_TextBox.from_result(box, text, score))
        lines = _reading_order(boxes)
        kept: list[str] = []
        total = 0
        for line in lines[:_MAX_TEXT_LINES]:
            if total + len(line) > _MAX_TEXT_CHARS:
                break
            kept.append(line)
            total += len(line)
        return kept

    def _engine(self) -> Any:
        with self._lock:
            if self._ocr is None:
                from rapidocr_onnxruntime import RapidOCR

                try:
                    self._ocr = RapidOCR(
                        intra_op_num_threads=self._threads,
                        inter_op_num_threads=1,
                        det_limit_type="max",
                        det_limit_side_len=_OCR_MAX_SIDE,
                    )
                except Exception as exc:  # onnxruntime raises its own types for unreadable models
                    raise ModelLoadError(f"model {self.spec.id}: RapidOCR could not start: {exc}") from exc
            return self._ocr


def _as_rgb(image: Any) -> Any:
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise InvalidRequestError(f"expected a PIL image, not {type(image).__name__}", param="image")
    if image.width < 1 or image.height < 1:
        raise InvalidRequestError("the image is empty (0 pixels)", param="image")
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels read as white, as a browser shows them on a white page.
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def _orientation(width: int, height: int) -> str:
    if abs(width - height) <= 0.05 * max(width, height):
        return "square"
    return "landscape" if width > height else "portrait"


# -- colours -----------------------------------------------------------------------------------
def colour_shares(image: Any) -> list[tuple[str, float]]:
    """The image's main named colours with their share of its pixels, largest first (ties by
    name): at most four, each at least 5%."""
    from PIL import Image

    thumb = image.copy()
    # Nearest-neighbour keeps real pixel colours: a smoothing filter turns thin black text grey.
    thumb.thumbnail((_SAMPLE_SIDE, _SAMPLE_SIDE), resample=Image.Resampling.NEAREST)
    pixels = np.asarray(thumb, dtype=np.float32).reshape(-1, 3) / 255.0
    names = _colour_names(pixels)
    counts = np.bincount(names, minlength=len(COLOUR_NAMES)) / len(names)
    ranked = sorted(
        ((COLOUR_NAMES[i], float(share)) for i, share in enumerate(counts) if share >= _MIN_COLOUR_SHARE),
        key=lambda item: (-round(item[1], 3), item[0]),
    )
    if not ranked:  # a confetti image: name the largest colour anyway
        i = int(np.argmax(counts))
        ranked = [(COLOUR_NAMES[i], float(counts[i]))]
    return ranked[:_MAX_COLOURS]


def _colour_names(rgb: np.ndarray) -> np.ndarray:
    """Index into COLOUR_NAMES for each RGB pixel in [0, 1], by hue, saturation and value.

    The thresholds follow how people name colours: very dark is black whatever its hue; a
    pale, unsaturated pixel is white or grey; dark orange is brown; dark magenta is purple and
    light magenta or pale red is pink."""
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    value = rgb.max(axis=1)
    chroma = value - rgb.min(axis=1)
    saturation = np.where(value > 0, chroma / np.maximum(value, 1e-6), 0.0)
    safe = np.maximum(chroma, 1e-6)
    hue = np.select(
        [value == r, value == g],
        [((g - b) / safe) % 6, (b - r) / safe + 2],
        (r - g) / safe + 4,
    ) * 60.0  # degrees

    idx = {name: i for i, name in enumerate(COLOUR_NAMES)}
    out = np.full(len(rgb), idx["grey"], dtype=np.int64)
    chromatic = (saturation >= 0.2) & (chroma >= 0.1)
    # Chromatic pixels by hue band first; the special cases below overwrite them.
    bands = [  # (upper bound in degrees, name)
        (15, "red"), (40, "orange"), (70, "yellow"), (165, "green"), (195, "cyan"),
        (255, "blue"), (290, "purple"), (345, "pink"), (360.1, "red"),
    ]
    lower = 0.0
    for upper, name in bands:
        out[chromatic & (hue >= lower) & (hue < upper)] = idx[name]
        lower = upper
    out[chromatic & (hue >= 15) & (hue < 45) & (value < 0.6)] = idx["brown"]
    out[chromatic & ((hue < 15) | (hue >= 345)) & (saturation < 0.5) & (value > 0.75)] = idx["pink"]
    out[chromatic & (hue >= 290) & (hue < 345) & (value < 0.6)] = idx["purple"]
    achromatic = ~chromatic
    out[achromatic & (value >= 0.85)] = idx["white"]
    out[value < 0.2] = idx["black"]
    return out


# -- text --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _TextBox:
    text: str
    left: float
    top: float
    bottom: float

    @classmethod
    def from_result(cls, box: Any, text: Any, score: Any) -> _TextBox:
        points = np.asarray(box, dtype=np.float32).reshape(-1, 2)
        return cls(str(text).strip(), float(points[:, 0].min()), float(points[:, 1].min()), float(points[:, 1].max()))

    @property
    def middle(self) -> float:
        return (self.top + self.bottom) / 2


def _respace(text: str, pieces: Any, boxes: Any) -> str:
    """`text` with a space wherever two neighbouring characters' boxes stand a word apart
    (pieces and boxes: RapidOCR's per-character word boxes; text unchanged if they disagree)."""
    if not pieces or len(pieces) != len(boxes) or "".join(pieces).replace(" ", "") != text.replace(" ", ""):
        return text
    spans = [(float(np.min(np.asarray(b)[:, 0])), float(np.max(np.asarray(b)[:, 0]))) for b in boxes]
    widths = [(right - left) / max(len(p), 1) for p, (left, right) in zip(pieces, spans) if p.strip()]
    if not widths:
        return text
    threshold = _SPACE_GAP * float(np.median(widths))
    out = [pieces[0]]
    for i in range(1, len(pieces)):
        before, after = pieces[i - 1], pieces[i]
        if before.strip() and after.strip() and spans[i][0] - spans[i - 1][1] > threshold:
            out.append(" ")
        out.append(after)
    return "".join(out)


def _reading_order(boxes: list[_TextBox]) -> list[str]:
    """Group boxes into lines (a box joins a line when its vertical middle lies within the
    line's first box) and read each line left to right."""
    lines: list[list[_TextBox]] = []
    for box in sorted(boxes, key=lambda b: (b.middle, b.left)):
        if lines and lines[-1][0].top <= box.middle <= lines[-1][0].bottom:
            lines[-1].append(box)
        else:
            lines.append([box])
    return [" ".join(b.text for b in sorted(line, key=lambda b: b.left)) for line in lines]


# -- house vocabulary --------------------------------------------------------------------------
def _house_scene(image: Any) -> str | None:
    """What the house image model's checker reads in `image`, as a phrase, or None when the
    checker is not installed, sees nothing it knows, or is unsure."""
    try:
        from ..house.checker import read_scene
    except ImportError:
        return None
    scene = read_scene(image)
    if scene is None:
        return None
    confidence = getattr(scene, "confidence", None)
    if confidence is not None and float(confidence) < _MIN_SCENE_CONFIDENCE:
        return None
    return _scene_phrase(scene)


def _scene_phrase(scene: Any) -> str:
    """The house caption's wording, from the checker's fields: "a large red circle in the
    center, on a blue background"."""
    words = [str(w) for w in (getattr(scene, "size", None), getattr(scene, "colour", None)) if w]
    shape = getattr(scene, "shape", None) or "shape"
    phrase = " ".join(["a", *words, str(shape)])
    if phrase.startswith("a ") and phrase[2:3] in "aeiou":
        phrase = "an " + phrase[2:]
    position = getattr(scene, "position", None)
    if position:
        position = str(position)
        phrase += " in the center" if position in ("center", "centre", "middle") else f" at the {position}"
    background = getattr(scene, "background", None)
    if background:
        phrase += f", on a {background} background"
    return phrase
