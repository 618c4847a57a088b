"""The house model's world: its vocabulary, captions (format and parser), a vectorised batch
renderer of scenes on any torch device, a random scene sampler and the held-out caption split.

Vocabulary
----------
A scene is one object on a plain background. A caption names up to five attributes:

    colour      red, green, blue, yellow, orange, purple, white, black
    shape       circle, square, triangle (apex up)
    position    left, right, top, bottom, center (also: centre, middle)
    size        small, large (also: big, little)
    background  any colour, written "<colour> background"; never the object's colour

Canonical form: "a small red circle at the left on a blue background",
"a large white triangle in the center on a black background". The words a, an, the, at, in,
on, of, with, and, background are fillers. A caption may leave attributes out ("a red
circle"): the model then picks them. 8 x 7 x 3 x 5 x 2 = 1,680 full captions exist; about a
tenth (chosen by a hash of the caption) are held out of training for evaluation.

This module knows nothing about models: it turns captions into attribute indices and indices
into pixels.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used, so the checker runs without it
    import torch

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (40, 170, 60),
    "blue": (30, 70, 220),
    "yellow": (240, 215, 40),
    "orange": (245, 135, 25),
    "purple": (135, 50, 180),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
# Where the object's box centre sits, as fractions of (width, height) from the top left.
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.28, 0.5),
    "right": (0.72, 0.5),
    "top": (0.5, 0.28),
    "bottom": (0.5, 0.72),
    "center": (0.5, 0.5),
}
# The side of the object's bounding box, as a fraction of the image side.
SIZES: dict[str, float] = {"small": 0.25, "large": 0.45}
SQUARE_SIDE = 0.88  # a square's side relative to its box, so it does not dwarf the circle

COLOUR_NAMES = tuple(COLOURS)
POSITION_NAMES = tuple(POSITIONS)
SIZE_NAMES = tuple(SIZES)
ALIASES = {"centre": "center", "middle": "center", "big": "large", "little": "small"}
FILLERS = frozenset({"a", "an", "the", "at", "in", "on", "of", "with", "and", "background"})
ATTRIBUTES = ("background", "colour", "shape", "position", "size")
# The values each attribute takes, in index order (the renderer and the model use the indices).
VALUES: dict[str, tuple[str, ...]] = {
    "background": COLOUR_NAMES,
    "colour": COLOUR_NAMES,
    "shape": SHAPES,
    "position": POSITION_NAMES,
    "size": SIZE_NAMES,
}
POSITION_JITTER = 0.03  # +- fraction of the image side
SCALE_JITTER = 0.08  # +- fraction of the box side
NATIVE_SIZE = 32  # the model's resolution
HELD_OUT_PERCENT = 10


class CaptionError(ValueError):
    """A caption the house vocabulary cannot express (the message says what to write instead)."""


def vocabulary_help() -> str:
    """One line describing what the house model can draw."""
    return (
        f"colours: {', '.join(COLOUR_NAMES)}; shapes: {', '.join(SHAPES)}; positions: {', '.join(POSITION_NAMES)}; "
        f"sizes: {', '.join(SIZE_NAMES)}; background: '<colour> background' "
        "(e.g. 'a small red circle at the left on a blue background')"
    )


@dataclass(frozen=True)
class Caption:
    """The attributes a caption names; None where it leaves the choice to the model."""

    background: str | None = None
    colour: str | None = None
    shape: str | None = None
    position: str | None = None
    size: str | None = None

    def text(self) -> str:
        """The canonical caption (partial captions leave out what they do not name)."""
        words = [w for w in (self.size, self.colour, self.shape or "object") if w]
        words.insert(0, _article(words[0]))
        if self.position:
            words.append("in the center" if self.position == "center" else f"at the {self.position}")
        if self.background:
            words.append(f"on {_article(self.background)} {self.background} background")
        return " ".join(words)

    def is_full(self) -> bool:
        return all(getattr(self, f.name) is not None for f in fields(self))

    def indices(self) -> tuple[int | None, ...]:
        """Attribute indices in ATTRIBUTES order (None where unnamed)."""
        return tuple(
            None if getattr(self, a) is None else VALUES[a].index(getattr(self, a)) for a in ATTRIBUTES
        )


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _words(text: str) -> list[str]:
    return [ALIASES.get(w, w) for w in re.findall(r"[a-z]+", text.lower())]


def parse_caption(text: str, strict: bool = True) -> tuple[Caption, list[str]]:
    """Parse `text` into a Caption and the words it ignored.

    A colour directly followed by "background" is the background; any other colour is the
    object's. strict=True raises CaptionError on any word outside the vocabulary; either way a
    caption that names one attribute twice (two shapes, say) raises CaptionError.
    """
    words = _words(text)
    found: dict[str, str] = {}
    ignored: list[str] = []
    for i, word in enumerate(words):
        if word in COLOURS:
            attribute = "background" if i + 1 < len(words) and words[i + 1] == "background" else "colour"
        elif word in SHAPES:
            attribute = "shape"
        elif word in POSITIONS:
            attribute = "position"
        elif word in SIZES:
            attribute = "size"
        elif word in FILLERS:
            continue
        else:
            ignored.append(word)
            continue
        if attribute in found and found[attribute] != word:
            raise CaptionError(
                f"the caption names two {attribute}s ({found[attribute]}, {word}); the house model draws one object"
                + (" (write '<colour> background' for the background)" if attribute == "colour" else "")
            )
        found[attribute] = word
    if strict and ignored:
        raise CaptionError(f"unknown word(s) {', '.join(repr(w) for w in ignored)}; the vocabulary is {vocabulary_help()}")
    caption = Caption(**found)
    if caption.colour is not None and caption.colour == caption.background:
        raise CaptionError(f"the object and the background are both {caption.colour}: the object would be invisible")
    return caption, ignored


def all_captions() -> list[Caption]:
    """Every full caption, in a fixed order."""
    return [
        Caption(background=bg, colour=c, shape=s, position=p, size=z)
        for bg in COLOUR_NAMES
        for c in COLOUR_NAMES
        if c != bg
        for s in SHAPES
        for p in POSITION_NAMES
        for z in SIZE_NAMES
    ]


def is_held_out(caption: Caption) -> bool:
    """Whether a full caption belongs to the evaluation split (never seen in training)."""
    digest = hashlib.sha256(caption.text().encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 100 < HELD_OUT_PERCENT


def split_captions(split: str) -> list[Caption]:
    """The full captions of `split`: "train", "heldout" or "all"."""
    if split not in ("train", "heldout", "all"):
        raise ValueError(f"split must be train, heldout or all, not {split!r}")
    captions = all_captions()
    if split == "all":
        return captions
    return [c for c in captions if is_held_out(c) == (split == "heldout")]


@lru_cache(maxsize=8)
def _split_table(split: str, device: str) -> torch.Tensor:
    import torch

    rows = [c.indices() for c in split_captions(split)]
    return torch.tensor(rows, dtype=torch.long, device=device)


@dataclass
class SceneBatch:
    """B scenes as tensors on one device: attribute indices (B,) and the random placement."""

    background: torch.Tensor
    colour: torch.Tensor
    shape: torch.Tensor
    position: torch.Tensor
    size: torch.Tensor
    offset: torch.Tensor  # (B, 2) box-centre offset from the position's anchor, fraction of the side
    scale: torch.Tensor  # (B,) box side multiplier around the size's nominal side

    @property
    def attributes(self) -> torch.Tensor:
        """(B, 5) indices in ATTRIBUTES order."""
        import torch

        return torch.stack([self.background, self.colour, self.shape, self.position, self.size], dim=1)

    def __len__(self) -> int:
        return int(self.colour.shape[0])

    def caption(self, i: int) -> Caption:
        row = self.attributes[i].tolist()
        return Caption(**{a: VALUES[a][v] for a, v in zip(ATTRIBUTES, row)})


def scenes_from_attributes(
    attributes: torch.Tensor, generator: torch.Generator | None = None, jitter: bool = True
) -> SceneBatch:
    """A SceneBatch for (B, 5) attribute indices, with random placement unless jitter=False."""
    import torch

    n, device = attributes.shape[0], attributes.device
    if jitter:
        offset = (torch.rand(n, 2, generator=generator, device=device) * 2 - 1) * POSITION_JITTER
        scale = 1 + (torch.rand(n, generator=generator, device=device) * 2 - 1) * SCALE_JITTER
    else:
        offset, scale = torch.zeros(n, 2, device=device), torch.ones(n, device=device)
    bg, colour, shape, position, size = attributes.unbind(dim=1)
    return SceneBatch(bg, colour, shape, position, size, offset, scale)


def sample_scenes(
    n: int, generator: torch.Generator | None = None, device: str | torch.device = "cpu", split: str = "train"
) -> SceneBatch:
    """n random full scenes whose captions belong to `split`, drawn on `device`."""
    import torch

    table = _split_table(split, str(torch.device(device)))
    pick = torch.randint(0, table.shape[0], (n,), generator=generator, device=table.device)
    return scenes_from_attributes(table[pick], generator)


def _shape_geometry(batch: SceneBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Box centre x, y and side (fractions of the image side), each (B,)."""

    anchors, sides, _ = _constants(str(batch.colour.device))
    centre = anchors[batch.position] + batch.offset
    return centre[:, 0], centre[:, 1], sides[batch.size] * batch.scale


def coverage(
    shape: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, side: torch.Tensor, height: int, width: int | None = None
) -> torch.Tensor:
    """(B, H, W) anti-aliased coverage in [0, 1] of shapes (indices into SHAPES) whose box has
    centre (cx, cy) and side `side`, all fractions of the image (a square image is assumed for
    the side; non-square outputs stretch)."""
    import torch

    width = width or height
    device = cx.device
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    dx = xs.view(1, 1, -1) - cx.view(-1, 1, 1)
    dy = ys.view(1, -1, 1) - cy.view(-1, 1, 1)
    half = (side / 2).view(-1, 1, 1)
    # Signed distances (negative inside), in fractions of the image side.
    circle = torch.sqrt(dx * dx + dy * dy) - half
    h = half * SQUARE_SIDE
    qx, qy = dx.abs() - h, dy.abs() - h
    square = torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2) + torch.maximum(qx, qy).clamp(max=0)
    # Apex up at (0, -half), base corners at (+-half, +half): three half-planes.
    edge = (2 * dx.abs() - (dy + half)) / math.sqrt(5.0)
    triangle = torch.maximum(dy - half, edge)
    distance = torch.stack([circle, square, triangle], dim=1)  # (B, 3, H, W)
    distance = distance.gather(1, shape.view(-1, 1, 1, 1).expand(-1, 1, height, width)).squeeze(1)
    return (0.5 - distance * max(height, width)).clamp(0.0, 1.0)  # one pixel of soft edge


def palette(device: str | torch.device = "cpu") -> torch.Tensor:
    """(8, 3) colours in [0, 1], in COLOUR_NAMES order."""
    import torch

    return _constants(str(torch.device(device)))[2]


@lru_cache(maxsize=8)
def _constants(device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Position anchors, nominal sides and the palette, made once per device (a host-to-device
    copy each step would stall the GPU queue)."""
    import torch

    anchors = torch.tensor(list(POSITIONS.values()), device=device)
    sides = torch.tensor(list(SIZES.values()), device=device)
    colours = torch.tensor(list(COLOURS.values()), dtype=torch.float32, device=device) / 255.0
    return anchors, sides, colours


def render(batch: SceneBatch, size: int = NATIVE_SIZE) -> torch.Tensor:
    """(B, 3, size, size) images in [0, 1] on the batch's device."""
    cx, cy, side = _shape_geometry(batch)
    alpha = coverage(batch.shape, cx, cy, side, size).unsqueeze(1)
    colours = palette(batch.colour.device)
    fg = colours[batch.colour].view(-1, 3, 1, 1)
    bg = colours[batch.background].view(-1, 3, 1, 1)
    return bg + (fg - bg) * alpha


def render_caption(caption: Caption, size: int = NATIVE_SIZE, jitter: bool = False,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """(3, size, size) image in [0, 1] of one full caption."""
    import torch

    if not caption.is_full():
        raise CaptionError(f"rendering needs a full caption, not {caption.text()!r}")
    attributes = torch.tensor([caption.indices()], dtype=torch.long)
    return render(scenes_from_attributes(attributes, generator, jitter=jitter), size)[0]
