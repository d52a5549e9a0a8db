"""Generated corpus for ``benchmarks/hybrid.py``: invoices, service manuals and reports with unique codes.

Each page is built from *concepts* (product, component, action, issue, ...), each concept written in one
of several synonymous surface forms, plus filler prose and codes.  A descriptive query names the same
concepts with forms drawn again at random (so it shares some words with its page and paraphrases the
rest); a code query is one code that appears on exactly one page.

:class:`ConceptEmbedder` stands in for a dense model: synonyms share a vector (it "knows" paraphrases),
unknown words get a hashed vector, and every token with a digit is blurred to its shape (``INV-2024-0173``
-> ``aaa-9999-9999``), as real dense models blur numbers.  It has the attributes ``ChromaStore`` reads.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# concept slot -> concepts -> surface forms (no word shared between forms of one concept)
CONCEPTS: dict[str, list[list[str]]] = {
    "product": [
        ["printer", "printing device", "copier"],
        ["coffee machine", "espresso maker", "brewer"],
        ["router", "network gateway", "modem"],
        ["dishwasher", "dish cleaner", "scullery unit"],
        ["forklift", "pallet truck", "lift truck"],
        ["generator", "genset", "power plant"],
        ["compressor", "air pump", "pressurizer"],
        ["refrigerator", "fridge", "cooler"],
        ["drone", "quadcopter", "unmanned aircraft"],
        ["scanner", "digitizer", "imaging station"],
        ["lathe", "turning machine", "turner"],
        ["boiler", "water heater", "furnace"],
        ["conveyor", "belt line", "transporter"],
        ["projector", "beamer", "display lamp"],
        ["microscope", "magnifier", "optical scope"],
        ["ventilator", "respirator", "breathing aid"],
    ],
    "component": [
        ["filter", "strainer", "sieve"],
        ["battery", "power cell", "accumulator"],
        ["fan", "blower", "impeller"],
        ["pump", "circulator", "booster"],
        ["display", "screen", "panel"],
        ["hose", "tube", "pipe"],
        ["valve", "stopcock", "tap"],
        ["motor", "engine", "drive"],
        ["belt", "strap", "band"],
        ["sensor", "detector", "probe"],
        ["heater", "heating element", "warmer"],
        ["door", "hatch", "lid"],
    ],
    "action": [
        ["replace", "change", "swap"],
        ["clean", "wash", "scrub"],
        ["inspect", "check", "examine"],
        ["calibrate", "adjust", "tune"],
        ["install", "mount", "fit"],
        ["remove", "detach", "unplug"],
        ["lubricate", "oil", "grease"],
        ["reset", "restart", "reboot"],
    ],
    "issue": [
        ["leak", "drip", "seepage"],
        ["noise", "rattle", "hum"],
        ["overheating", "running hot", "excess heat"],
        ["fault", "failure", "malfunction"],
        ["vibration", "shaking", "wobble"],
        ["corrosion", "rust", "oxidation"],
        ["blockage", "clog", "jam"],
        ["wear", "abrasion", "erosion"],
    ],
    "department": [
        ["sales", "revenue team", "commercial unit"],
        ["logistics", "shipping", "distribution"],
        ["research", "laboratory", "development"],
        ["marketing", "advertising", "promotion"],
        ["support", "helpdesk", "customer care"],
        ["finance", "accounting", "treasury"],
        ["manufacturing", "production", "factory"],
        ["purchasing", "procurement", "sourcing"],
    ],
    "metric": [
        ["costs", "expenses", "spending"],
        ["orders", "bookings", "purchases"],
        ["returns", "refunds", "rebates"],
        ["headcount", "staffing", "personnel"],
        ["delays", "lateness", "backlog"],
        ["margin", "profitability", "yield"],
    ],
    "trend": [
        ["increased", "grew", "climbed"],
        ["decreased", "fell", "dropped"],
        ["stayed flat", "held steady", "remained level"],
        ["doubled", "surged", "soared"],
    ],
    "quarter": [
        ["first quarter", "january to march"],
        ["second quarter", "april to june"],
        ["third quarter", "july to september"],
        ["fourth quarter", "october to december"],
    ],
}

KIND_SLOTS = {
    "manual": ("product", "component", "action", "issue"),
    "invoice": ("product", "component", "department"),
    "report": ("department", "metric", "trend", "quarter"),
}

FILLER = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "for",
    "with",
    "on",
    "this",
    "that",
    "is",
    "are",
    "be",
    "by",
    "as",
    "at",
    "from",
    "it",
    "or",
    "page",
    "section",
    "note",
    "see",
    "general",
    "information",
    "following",
    "described",
    "below",
    "above",
    "shown",
    "table",
    "figure",
    "item",
    "value",
    "level",
    "unit",
    "operation",
    "normal",
    "standard",
    "procedure",
    "document",
    "version",
    "date",
    "reference",
    "number",
    "total",
    "amount",
    "customer",
    "address",
    "service",
    "contact",
    "please",
    "ensure",
    "all",
    "before",
    "after",
    "during",
    "use",
    "only",
    "approved",
    "parts",
    "person",
    "qualified",
    "safety",
    "instructions",
    "warning",
    "caution",
    "keep",
    "area",
    "clear",
    "switch",
    "off",
    "power",
    "supply",
    "wait",
    "minutes",
    "until",
    "cool",
    "down",
    "record",
    "result",
    "log",
    "sheet",
    "sign",
    "copy",
    "file",
    "office",
    "store",
    "original",
    "retain",
    "period",
    "years",
    "review",
    "update",
    "annual",
    "schedule",
    "planned",
    "activity",
    "current",
    "previous",
    "period",
    "compared",
    "estimate",
    "forecast",
    "budget",
    "target",
    "actual",
    "difference",
    "explanation",
    "comment",
    "summary",
    "overview",
    "detail",
    "appendix",
    "attached",
    "enclosed",
    "terms",
    "conditions",
    "payment",
    "due",
    "days",
    "net",
    "within",
    "invoice",
    "receipt",
    "delivery",
    "order",
    "quantity",
    "price",
    "tax",
    "discount",
    "subtotal",
    "balance",
    "account",
    "bank",
    "transfer",
    "reference",
    "line",
    "description",
    "code",
    "model",
    "serial",
]

FIRST = [
    "Anna",
    "Ben",
    "Carla",
    "David",
    "Elena",
    "Farid",
    "Greta",
    "Hugo",
    "Irene",
    "Jonas",
    "Kira",
    "Lars",
    "Mona",
    "Nils",
    "Olga",
    "Paul",
    "Rosa",
    "Sven",
]
LAST = [
    "Meyer",
    "Novak",
    "Rossi",
    "Silva",
    "Dubois",
    "Kowalski",
    "Jansen",
    "Larsen",
    "Moreau",
    "Fischer",
    "Costa",
    "Berg",
    "Wagner",
    "Petrov",
]
CITIES = [
    "Lyon",
    "Porto",
    "Graz",
    "Turin",
    "Gdansk",
    "Leeds",
    "Malmo",
    "Ghent",
    "Basel",
    "Brno",
    "Cork",
    "Bergen",
    "Split",
    "Kassel",
]

QUERY_TEMPLATES = {
    "manual": [
        "how to {action} the {component} of the {product} with {issue}",
        "{product} {component} {issue}: {action} it",
        "{issue} in {product} {component}, need to {action}",
    ],
    "invoice": [
        "invoice for a {product} {component} billed to {department}",
        "{department} bill {product} {component}",
    ],
    "report": [
        "{department} {metric} {trend} in the {quarter}",
        "report: {metric} of {department} {trend} {quarter}",
    ],
}


@dataclass
class GeneratedPage:
    id: str
    kind: str
    text: str
    concepts: dict[str, int]
    code: str  # appears on this page only
    forms: dict[str, str] = field(default_factory=dict)  # the words each concept is written in here
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Query:
    text: str
    relevant: str  # page id
    kind: str  # "code" or "descriptive"


def _form(rng: random.Random, slot: str, concept: int) -> str:
    return rng.choice(CONCEPTS[slot][concept])


def _filler(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(FILLER) for _ in range(n))


def generate(n_pages: int, seed: int = 0, filler_words: int = 60) -> list[GeneratedPage]:
    """``n_pages`` pages, about a third of each kind; concept tuples and codes unique per page."""
    rng = random.Random(seed)
    used_tuples: set[tuple[str, tuple[int, ...]]] = set()
    used_codes: set[str] = set()
    pages: list[GeneratedPage] = []
    kinds = list(KIND_SLOTS)
    digits = 4 if n_pages <= 12_000 else 6  # invoice numbers: room for every invoice of the corpus

    def unique_code(make: Any) -> str:
        while True:
            code = make()
            if code.casefold() not in used_codes:
                used_codes.add(code.casefold())
                return code

    for i in range(n_pages):
        kind = kinds[i % 3]
        slots = KIND_SLOTS[kind]
        for _ in range(50):  # a fresh tuple while there are some left (large corpora repeat them)
            tup = tuple(rng.randrange(len(CONCEPTS[s])) for s in slots)
            if (kind, tup) not in used_tuples:
                break
        used_tuples.add((kind, tup))
        concepts = dict(zip(slots, tup))
        f = {s: _form(rng, s, c) for s, c in concepts.items()}
        year = rng.choice([2022, 2023, 2024, 2025])
        if kind == "invoice":
            code = unique_code(lambda y=year: f"INV-{y}-{rng.randrange(10**digits):0{digits}d}")
            part = f"X{rng.randrange(100, 1000)}"
            who = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            text = (
                f"Invoice {code}. Customer {who}, {rng.choice(CITIES)}. Bill to the {f['department']} "
                f"department. Item: spare {f['component']} for {f['product']}, part {part}, quantity "
                f"{rng.randrange(1, 20)}, unit price {rng.randrange(5, 900)}.{rng.randrange(100):02d} EUR. "
                f"{_filler(rng, filler_words)}. Total {rng.randrange(10, 9000)}.{rng.randrange(100):02d} EUR."
            )
        elif kind == "manual":
            code = unique_code(
                lambda: (
                    f"{rng.choice('ABCDEFGHKMPRST')}{rng.choice('ABCDEFGHKMPRST')}-"
                    f"{rng.randrange(1000, 10000)}{rng.choice('ABCDEFGH')}"
                )
            )
            err = f"E{rng.randrange(100, 1000)}"
            text = (
                f"Service manual, model {code}. {f['product'].capitalize()}: {f['component']}. If you notice "
                f"{f['issue']} ({err}), {f['action']} the {f['component']} as follows. "
                f"{_filler(rng, filler_words)}. Step {rng.randrange(1, 9)}: {f['action']} the "
                f"{f['component']} of the {f['product']}."
            )
        else:
            code = unique_code(lambda: f"PRJ-{rng.randrange(10000, 100000)}")
            text = (
                f"Quarterly report {code}, {year}. {f['department'].capitalize()}: {f['metric']} "
                f"{f['trend']} in the {f['quarter']}. {_filler(rng, filler_words)}. "
                f"Prepared by {rng.choice(FIRST)} {rng.choice(LAST)}, {rng.choice(CITIES)}."
            )
        pid = hashlib.sha256(f"{seed}|{i}".encode()).hexdigest()[:24]
        meta = {
            "source": f"/corpus/{kind}s/{i // 10:05d}.pdf",
            "section": i % 10 + 1,
            "doc_type": kind,
            "year": year,
        }
        pages.append(GeneratedPage(pid, kind, text, concepts, code, f, meta))
    return pages


def make_queries(
    pages: list[GeneratedPage], n: int, seed: int = 1, overlap: float = 0.5
) -> tuple[list[Query], list[Query]]:
    """``n`` code queries and ``n`` descriptive queries over distinct random pages.

    A descriptive query names its page's concepts, each in the page's own words with probability
    ``overlap``, else in a synonym; it is only asked when its concept tuple belongs to one page (so it
    has one answer).
    """
    rng = random.Random(seed)
    counts: dict[tuple[str, tuple[int, ...]], int] = {}
    for p in pages:
        key = (p.kind, tuple(p.concepts.values()))
        counts[key] = counts.get(key, 0) + 1
    picks = rng.sample(pages, min(n, len(pages)))
    codes = [Query(p.code if rng.random() < 0.5 else p.code.lower(), p.id, "code") for p in picks]
    desc: list[Query] = []
    for p in rng.sample(pages, len(pages)):
        if len(desc) >= n:
            break
        if counts[(p.kind, tuple(p.concepts.values()))] != 1:
            continue
        f = {}
        for slot, ci in p.concepts.items():
            others = [x for x in CONCEPTS[slot][ci] if x != p.forms[slot]]
            f[slot] = p.forms[slot] if rng.random() < overlap else rng.choice(others)
        desc.append(Query(rng.choice(QUERY_TEMPLATES[p.kind]).format(**f), p.id, "descriptive"))
    return codes, desc


# ---------------------------------------------------------------------------------------------- dense
_WORD = re.compile(r"[^\W_]+(?:[-./][^\W_]+)*")
STOPWORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "of",
        "and",
        "to",
        "in",
        "for",
        "with",
        "on",
        "it",
        "is",
        "are",
        "be",
        "by",
        "as",
        "at",
        "from",
        "or",
        "how",
        "need",
        "this",
        "that",
    ]
)


_GENERIC = frozenset(FILLER)


def _shape(token: str) -> str:
    return re.sub(r"[^\W\d_]", "a", re.sub(r"\d", "9", token))


@dataclass(frozen=True)
class _Recipe:
    name: str
    max_pixels: int


class ConceptEmbedder:
    """A stand-in dense model: synonyms share a concept vector, numbers and codes are blurred to their shape.

    Deterministic, numpy only.  ``noise`` is the weight of a per-word vector added to each concept
    vector (synonyms are close, not equal); ``generic`` the weight of boilerplate words.
    """

    def __init__(
        self, dim: int = 128, noise: float = 0.35, generic: float = 0.3, model_id: str = "umr/concept-embedder"
    ) -> None:
        self.dim = dim
        self.noise = noise
        self.generic = generic
        self.model_id = model_id
        self.max_pixels = 256 * 28 * 28
        self.recipe = _Recipe("concept", self.max_pixels)
        self.fingerprint = hashlib.sha256(f"{model_id}|{dim}|{noise}|{generic}".encode()).hexdigest()[:16]
        self._concept_of: dict[str, str] = {}
        for slot, concepts in CONCEPTS.items():
            for ci, forms in enumerate(concepts):
                for form in forms:
                    for word in form.split():
                        self._concept_of.setdefault(word, f"{slot}:{ci}")
        self._cache: dict[str, np.ndarray] = {}

    def _hashed(self, key: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def _word(self, word: str) -> np.ndarray:
        v = self._cache.get(word)
        if v is None:
            if word in STOPWORDS:
                v = np.zeros(self.dim, np.float32)
            elif any(c.isdigit() for c in word):
                v = self._hashed("shape:" + _shape(word))
            elif word in self._concept_of:
                concept = self._hashed("concept:" + self._concept_of[word])
                v = concept + self.noise * self._hashed("word:" + word)
            elif word in _GENERIC:  # boilerplate words: a dense model attends to them less
                v = self.generic * self._hashed("word:" + word)
            else:
                v = self._hashed("word:" + word)
            self._cache[word] = v
        return v

    def _embed_text(self, text: str) -> np.ndarray:
        words = _WORD.findall(text.casefold())
        v = np.zeros(self.dim, np.float32)
        for w in words:
            v += self._word(w)
        n = float(np.linalg.norm(v))
        return v / n if n > 0 else self._hashed("empty")

    def _text_of(self, item: Any) -> str:
        if isinstance(item, str):
            return item
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            return item["text"]
        raise TypeError(f"ConceptEmbedder embeds text only, got {type(item).__name__}")

    def embed_documents(self, inputs: Iterable[Any], **_: Any) -> np.ndarray:
        items = [self._text_of(x) for x in inputs]
        if not items:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._embed_text(t) for t in items])

    def embed_queries(self, inputs: Iterable[Any], instruction: str | None = None, **_: Any) -> np.ndarray:
        return self.embed_documents(inputs)

    def embed(self, inputs: Any, *, side: str = "document", instruction: str | None = None, **_: Any) -> np.ndarray:
        """One text gives ``(dim,)``, a sequence ``(n, dim)`` (queries and documents alike)."""
        if isinstance(inputs, (str, dict)):
            return self.embed_documents([inputs])[0]
        return self.embed_documents(inputs)
