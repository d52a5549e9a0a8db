"""Tokenisation for the lexical index: Unicode, case folding, codes kept whole and findable by parts.

One function, :func:`tokenize`, is used for page text and for queries, so both sides agree:

- NFKC normalisation, then ``str.casefold`` (``Straße`` -> ``strasse``) and, by default, accents folded
  (``café`` -> ``cafe``).
- A token is a run of letters and digits; runs joined by one connector (``- _ . / : # @ & +``, or a
  comma between digits) stay one token: ``INV-2024-0173`` -> ``inv-2024-0173``, ``1,234.50`` ->
  ``1,234.50``, ``X200`` -> ``x200``.
- With ``parts=True`` (page text) a compound token also yields its parts, split at connectors and at
  letter/digit changes: ``inv-2024-0173`` adds ``inv``, ``2024``, ``0173``; ``x200`` adds ``x``, ``200``.
  So a page is found by its whole code and by a fragment of it (``2024-0173``, ``0173``).
- Chinese and Japanese text (no spaces between words) is cut into single characters and bigrams.
- Tokens longer than :data:`MAX_TOKEN_CHARS` (base64 blobs, hex dumps) are not indexed.

Everything else (punctuation, quotes, operators, emoji) separates tokens and is never query syntax.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

#: tokens longer than this (after folding) are not indexed nor searched
MAX_TOKEN_CHARS = 100
#: bump when tokenisation changes: an index built by another version must be rebuilt
TOKENIZER_VERSION = 1

_ALNUM = r"[^\W_]"
_TOKEN = re.compile(rf"{_ALNUM}+(?:(?:[-_./:#@&+]|(?<=\d),(?=\d)){_ALNUM}+)*")
_CONNECTOR = re.compile(r"[-_./:#@&+,]")
_LETTER_DIGIT = re.compile(r"\d+|[^\W\d_]+")
# Han, Hiragana, Katakana (and their compatibility blocks): scripts written without spaces
_CJK = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]+")


def normalize(text: str, *, fold_accents: bool = True) -> str:
    """NFKC + case folding (+ accents removed): the form tokens are compared in."""
    text = unicodedata.normalize("NFKC", text).casefold()
    if fold_accents and not text.isascii():
        decomposed = unicodedata.normalize("NFD", text)
        text = unicodedata.normalize("NFC", "".join(c for c in decomposed if unicodedata.category(c) != "Mn"))
    return text


def _cjk_grams(run: str) -> Iterator[str]:
    yield from run
    for i in range(len(run) - 1):
        yield run[i : i + 2]


def _parts(token: str) -> list[str]:
    """Pieces of a compound token (split at connectors, then at letter/digit changes), without itself."""
    pieces: list[str] = []
    for piece in _CONNECTOR.split(token):
        if not piece:
            continue
        runs = _LETTER_DIGIT.findall(piece)
        if len(runs) > 1:
            pieces.append(piece)
            pieces.extend(runs)
        else:
            pieces.append(piece)
    return [p for p in pieces if p != token]


def tokenize(text: str, *, parts: bool = True, fold_accents: bool = True) -> list[str]:
    """Tokens of ``text`` in order (repeats kept: they count for BM25).

    ``parts``: also emit the parts of compound tokens (used for page text; queries use
    :func:`query_terms`, which decides per code whether its parts are needed).
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize takes str, got {type(text).__name__}")
    norm = normalize(text, fold_accents=fold_accents)
    out: list[str] = []
    if _CJK.search(norm):
        for run in _CJK.findall(norm):
            out.extend(_cjk_grams(run))
        norm = _CJK.sub(" ", norm)
    for token in _TOKEN.findall(norm):
        if len(token) > MAX_TOKEN_CHARS:
            continue
        out.append(token)
        if parts and not (token.isalpha() or token.isdigit()):
            out.extend(_parts(token))
    return out


def query_groups(text: str, *, fold_accents: bool = True) -> list[tuple[str, list[str]]]:
    """Query tokens, each with its parts: ``[(token, [part, ...]), ...]`` in order, repeats removed.

    The index decides per token whether the whole token is known (then it is searched as is) or only
    its parts are (a fragment of a code, e.g. ``2024-0173`` of ``INV-2024-0173``).
    """
    if not isinstance(text, str):
        raise TypeError(f"query must be str, got {type(text).__name__}")
    seen: set[str] = set()
    groups: list[tuple[str, list[str]]] = []
    for token in tokenize(text, parts=False, fold_accents=fold_accents):
        if token in seen:
            continue
        seen.add(token)
        groups.append((token, _parts(token)))
    return groups
