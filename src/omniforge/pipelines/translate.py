"""Document translation that keeps structure: Markdown and HTML are parsed, only their prose goes to the model.

Markup is never shown to the model, so it cannot be lost: headings, list markers, tables, code
blocks and spans, link targets, HTML tags and attributes (other than alt/title/placeholder/
aria-label, which are prose) are copied through; each run of prose between them is translated
sentence by sentence. That costs some context at inline markup ("click **here**" is three runs)
but a small model translates a sentence far better than a paragraph with markup in it.

The model is any text model, asked by completion with parallel examples ("English: ...\\nFrench:
..."): that works with base models such as the embedded gemma-3-270m, whose chat turns ignore a
"translate" instruction, and with instruction-tuned ones alike. Examples exist for the languages in
EXAMPLES (any pair of them); other languages are asked without examples.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError
from ..types import GenerationParams
from .steps import StepContext, register_step

if TYPE_CHECKING:
    from ..service import Service

# The same five sentences in each language: any two columns are parallel examples.
EXAMPLES: dict[str, list[str]] = {
    "English": ["Getting started", "Good morning.", "The cat is on the table.", "Thank you for your order.",
                "Click the button to save your changes."],
    "French": ["Premiers pas", "Bonjour.", "Le chat est sur la table.", "Merci pour votre commande.",
               "Cliquez sur le bouton pour enregistrer vos modifications."],
    "Spanish": ["Primeros pasos", "Buenos días.", "El gato está sobre la mesa.", "Gracias por su pedido.",
                "Haga clic en el botón para guardar sus cambios."],
    "German": ["Erste Schritte", "Guten Morgen.", "Die Katze ist auf dem Tisch.", "Vielen Dank für Ihre Bestellung.",
               "Klicken Sie auf die Schaltfläche, um Ihre Änderungen zu speichern."],
    "Italian": ["Primi passi", "Buongiorno.", "Il gatto è sul tavolo.", "Grazie per il tuo ordine.",
                "Fai clic sul pulsante per salvare le modifiche."],
    "Portuguese": ["Primeiros passos", "Bom dia.", "O gato está em cima da mesa.", "Obrigado pelo seu pedido.",
                   "Clique no botão para salvar as suas alterações."],
    "Dutch": ["Aan de slag", "Goedemorgen.", "De kat ligt op de tafel.", "Bedankt voor je bestelling.",
              "Klik op de knop om je wijzigingen op te slaan."],
    "Polish": ["Pierwsze kroki", "Dzień dobry.", "Kot jest na stole.", "Dziękujemy za zamówienie.",
               "Kliknij przycisk, aby zapisać zmiany."],
}
CODES = {"en": "English", "fr": "French", "es": "Spanish", "de": "German", "it": "Italian", "pt": "Portuguese",
         "nl": "Dutch", "pl": "Polish", "ja": "Japanese", "zh": "Chinese", "ko": "Korean", "ru": "Russian",
         "uk": "Ukrainian", "sv": "Swedish", "da": "Danish", "no": "Norwegian", "fi": "Finnish", "cs": "Czech",
         "tr": "Turkish", "ar": "Arabic", "hi": "Hindi", "el": "Greek", "ro": "Romanian", "hu": "Hungarian"}
MAX_LANGUAGES = 12
_LETTER = re.compile(r"[^\W\d_]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9À-ÖØ-Þ])")


def language_name(value: str) -> str:
    """'fr', 'FR', 'french' -> 'French'; any other name is kept (title-cased) for the model to try."""
    name = value.strip()
    if not name or len(name) > 40 or not re.fullmatch(r"[^\W\d_][\w\s()-]*", name):
        raise InvalidRequestError(f"not a language name: {value!r}", param="languages")
    if name.lower() in CODES:
        return CODES[name.lower()]
    return next((known for known in CODES.values() if known.lower() == name.lower()), name.title())


def parse_languages(value: Any) -> list[str]:
    """A list or a comma-separated string of language names or codes, deduplicated, in order."""
    items = value if isinstance(value, list) else str(value or "").split(",")
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidRequestError(f"languages must be names, not {item!r}", param="languages")
        if item.strip():
            name = language_name(item)
            if name not in names:
                names.append(name)
    if not names:
        raise InvalidRequestError("name at least one language to translate into", param="languages")
    if len(names) > MAX_LANGUAGES:
        raise InvalidRequestError(f"at most {MAX_LANGUAGES} languages per run, not {len(names)}", param="languages")
    return names


class Translator:
    """Translates sentences from one language to another through Service.complete, remembering each one.

    `pending()` collects what a document needs without asking the model, so a caller can translate
    the unique sentences with progress (`fill`) and then render the document from the memory.
    """

    def __init__(self, service: Service, target: str, source: str = "English", model: str | None = None) -> None:
        self.service, self.target, self.source = service, language_name(target), language_name(source)
        self.model = service.pick(model, "text").id
        self.memory: dict[str, str] = {}
        self.collecting: list[str] | None = None
        self.unchanged = 0  # sentences the model gave nothing usable for (kept as they were)
        pair = EXAMPLES.get(self.source), EXAMPLES.get(self.target)
        shots = list(zip(*pair)) if pair[0] and pair[1] else []
        self.header = "".join(f"{self.source}: {a}\n{self.target}: {b}\n\n" for a, b in shots)
        if not shots:
            self.header = f"Translations from {self.source} into {self.target}.\n\n"

    def sentence(self, text: str) -> str:
        if text in self.memory:
            return self.memory[text]
        if self.collecting is not None:
            self.collecting.append(text)
            return text
        self.memory[text] = out = text if self.source == self.target else self.ask(text)
        return out

    def ask(self, text: str) -> str:
        """One sentence through the model (no memory)."""
        params = GenerationParams(temperature=0.0, max_tokens=min(512, 16 + len(text)), stop=["\n"])
        prompt = f"{self.header}{self.source}: {text}\n{self.target}:"
        result = self.service.complete(prompt, self.model, params)[0]
        out = result.text.strip()
        if not out or (result.finish_reason == "length" and len(out) > 3 * len(text) + 40):
            self.unchanged += 1
            return text
        if out[-1] in ".!?。" and text[-1] not in ".!?:;":
            out = out[:-1].rstrip()  # a heading or list item gets no full stop it did not have
        return out

    def text(self, text: str) -> str:
        """A run of prose: its surrounding whitespace kept, each sentence translated."""
        core = text.strip()
        if not _LETTER.search(core):
            return text
        lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()):]
        return lead + " ".join(self.sentence(s) for s in _SENTENCE_END.split(core) if s) + trail

    def pending(self, render: Callable[[], Any]) -> list[str]:
        """The sentences `render()` would ask for that are not translated yet, in order, once each."""
        self.collecting = []
        try:
            render()
            return list(dict.fromkeys(self.collecting))
        finally:
            self.collecting = None


# -- Markdown ----------------------------------------------------------------------------------------
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^(\s{0,3}#{1,6}[ \t]+)(.*?)([ \t]+#+[ \t]*)?$")
_ITEM = re.compile(r"^(\s*(?:[-*+]|\d{1,9}[.)])[ \t]+(?:\[[ xX]\][ \t]+)?)(.*)$")
_QUOTE = re.compile(r"^(\s{0,3}>[ \t]?)(.*)$")
_RULE = re.compile(r"^\s{0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_SETEXT = re.compile(r"^\s{0,3}(?:=+|-+)[ \t]*$")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)+\|?\s*$")
_HTML_LINE = re.compile(r"^\s{0,3}</?[A-Za-z][^>]*>")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+\S")
_INLINE = re.compile(
    r"(?P<code>(`+).+?\2)"
    r"|(?P<link>(?P<bang>!?)\[(?P<label>[^\]]*)\](?P<target>\([^)]*\)|\[[^\]]*\]))"
    r"|(?P<keep><[^>\s][^>]*>|https?://[^\s)>\]]+|\*\*|\*|~~|(?<!\w)_+|_+(?!\w)|\\[\\`*_{}\[\]()#+\-.!|])"
)


def translate_inline(text: str, tr: Translator) -> str:
    """One line of Markdown prose: code spans, link targets, inline HTML, URLs and emphasis marks kept."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(tr.text(text[pos:m.start()]))
        if m.group("link"):
            label = translate_inline(m.group("label"), tr)
            out.append(f"{m.group('bang')}[{label}]{m.group('target')}")
        else:
            out.append(m.group(0))
        pos = m.end()
    out.append(tr.text(text[pos:]))
    return "".join(out)


def translate_markdown(text: str, tr: Translator) -> str:
    """Markdown (or plain text) with its block structure and line layout kept; a wrapped paragraph becomes one line."""
    out: list[str] = []
    paragraph: list[str] = []
    fence: str | None = None
    in_item = False

    def flush() -> None:
        if paragraph:
            out.append(translate_inline(" ".join(line.strip() for line in paragraph), tr))
            paragraph.clear()

    for line in text.split("\n"):
        if fence is not None:  # inside a fenced code block: copied as it is
            out.append(line)
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
            continue
        m = _FENCE.match(line)
        if m:
            flush()
            fence, in_item = m.group(1), False
            out.append(line)
            continue
        if not line.strip():
            flush()
            out.append(line)
            continue
        indented = line.startswith(("    ", "\t"))
        if in_item and line[:1] in (" ", "\t"):  # a list item's continuation
            flush()
            width = len(line) - len(line.lstrip())
            out.append(line[:width] + translate_inline(line[width:], tr))
            continue
        if indented and not paragraph:  # an indented code block
            out.append(line)
            continue
        if _RULE.match(line) or _TABLE_SEP.match(line) or _REF_DEF.match(line) or (paragraph and _SETEXT.match(line)):
            flush()
            out.append(line)
            in_item = False
            continue
        if _HTML_LINE.match(line):
            flush()
            out.append(translate_html(line, tr))
            continue
        if (m := _HEADING.match(line)) is not None:
            flush()
            out.append(m.group(1) + translate_inline(m.group(2), tr) + (m.group(3) or ""))
            in_item = False
            continue
        if (m := _ITEM.match(line) or _QUOTE.match(line)) is not None:
            flush()
            out.append(m.group(1) + translate_inline(m.group(2), tr))
            in_item = True
            continue
        if line.lstrip().startswith("|"):
            flush()
            cells = re.split(r"(?<!\\)(\|)", line)
            out.append("".join(c if c == "|" else translate_inline(c, tr) for c in cells))
            continue
        paragraph.append(line)
    flush()
    return "\n".join(out)


# -- HTML ------------------------------------------------------------------------------------------
_RAW = {"script", "style", "code", "pre", "kbd", "samp", "var", "textarea", "math", "svg"}
_PROSE_ATTRS = {"alt", "title", "placeholder", "aria-label"}


class _HtmlTranslator(HTMLParser):
    def __init__(self, tr: Translator) -> None:
        super().__init__(convert_charrefs=True)
        self.tr, self.out, self.raw = tr, [], 0

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]], close: bool) -> None:
        raw = self.get_starttag_text() or ""
        if not any(name in _PROSE_ATTRS and value for name, value in attrs):
            self.out.append(raw)
            return
        parts = [tag]
        for name, value in attrs:
            if value is None:
                parts.append(name)
                continue
            if name in _PROSE_ATTRS:
                value = self.tr.text(value)
            parts.append(f'{name}="{html.escape(value, quote=True)}"')
        self.out.append("<" + " ".join(parts) + (" />" if close else ">"))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, close=False)
        if tag in _RAW:
            self.raw += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, close=True)

    def handle_endtag(self, tag: str) -> None:
        if tag in _RAW and self.raw:
            self.raw -= 1
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if self.raw and self.lasttag in ("script", "style"):
            self.out.append(data)  # CDATA content: never escaped
        else:
            self.out.append(html.escape(data if self.raw else self.tr.text(data), quote=False))

    def handle_comment(self, data: str) -> None:
        self.out.append(f"<!--{data}-->")

    def handle_decl(self, decl: str) -> None:
        self.out.append(f"<!{decl}>")

    def handle_pi(self, data: str) -> None:
        self.out.append(f"<?{data}>")

    def unknown_decl(self, data: str) -> None:
        self.out.append(f"<![{data}]>")


def translate_html(text: str, tr: Translator) -> str:
    """HTML with every tag, attribute, comment and script kept; text nodes and prose attributes translated."""
    parser = _HtmlTranslator(tr)
    parser.feed(text)
    parser.close()
    return "".join(parser.out)


def looks_like_html(text: str) -> bool:
    head = text.lstrip()[:500].lower()
    return head.startswith(("<!doctype html", "<html")) or bool(re.match(r"<(p|div|h[1-6]|body|head|section)\b", head))


def translate_document(text: str, fmt: str, tr: Translator,
                       progress: Callable[[int, int], None] | None = None,
                       check: Callable[[], None] | None = None) -> str:
    """`text` in `fmt` ("html", "markdown" or "text") translated with `tr`, structure kept."""
    render = (lambda: translate_html(text, tr)) if fmt == "html" else (lambda: translate_markdown(text, tr))
    todo = tr.pending(render)
    for i, sentence in enumerate(todo):
        if check:
            check()
        if progress:
            progress(i, len(todo))
        tr.sentence(sentence)
    if progress:
        progress(len(todo), len(todo))
    return render()


# -- step kind -------------------------------------------------------------------------------------
_SUFFIX = {"html": (".html", "text/html"), "markdown": (".md", "text/markdown"), "text": (".txt", "text/plain")}


def translate_step(service: Service, args: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    from .artifacts import is_ref
    from .documents import document_format, extract_text

    value, name, fmt = args["document"], None, ""
    if is_ref(value):
        data, media_type, name = ctx.read(value, "document")
        fmt = document_format(media_type, name)
        if fmt in ("pdf", "docx"):  # their layout cannot be rebuilt: the text is translated as plain text
            text, fmt = extract_text(data, media_type, name)[0], "text"
        else:
            text = data.decode("utf-8", errors="replace")
        fmt = "" if fmt == "text" and not name else fmt  # text given inline: may be Markdown or HTML
    else:
        text = str(value)
    stem = (name or "document").rsplit(".", 1)[0]
    wanted = str(args.get("format") or "").lower()
    if wanted and wanted not in _SUFFIX:
        raise InvalidRequestError(f"format must be html, markdown or text, not {wanted!r}", param="format")
    if wanted:
        fmt = wanted
    elif fmt in ("", "text"):
        fmt = "html" if looks_like_html(text) else (fmt or "markdown")
    if not text.strip():
        raise InvalidRequestError(f"step '{ctx.step}' has no text to translate", param="document")
    languages = parse_languages(args["languages"])
    source = str(args.get("source") or "English")
    suffix, media_type = _SUFFIX[fmt]
    texts, documents, unchanged = {}, {}, {}
    for i, language in enumerate(languages):
        tr = Translator(service, language, source, args.get("model"))
        ctx.progress(i / len(languages), f"{tr.target}")
        out = translate_document(
            text, fmt, tr, check=ctx.check,
            progress=lambda done, total: ctx.progress((i + done / max(total, 1)) / len(languages),
                                                      f"{tr.target}: {done}/{total} sentences"))
        texts[tr.target] = out
        unchanged[tr.target] = tr.unchanged
        slug = re.sub(r"[^a-z0-9]+", "-", tr.target.lower()).strip("-")
        documents[tr.target] = ctx.put(out.encode(), media_type, f"{stem}.{slug}{suffix}")
    return {"texts": texts, "documents": documents, "languages": list(texts), "format": fmt,
            "untranslated": unchanged}


register_step("translate", translate_step, modality="text",
              params={"document": "text|document", "languages": "any", "source": "text?", "format": "text?",
                      "model": "text?"},
              outputs={"texts": "any", "documents": "any", "languages": "any", "format": "text",
                       "untranslated": "any"},
              description="a document into one or more languages, its Markdown/HTML structure kept")

__all__ = ["CODES", "EXAMPLES", "Translator", "language_name", "looks_like_html", "parse_languages",
           "translate_document", "translate_html", "translate_step", "translate_inline", "translate_markdown"]
