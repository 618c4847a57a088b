"""Translation keeps document structure: the parsers with a recording translator, then the translate recipe on gemma."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from omniforge.config import load_settings
from omniforge.errors import InvalidRequestError
from omniforge.pipelines import ArtifactStore, PipelineRunner, PipelineStore
from omniforge.pipelines.translate import (
    Translator,
    parse_languages,
    translate_document,
    translate_html,
    translate_markdown,
)
from omniforge.service import Service

MARKDOWN = """# Getting started

Install the package with pip. Then start the
server on your machine.

## Features

- Fast answers on your own machine
- Works without the internet, see `offline_mode`
  and the notes below

1. Open the settings
2. Click **Save** to keep your changes

| Option | Meaning |
|--------|---------|
| speed | How fast it runs |

```python
print("Install the package")  # code is never translated
```

    indented code is never translated

> Thank you for your order.

Read the [user guide](https://example.com/user_guide?lang=en) or see ![the logo](logo.png).

---
"""

HTML = """<!DOCTYPE html>
<html lang="en"><head><title>Thank you for your order</title><style>p { color: red; }</style></head>
<body>
<h1 class="title">Getting started</h1>
<p>Click the button to save your changes. <a href="/save?a=1&amp;b=2">Open the settings</a> first.</p>
<img src="cat.png" alt="The cat is on the table">
<pre><code>if a &lt; b: print("Good morning")</code></pre>
<!-- a comment stays -->
<script>if (a < b) { go("Good morning"); }</script>
</body></html>
"""


class Recording(Translator):
    """A Translator whose 'model' brackets each sentence, to check what is and is not sent."""

    def __init__(self) -> None:  # no service: ask() is replaced
        self.memory, self.collecting, self.unchanged = {}, None, 0
        self.source, self.target = "English", "Test"
        self.sent: list[str] = []

    def ask(self, text: str) -> str:
        self.sent.append(text)
        return f"«{text.upper()}»"


def _skeleton(markdown: str) -> list[str]:
    """Each line's markup: heading level, list marker, table bars, fences and code as they are."""
    out, code = [], False
    for line in markdown.split("\n"):
        if line.startswith("```"):
            code = not code
            out.append(line)
        elif code or line.startswith("    "):
            out.append(line)
        else:
            marks = re.match(r"^\s*(#+|[-*+]|\d+\.|>|\||---)?", line).group(0)
            kept = "".join(re.findall(r"`[^`]*`|\]\([^)]*\)", line))
            out.append(f"{marks}|{line.count('|')}|{kept}")
    return out


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[Any] = []
        self.raw: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, [(k, v) for k, v in attrs if k not in ("alt", "title")]))

    def handle_endtag(self, tag: str) -> None:
        self.tags.append(("/", tag))

    def handle_data(self, data: str) -> None:
        if self.lasttag in ("script", "style", "code"):
            self.raw.append(data)

    def handle_comment(self, data: str) -> None:
        self.tags.append(("!--", data))


def _tags(text: str) -> Tags:
    parser = Tags()
    parser.feed(text)
    return parser


def test_markdown_structure_is_kept_and_only_prose_is_sent() -> None:
    tr = Recording()
    out = translate_markdown(MARKDOWN, tr)
    # the wrapped paragraph became one line; every other line keeps its markup
    assert _skeleton(out) == _skeleton(MARKDOWN.replace("the\nserver", "the server"))
    sent = " ".join(tr.sent)
    for never in ("offline_mode", "print(", "indented code", "https://", "logo.png", "**", "#", "|", "`"):
        assert never not in sent
    assert "Install the package with pip." in tr.sent and "Then start the server on your machine." in tr.sent
    assert "« FAST ANSWERS ON YOUR OWN MACHINE»" not in out and "- «FAST ANSWERS ON YOUR OWN MACHINE»" in out
    assert "[«USER GUIDE»](https://example.com/user_guide?lang=en)" in out and "![«THE LOGO»](logo.png)" in out
    assert "**«SAVE»**" in out and "  «AND THE NOTES BELOW»" in out


def test_html_tags_attributes_and_code_are_kept() -> None:
    tr = Recording()
    out = translate_html(HTML, tr)
    before, after = _tags(HTML), _tags(out)
    assert after.tags == before.tags and after.raw == before.raw
    assert "«THANK YOU FOR YOUR ORDER»" in out and 'alt="«THE CAT IS ON THE TABLE»"' in out
    assert 'href="/save?a=1&amp;b=2"' in out and "<!DOCTYPE html>" in out
    assert not any("Good morning" in s or "color" in s for s in tr.sent)


def test_each_sentence_is_asked_once_with_progress() -> None:
    tr = Recording()
    seen: list[tuple[int, int]] = []
    text = "# Hello\n\nHello\n\n- Hello\n- World. Hello"
    out = translate_document(text, "markdown", tr, progress=lambda done, total: seen.append((done, total)))
    assert tr.sent == ["Hello", "World."]  # unique sentences, in order
    assert seen[0] == (0, 2) and seen[-1] == (2, 2)
    assert out == "# «HELLO»\n\n«HELLO»\n\n- «HELLO»\n- «WORLD.» «HELLO»"


def test_languages_are_parsed() -> None:
    assert parse_languages("fr, DE,french , Swahili") == ["French", "German", "Swahili"]
    assert parse_languages(["es"]) == ["Spanish"]
    for bad in ("", " , ", "fr; drop table", ["fr", 3]):
        with pytest.raises(InvalidRequestError):
            parse_languages(bad)


# -- the real model --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Service:
    svc = Service(load_settings(home=tmp_path_factory.mktemp("translate") / "home", threads=1))
    yield svc
    svc.close()


@pytest.mark.slow
def test_translate_recipe_into_two_languages(service: Service, tmp_path: Path) -> None:
    doc = tmp_path / "guide.md"
    doc.write_text(MARKDOWN)
    page = tmp_path / "page.html"
    page.write_text(HTML)
    store = PipelineStore(tmp_path / "jobs.db")
    runner = PipelineRunner(service, store, ArtifactStore(tmp_path / "artifacts", store))
    try:
        md_job = runner.wait(runner.submit("translate", {"document": doc, "languages": "fr, de"}), timeout=600)
        html_job = runner.wait(runner.submit("translate", {"document": page, "languages": "es"}), timeout=600)
        assert md_job.status == "succeeded", md_job.error
        assert html_job.status == "succeeded", html_job.error
        french = runner.artifacts.read(md_job.outputs["documents"]["French"]).decode()
        spanish = runner.artifacts.read(html_job.outputs["documents"]["Spanish"]).decode()
    finally:
        runner.close()
        store.close()
    assert md_job.outputs["languages"] == ["French", "German"] and md_job.outputs["format"] == "markdown"
    assert md_job.outputs["documents"]["German"]["name"] == "guide.german.md"
    assert french == md_job.outputs["texts"]["French"]
    for text in (french, md_job.outputs["texts"]["German"]):
        assert _skeleton(text) == _skeleton(MARKDOWN.replace("the\nserver", "the server"))
    assert french.startswith("# Premiers pas\n")  # the worked example's own sentence
    assert md_job.outputs["texts"]["German"].startswith("# Erste Schritte\n")
    prose = [line for line in french.split("\n") if line and not line.startswith(("```", "    ", "|-", "---"))]
    original = [line for line in MARKDOWN.replace("the\nserver", "the server").split("\n")
                if line and not line.startswith(("```", "    ", "|-", "---"))]
    changed = sum(a != b for a, b in zip(prose, original))
    assert changed >= 0.7 * len(original), list(zip(prose, original))
    assert html_job.outputs["format"] == "html"
    assert _tags(spanish).tags == _tags(HTML).tags and _tags(spanish).raw == _tags(HTML).raw
    assert "Getting started" not in spanish and "Thank you for your order" not in spanish
