"""Prompts in the house image model's vocabulary from any text: things, colours, backdrops and places mapped onto it.

The storyboard video model and the marketing suite's product images use it: the house model
refuses a prompt that names neither a shape nor a colour, and draws only its own words. This
module imports nothing heavy (scenes.py imports torch; a unit test keeps the vocabularies equal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")

# The house vocabulary (as in scenes.py).
COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "white", "black")
SHAPES = ("circle", "square", "triangle")
POSITIONS = ("left", "right", "center", "top", "bottom")
SIZES = ("large", "small")
# Things a story mentions -> (shape, colour or None). Backdrops -> a background colour.
_THINGS: dict[str, tuple[str, str | None]] = {
    **{shape: (shape, None) for shape in SHAPES},
    **dict.fromkeys(("ball", "planet", "wheel", "coin", "eye", "bubble", "egg", "ring", "face", "head",
                     "clock", "dot", "world", "earth", "cat", "dog", "bird", "fish"), ("circle", None)),
    "sun": ("circle", "yellow"), "moon": ("circle", "white"), "apple": ("circle", "red"),
    "star": ("circle", "yellow"), "flower": ("circle", "purple"),
    **dict.fromkeys(("house", "box", "window", "door", "building", "city", "room", "book", "car", "wall",
                     "tower", "gift", "robot", "brick", "table", "train", "castle"), ("square", None)),
    "mountain": ("triangle", None), "hill": ("triangle", "green"), "tree": ("triangle", "green"),
    "tent": ("triangle", "orange"), "pyramid": ("triangle", "yellow"), "boat": ("triangle", "white"),
    "sail": ("triangle", "white"), "rocket": ("triangle", "red"), "fire": ("triangle", "red"),
    "wave": ("triangle", "blue"),
}  # fmt: skip
_BACKDROPS: dict[str, str] = {
    **dict.fromkeys(("sky", "sea", "ocean", "water", "lake", "river", "rain"), "blue"),
    **dict.fromkeys(("grass", "forest", "field", "garden", "meadow", "jungle"), "green"),
    **dict.fromkeys(("night", "space", "dark", "cave", "shadow", "storm"), "black"),
    **dict.fromkeys(("snow", "ice", "cloud", "clouds", "winter", "fog"), "white"),
    **dict.fromkeys(("desert", "sand", "beach", "day", "morning"), "yellow"),
    **dict.fromkeys(("sunset", "autumn", "dawn"), "orange"),
    **dict.fromkeys(("dusk", "evening", "dream"), "purple"),
}  # fmt: skip
_COLOUR_WORDS = {**{c: c for c in COLOURS}, "gold": "yellow", "golden": "yellow", "pink": "red",
                 "brown": "orange", "violet": "purple", "grey": "white", "gray": "white"}  # fmt: skip
_POSITION_WORDS = {"left": "left", "right": "right", "center": "center", "centre": "center", "middle": "center",
                   "top": "top", "above": "top", "up": "top", "high": "top", "rises": "top", "flies": "top",
                   "bottom": "bottom", "below": "bottom", "down": "bottom", "ground": "bottom",
                   "floor": "bottom", "falls": "bottom", "sinks": "bottom"}  # fmt: skip
_SIZE_WORDS = {
    **dict.fromkeys(("small", "little", "tiny", "baby", "young", "far"), "small"),
    **dict.fromkeys(("large", "big", "huge", "giant", "great", "tall", "vast", "near"), "large"),
}
_CONTRAST = {"white": "blue", "yellow": "blue", "black": "white", "blue": "yellow", "red": "white",
             "green": "yellow", "orange": "purple", "purple": "orange"}  # fmt: skip


@dataclass
class HouseScene:
    size: str
    colour: str
    shape: str
    position: str
    background: str

    def caption(self) -> str:
        where = "in the center" if self.position == "center" else f"at the {self.position}"
        return f"a {self.size} {self.colour} {self.shape} {where} on a {self.background} background"


def house_prompt(text: str, index: int, previous: str | None = None) -> str:
    """A caption in the house model's vocabulary for scene `index`. A colour word before a backdrop
    ("blue sea") colours the background, other colour words the shape; things ("sun", "house")
    pick the shape, backdrops ("night") the background; what is not found cycles with the index.
    A caption equal to `previous` moves the shape elsewhere, so neighbouring scenes differ."""
    words = [w.lower() for w in _WORD.findall(text)]
    found: dict[str, str] = {}
    colours: list[str] = []
    for i, word in enumerate(words):
        thing = word[:-1] if word.endswith("s") and word[:-1] in _THINGS else word
        if word in _COLOUR_WORDS:
            if any(w in _BACKDROPS for w in words[i + 1 : i + 3]):
                found.setdefault("backdrop", _COLOUR_WORDS[word])
            else:
                colours.append(_COLOUR_WORDS[word])
        if thing in _THINGS and "shape" not in found:
            found["shape"], thing_colour = _THINGS[thing]
            if thing_colour and not colours:
                found["thing_colour"] = thing_colour
        for table, key in ((_BACKDROPS, "backdrop"), (_POSITION_WORDS, "position"), (_SIZE_WORDS, "size")):
            if word in table:
                found.setdefault(key, table[word])
    colour = colours[0] if colours else found.get("thing_colour")
    background = found.get("backdrop") or (colours[1] if len(colours) > 1 else None)
    if background is None:
        background = next(
            c for k in range(len(COLOURS)) if (c := COLOURS[(index * 3 + 2 + k) % len(COLOURS)]) != colour
        )
    if colour is None:
        colour = next(c for k in range(len(COLOURS)) if (c := COLOURS[(index * 3 + k) % len(COLOURS)]) != background)
    if background == colour:
        background = _CONTRAST[colour]
    scene = HouseScene(
        size=found.get("size", SIZES[index % len(SIZES)]),
        colour=colour,
        shape=found.get("shape", SHAPES[index % len(SHAPES)]),
        position=found.get("position", POSITIONS[index % len(POSITIONS)]),
        background=background,
    )
    if scene.caption() == previous:
        scene.position = POSITIONS[(POSITIONS.index(scene.position) + 1) % len(POSITIONS)]
    return scene.caption()


__all__ = ["COLOURS", "POSITIONS", "SHAPES", "SIZES", "HouseScene", "house_prompt"]
