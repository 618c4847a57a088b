"""Reads a scene back from pixels without seeing its caption: background, colour, shape, position
and size of the single object on a plain background, or None when the image is not such a scene.

Method (numpy only, no torch): downscale to 32x32 with an area filter; the background is the
median border colour; the object is the largest connected region that differs from it; its
anti-aliased coverage is projected on the background -> object colour line; the shape is the
template (circle, square, triangle of the same area and centroid, drawn with the renderer's
geometry) that matches the coverage best. Used by evaluation and by the image-facts backend.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .scenes import COLOUR_NAMES, COLOURS, NATIVE_SIZE, POSITIONS, SHAPES, SIZES, SQUARE_SIDE, Caption

if TYPE_CHECKING:
    from PIL import Image

BACKGROUND_TOLERANCE = 0.12  # RGB distance (0-1 scale) of a border pixel still counted as background
OBJECT_THRESHOLD = 0.15  # RGB distance from the background that marks an object pixel
PALETTE_TOLERANCE = 0.3  # farthest a measured colour may sit from its palette colour
MAX_SHAPE_ERROR = 0.6  # template mismatch (L1 / area) above which no shape is read
_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32) / 255.0
_SIZE_SPLIT = (SIZES["small"] + SIZES["large"]) / 2


@dataclass(frozen=True)
class SceneReading:
    background: str
    colour: str
    shape: str
    position: str
    size: str
    confidence: float  # 0-1: how well the best shape template fits (1 - mismatch)
    centre: tuple[float, float]  # the object's box centre, fractions of width and height
    side: float  # the object's box side, fraction of the image side

    def caption(self) -> Caption:
        return Caption(background=self.background, colour=self.colour, shape=self.shape,
                       position=self.position, size=self.size)

    def describe(self) -> str:
        return self.caption().text()


def _nearest_colour(rgb: np.ndarray, exclude: int | None = None) -> tuple[int, float]:
    d = np.linalg.norm(_PALETTE - rgb, axis=1)
    if exclude is not None:
        d[exclude] = np.inf
    i = int(np.argmin(d))
    return i, float(d[i])


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected regions of a boolean mask, largest first, each as an (N, 2) array of (y, x)."""
    seen = np.zeros_like(mask, dtype=bool)
    h, w = mask.shape
    regions: list[np.ndarray] = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        seen[y0, x0] = True
        queue, cells = deque([(y0, x0)]), []
        while queue:
            y, x = queue.popleft()
            cells.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        regions.append(np.array(cells))
    return sorted(regions, key=len, reverse=True)


def template(shape: int, cx: float, cy: float, side: float, size: int = NATIVE_SIZE) -> np.ndarray:
    """(size, size) anti-aliased coverage of one shape, the same geometry as scenes.coverage."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    dx = coords[None, :] - cx
    dy = coords[:, None] - cy
    half = side / 2
    if SHAPES[shape] == "circle":
        distance = np.sqrt(dx * dx + dy * dy) - half
    elif SHAPES[shape] == "square":
        h = half * SQUARE_SIDE
        qx, qy = np.abs(dx) - h, np.abs(dy) - h
        distance = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2) + np.minimum(np.maximum(qx, qy), 0)
    else:
        edge = (2 * np.abs(dx) - (dy + half)) / math.sqrt(5.0)
        distance = np.maximum(dy - half, edge)
    return np.clip(0.5 - distance * size, 0.0, 1.0)


def _box_for(shape: str, area: float, cx: float, cy: float) -> tuple[float, float, float]:
    """Box centre and side of `shape` with coverage `area` (fraction of the image) and centroid."""
    if shape == "circle":
        side = math.sqrt(4 * area / math.pi)
    elif shape == "square":
        side = math.sqrt(area) / SQUARE_SIDE
    else:
        side = math.sqrt(2 * area)
        cy -= side / 6  # a triangle's centroid sits a third of the way up from its base
    return cx, cy, side


def _as_array(image: Image.Image) -> np.ndarray:
    from PIL import Image as PILImage

    rgb = image.convert("RGB")
    if rgb.size != (NATIVE_SIZE, NATIVE_SIZE):
        rgb = rgb.resize((NATIVE_SIZE, NATIVE_SIZE), PILImage.Resampling.BOX)
    return np.asarray(rgb, dtype=np.float32) / 255.0


def read_scene(image: Image.Image) -> SceneReading | None:
    """What the house vocabulary sees in `image` (any size), or None when it is not one object on
    a plain background in the house colours."""
    a = _as_array(image)
    n = NATIVE_SIZE
    # 1. The background: the median border colour, if most of the border agrees with it.
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    bg = np.median(border, axis=0)
    if np.mean(np.linalg.norm(border - bg, axis=1) < BACKGROUND_TOLERANCE) < 0.6:
        return None
    bg_index, bg_error = _nearest_colour(bg)
    if bg_error > PALETTE_TOLERANCE:
        return None
    # 2. The object: the largest region that differs from the background, and nothing much else.
    distance = np.linalg.norm(a - bg, axis=2)
    regions = _components(distance > OBJECT_THRESHOLD)
    if not regions or len(regions[0]) < 3:
        return None
    main = regions[0]
    stray = sum(len(r) for r in regions[1:])
    if stray > max(4, 0.15 * len(main)):
        return None
    # 3. Its colour: the median of its most distinct pixels (the interior, not the soft edge).
    d_main = distance[main[:, 0], main[:, 1]]
    interior = main[d_main >= 0.8 * d_main.max()]
    obj = np.median(a[interior[:, 0], interior[:, 1]], axis=0)
    colour_index, colour_error = _nearest_colour(obj, exclude=bg_index)
    if colour_error > PALETTE_TOLERANCE:
        return None
    # 4. Coverage: each pixel's position on the background -> object colour line.
    axis = obj - bg
    alpha = np.clip(((a - bg) @ axis) / max(float(axis @ axis), 1e-6), 0.0, 1.0)
    near = np.zeros((n, n), dtype=bool)
    near[main[:, 0], main[:, 1]] = True
    near |= np.roll(near, 1, 0) | np.roll(near, -1, 0) | np.roll(near, 1, 1) | np.roll(near, -1, 1)
    alpha = np.where(near, alpha, 0.0)
    area = float(alpha.sum())
    if area < 2:
        return None
    coords = (np.arange(n, dtype=np.float32) + 0.5) / n
    cx = float((alpha.sum(axis=0) * coords).sum() / area)
    cy = float((alpha.sum(axis=1) * coords).sum() / area)
    # 5. The shape: the best-fitting template of the same area and centroid.
    best = (math.inf, 0, (cx, cy, 0.0))
    for k, shape in enumerate(SHAPES):
        box = _box_for(shape, area / (n * n), cx, cy)
        error = float(np.abs(alpha - template(k, *box)).sum()) / area
        best = min(best, (error, k, box))
    error, k, (bx, by, side) = best
    if error > MAX_SHAPE_ERROR:
        return None
    position = min(POSITIONS, key=lambda p: (POSITIONS[p][0] - bx) ** 2 + (POSITIONS[p][1] - by) ** 2)
    return SceneReading(
        background=COLOUR_NAMES[bg_index],
        colour=COLOUR_NAMES[colour_index],
        shape=SHAPES[k],
        position=position,
        size="large" if side > _SIZE_SPLIT else "small",
        confidence=round(max(0.0, 1.0 - error), 3),
        centre=(round(bx, 3), round(by, 3)),
        side=round(side, 3),
    )
