"""Rendering recipe templates: placeholders are filled in one pass, so user text holding ``{...}`` is safe."""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

from umr.inputs import InputLike, MultimodalInput

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from umr.recipes import EmbedRecipe, Side

_PLACEHOLDER = re.compile(r"\{(instruction|content|query|candidate)\}")


def fill(template: str, **values: str) -> str:
    """Replace ``{name}`` placeholders of ``template`` by ``values`` without re-scanning inserted text."""

    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template placeholder {{{key}}} has no value")
        return values[key]

    return _PLACEHOLDER.sub(sub, template)


def render_content(
    item: MultimodalInput,
    *,
    image_placeholder: str,
    prefix: str = "",
    image_first: bool = True,
    image_only_text: str | None = None,
) -> str:
    """The user-turn content of one input: image placeholder and (prefixed) text in recipe order."""
    text = item.text
    if text is None and item.image is not None and image_only_text is not None:
        text = image_only_text
    text_part = "" if text is None else prefix + text
    image_part = image_placeholder if item.image is not None else ""
    return image_part + text_part if image_first else text_part + image_part


def mbeir_format(text: str) -> str:
    """M-BEIR ``format_string`` (U-MARVEL): strip, drop ``\\r`` and outer quotes, capitalise, end with . ? !"""
    text = (text or "").replace("\r", "").strip().strip('"')
    if text:
        text = text[0].upper() + text[1:]
        if text[-1] not in ".?!":
            text += "."
    return text


class RecipePrompts:
    """Prompt building from an embedding recipe, shared by the local ``Embedder`` and ``RemoteEmbedder``.

    A subclass sets ``recipe`` (an ``EmbedRecipe``), ``query_instruction`` and ``_text_only_image``.
    """

    recipe: EmbedRecipe
    query_instruction: str | None
    _text_only_image: Image.Image | None

    def instruction_for(self, item: MultimodalInput, side: Side, instruction: str | None) -> str:
        """The instruction a given input gets on a given side, as the recipe rules."""
        r = self.recipe
        if side == "document":
            if r.document_instruction == "default":
                return r.default_instruction
            if r.document_instruction == "none":
                return ""
        chosen = item.instruction or instruction
        if side == "query" and chosen is None:
            chosen = self.query_instruction
        return chosen if chosen is not None else r.default_instruction

    def rendered_instruction(self, item: MultimodalInput, side: Side, instruction: str | None) -> str:
        """The instruction as it appears in the prompt: resolved, normalised, wrapped ("" when empty)."""
        r = self.recipe
        text = self.instruction_for(item, side, instruction)
        if r.instruction_style == "punct":
            text = text.strip()
            if text and not unicodedata.category(text[-1]).startswith("P"):
                text += "."
            text = text or r.default_instruction
        elif r.instruction_style == "mbeir":
            text = mbeir_format(text)
        return fill(r.instruction_format, instruction=text) if text else ""

    def build_prompt(self, item: InputLike, side: Side = "query", instruction: str | None = None) -> str:
        """The exact text (with one image placeholder) the model sees for ``item``."""
        if side not in ("query", "document"):
            raise ValueError(f"side must be 'query' or 'document', got {side!r}")
        mi = self._with_text_only_image(MultimodalInput.coerce(item))
        r = self.recipe
        instr = self.rendered_instruction(mi, side, instruction)
        if mi.text:
            body = r.prefix_for(side) + mi.text
        elif mi.image is not None:
            body = r.document_image_text if side == "document" and r.document_image_text is not None else ""
        else:
            body = r.prefix_for(side) + (mi.text or "")
        if r.instruction_in_text:
            body = f"{instr} {body}" if instr else body
            instr = ""
        if r.text_style == "mbeir":
            body = mbeir_format(body)
        if r.text_suffixes is not None:
            both, text_only, image_only = r.text_suffixes
            if mi.image is None:
                body += text_only
            elif body or side == "document":  # a document with an image keeps its (maybe empty) text
                body += both
            else:
                body += image_only
        image = r.image_placeholder if mi.image is not None else ""
        content = image + body if r.image_first else body + image
        return fill(r.template_for(side), instruction=instr, content=content)

    def with_text_only_image(self, item: MultimodalInput) -> MultimodalInput:
        """DSE-style recipes encode text-only inputs together with a small black image."""
        if item.image is not None or self._text_only_image is None:
            return item
        return MultimodalInput(text=item.text, image=self._text_only_image, instruction=item.instruction)

    _with_text_only_image = with_text_only_image  # the old private name
