"""Draws docs/house-image-samples.png: the house model on held-out captions (python docs/make_house_samples.py)."""
import omniforge
from omniforge.house.scenes import split_captions
from PIL import Image, ImageDraw, ImageFont
held = split_captions("heldout")
shapes = ["circle", "square", "triangle", "triangle", "square", "circle", "triangle", "square"]
caps, used = [], set()
for k, shape in enumerate(shapes):
    pick = [c for c in held[k * 7:] if c.shape == shape and c.text() not in used][0]
    used.add(pick.text()); caps.append(pick.text())
tiles = []
for i, cap in enumerate(caps):
    img = omniforge.image(cap, width=128, height=128, seed=i)[0]
    tiles.append((cap, img))
W, H = 128, 128 + 44
grid = Image.new("RGB", (W * 4 + 5 * 6, H * 2 + 3 * 6), (255, 255, 255))
font = ImageFont.load_default(size=10)
for k, (cap, img) in enumerate(tiles):
    x, y = 6 + (k % 4) * (W + 6), 6 + (k // 4) * (H + 6)
    grid.paste(img, (x, y))
    cap = cap.removeprefix("a ")
    i1, i2 = cap.index(" at the ") if " at the " in cap else cap.index(" in the "), cap.index(" on ")
    lines = [cap[:i1], cap[i1 + 1:i2], cap[i2 + 1:]]
    for j, line in enumerate(lines):
        ImageDraw.Draw(grid).text((x, y + 130 + 12 * j), line, fill=(0, 0, 0), font=font)
grid.save("docs/house-image-samples.png", optimize=True)
print("\n".join(caps))
