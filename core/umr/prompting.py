"""Rendering recipe templates: placeholders are filled in one pass, so user text holding ``{...}`` is safe."""

from __future__ import annotations

import re

from umr.inputs import MultimodalInput

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
