"""One small real input and a check of the real output for every built-in recipe, shared by the CLI
(`omniforge run`) and API (`POST /v1/pipelines/{name}/runs`) tests, so each recipe runs both ways."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

Read = Callable[[Any], bytes]  # an output artifact (a CLI file path or an API reference) -> its bytes


def sign_png() -> bytes:
    img = Image.new("RGB", (360, 120), (255, 255, 255))
    ImageDraw.Draw(img).text((20, 30), "OPEN", fill=(0, 0, 0), font=ImageFont.load_default(size=48))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def knowledge_folder(root: Path) -> Path:
    folder = root / "kb"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "returns.md").write_text("# Returns\n\nYou can return any item within 30 days of delivery for a "
                                       "full refund. Pack it in the original box and print the free label.\n")
    (folder / "shipping.md").write_text("# Shipping\n\nOrders ship from our warehouse in Lyon within two working "
                                        "days. Delivery inside the EU takes three to five days.\n")
    return folder


MARKDOWN = "# Getting started\n\nInstall the package with pip.\n\n- Fast answers\n- Works offline\n"


def _voice(out: dict[str, Any], read: Read) -> None:
    assert "france" in out["transcript"].lower() and out["reply"].strip()
    assert read(out["audio"])[:4] == b"RIFF"


def _caption(out: dict[str, Any], read: Read) -> None:
    assert "open" in out["caption"].lower() and out["alt_text"].strip()


def _summary(out: dict[str, Any], read: Read) -> None:
    assert out["summary"].strip() and out["format"] in ("text", "markdown")


def _knowledge(out: dict[str, Any], read: Read) -> None:
    assert out["known"] and out["citations"][0]["file"] == "returns.md", out
    assert out["index"]["added"] == 2


def _service(out: dict[str, Any], read: Read) -> None:
    assert out["reply"].strip() and out["turn"] == 1 and out["citations"][0]["file"] == "shipping.md", out


def _code(out: dict[str, Any], read: Read) -> None:
    assert "def square" in out["code"] and "sandbox" in out["answer"].lower()


def _translate(out: dict[str, Any], read: Read) -> None:
    french = read(out["documents"]["French"]).decode()
    assert out["languages"] == ["French"] and french.startswith("# Premiers pas\n\n")
    assert french.count("\n- ") == 2 and french != MARKDOWN


def _marketing(out: dict[str, Any], read: Read) -> None:
    assert out["title"] and len(out["images"]) == 1 and read(out["images"][0])[:4] == b"\x89PNG"
    assert read(out["copy"]).decode().startswith("# ") and read(out["translations"]["French"]).decode().startswith("# ")
    video = read(out["video"])
    # one scene: as long as its narrated sentence, which the LLM may keep short (1.6 s seen)
    assert video[4:8] == b"ftyp" and out["video_seconds"] > 0.5 and out["narration"].strip()


def cases(root: Path, wav: bytes) -> dict[str, tuple[dict[str, Any], Callable[[dict[str, Any], Read], None]]]:
    """recipe -> (inputs, check). Binary inputs are bytes: the CLI writes them to files, the API sends data URLs."""
    kb = str(knowledge_folder(root))
    return {
        "voice-assistant": ({"audio": wav}, _voice),
        "caption-image": ({"image": sign_png()}, _caption),
        "summarize": ({"document": "The harbour of Port Ellis sheltered sixty fishing boats. Merchants sold cod "
                                   "on the quay every morning. A new stone pier was finished in the spring.",
                       "length": "short"}, _summary),
        "knowledge-qa": ({"folder": kb, "question": "How many days do I have to return an item?"}, _knowledge),
        "customer-service": ({"folder": kb, "message": "Where do orders ship from?", "session": "s1"}, _service),
        "code-assistant": ({"task": "Return the square of a number x.",
                            "tests": "assert square(3) == 9\n"}, _code),
        "translate": ({"document": MARKDOWN, "languages": "fr"}, _translate),
        "marketing-suite": ({"brief": "A red hiking backpack with a rain cover for day trips.", "languages": "fr",
                             "images": 1, "seconds": 5}, _marketing),
    }
