"""SEO copy from a product brief: title, meta description and keywords by few-shot completion, checked and rendered as Markdown.

The embedded text model is a 270M base model, so the copy is asked for as the next record of a
short list of worked examples (the format a base model continues best), and every field is
checked: a title longer than search results show is cut at a word, a missing description falls
back to the brief's first sentence, keywords are deduplicated and topped up from the brief's own
words. The Markdown it renders is what the marketing-suite recipe translates.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError
from ..types import GenerationParams
from .steps import StepContext, register_step

if TYPE_CHECKING:
    from ..service import Service

TITLE_CHARS = 60  # what search results show of a title
DESCRIPTION_CHARS = 160  # ... and of a meta description
KEYWORDS = (3, 8)
BRIEF_CHARS = 1200

EXAMPLES = """Brief: A reusable steel water bottle that keeps drinks cold for 24 hours and hot for 12.
Title: Insulated Steel Water Bottle - Cold 24h, Hot 12h
Description: Keep drinks ice-cold all day or hot all morning with our leak-proof, reusable steel bottle. Light, tough and made to last.
Keywords: insulated water bottle, steel bottle, reusable bottle, leak-proof bottle, cold drinks

Brief: Handmade soy candles in three calming scents for a cosy home.
Title: Handmade Soy Candles - Three Calming Scents
Description: Fill your home with calm. Our hand-poured soy candles burn clean for 40 hours in lavender, cedar and vanilla.
Keywords: soy candles, handmade candles, scented candles, natural candles, home fragrance

Brief: Wireless earbuds with noise cancelling and 30 hours of battery life for commuters.
Title: Noise-Cancelling Wireless Earbuds - 30h Battery
Description: Shut out the commute. Active noise cancelling, a snug fit and 30 hours of battery life in a pocket-sized case.
Keywords: wireless earbuds, noise cancelling earbuds, bluetooth earbuds, long battery earbuds, commuter headphones

"""
_STOPWORDS = set("""a an and are as at be but by for from has have in into is it its of on or our so that the their this
to with without your you we will can all any more most very than then them they these those who which what when
where how per each every just only also not no yes one two three""".split())


def _cut(text: str, limit: int) -> str:
    """`text` within `limit` characters: whole sentences if they fit, else cut at a word."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    sentences = re.split(r"(?<=[.!?])\s+", text)
    kept = ""
    for sentence in sentences:
        if len(kept) + len(sentence) + 1 > limit:
            break
        kept = f"{kept} {sentence}".strip()
    if kept:
        return kept
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:-") or text[:limit]


def brief_words(brief: str) -> list[str]:
    """The brief's content words, most frequent first (ties in order of appearance)."""
    words = [w.lower() for w in re.findall(r"[^\W\d_][\w'-]*", brief)]
    counts = Counter(w for w in words if w not in _STOPWORDS and len(w) > 2)
    return [w for w, _ in counts.most_common()]


def parse_copy(text: str, brief: str) -> dict[str, Any]:
    """Title, description and keywords from the model's record, each checked and completed from the brief."""
    fields: dict[str, str] = {}
    for line in ("Title:" + text).split("\n"):
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key in ("title", "description", "keywords") and key not in fields:
            fields[key] = value.strip()
    first_sentence = re.split(r"(?<=[.!?])\s+", " ".join(brief.split()))[0]
    title = _cut(fields.get("title", "").strip(" \"'"), TITLE_CHARS) or _cut(first_sentence.rstrip("."), TITLE_CHARS)
    description = _cut(fields.get("description", ""), DESCRIPTION_CHARS) or _cut(first_sentence, DESCRIPTION_CHARS)
    keywords: list[str] = []
    for word in fields.get("keywords", "").split(","):
        word = " ".join(word.lower().strip(" .\"'").split())
        if word and len(word) <= 40 and word not in keywords:
            keywords.append(word)
    for word in brief_words(brief):  # too few from the model: the brief's own words
        if len(keywords) >= KEYWORDS[0]:
            break
        if not any(word in k for k in keywords):
            keywords.append(word)
    return {"title": title, "description": description, "keywords": keywords[: KEYWORDS[1]]}


def render_markdown(copy: dict[str, Any]) -> str:
    items = "\n".join(f"- {k}" for k in copy["keywords"])
    return f"# {copy['title']}\n\n{copy['description']}\n\n## Keywords\n\n{items}\n"


def seo_copy(service: Service, brief: str, model: str | None = None, seed: int | None = None) -> dict[str, Any]:
    brief = " ".join(str(brief).split())
    if not brief:
        raise InvalidRequestError("the brief is empty: say what the product is and who it is for", param="brief")
    if len(brief) > BRIEF_CHARS:
        raise InvalidRequestError(f"the brief is {len(brief)} characters; keep it under {BRIEF_CHARS}", param="brief")
    params = GenerationParams(temperature=0.3, max_tokens=160, seed=seed, stop=["\n\n", "Brief:"])
    text = service.complete(f"{EXAMPLES}Brief: {brief}\nTitle:", model, params)[0].text
    copy = parse_copy(text, brief)
    return {**copy, "markdown": render_markdown(copy), "brief": brief}


def seo_copy_step(service: Service, args: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    from .artifacts import is_ref
    from .documents import extract_text

    brief = args["brief"]
    if is_ref(brief):
        data, media_type, name = ctx.read(brief, "brief")
        brief = extract_text(data, media_type, name)[0]
    seed = args.get("seed")
    out = seo_copy(service, str(brief), args.get("model"), None if seed in (None, "") else int(seed))
    out["document"] = ctx.put(out["markdown"].encode(), "text/markdown", "copy.md")
    return out


def product_prompts(backend: str, product: str, n: int) -> list[str]:
    """One prompt per picture: a studio product shot, or for the house model its vocabulary (pictures differ)."""
    if backend == "house-image":
        from ..house.prompts import house_prompt

        prompts: list[str] = []
        for i in range(n):
            prompts.append(house_prompt(product, i, prompts[-1] if prompts else None))
        return prompts
    return [f"professional product photo of {product}, studio lighting, plain background, sharp focus"] * n


def product_images_step(service: Service, args: dict[str, Any], ctx: StepContext) -> dict[str, Any]:

    from ..types import ImageParams
    from .steps import image_size

    n = int(args.get("n") or 1)
    if not 1 <= n <= 8:
        raise InvalidRequestError(f"n must be between 1 and 8, not {n}", param="n")
    spec = service.pick(args.get("model"), "image")
    width, height = image_size(args)
    seed = args.get("seed")
    prompts = product_prompts(spec.backend, " ".join(str(args["product"]).split()), n)
    images = []
    for i, prompt in enumerate(prompts):
        ctx.check()
        ctx.progress(i / n, f"picture {i + 1} of {n}")
        params = ImageParams(prompt=prompt, width=width, height=height,
                             seed=None if seed in (None, "") else int(seed) + i)
        _, result = service.generate_image(params, spec.id, lambda done, total: ctx.check())
        png = service.encode_image(result.images[0], "png", spec.id, prompt)
        images.append(ctx.put(png, "image/png", f"product-{i + 1}.png"))
    return {"images": images, "prompts": prompts}


register_step("seo_copy", seo_copy_step, modality="text",
              params={"brief": "text|document", "model": "text?", "seed": "number?"},
              outputs={"title": "text", "description": "text", "keywords": "any", "markdown": "text",
                       "document": "document", "brief": "text"},
              description="an SEO title, meta description and keywords for a product brief (Markdown too)")
register_step("product_images", product_images_step, modality="image",
              params={"product": "text", "n": "number?", "size": "text?", "seed": "number?", "model": "text?"},
              outputs={"images": "any", "prompts": "any"},
              description="product pictures: a studio shot per image (the house model: its own vocabulary)")

__all__ = ["brief_words", "parse_copy", "product_images_step", "product_prompts", "render_markdown", "seo_copy",
           "seo_copy_step"]
