"""Training pairs, content keys, and training data read from a BEIR / ViDoRe style folder.

Folder convention (the layout ``umr eval`` reads)::

    corpus.jsonl        {"_id": "d1", "text": "...", "image": "pages/d1.png"}
    queries.jsonl       {"_id": "q1", "text": "..."}
    qrels/train.tsv     query-id <TAB> corpus-id <TAB> score    training judgements
    qrels/test.tsv      query-id <TAB> corpus-id <TAB> score    held-out judgements (eval before/after)

With both files, ``train.tsv`` trains and ``test.tsv`` evaluates. With only one of them, its queries
are split deterministically (a hash of the query id): about ``eval_fraction`` of them are held out
for the evaluation and never trained on. A judgement with score > 0 is a positive; score 0 rows are
judged non-relevant and become explicit negatives of that query.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from umr.errors import InputError
from umr.evaluation import RetrievalDataset, _read_jsonl, _row_input, read_qrels
from umr.inputs import InputLike, MultimodalInput

logger = logging.getLogger(__name__)

#: judged non-relevant documents kept per training pair as explicit negatives
MAX_JUDGED_NEGATIVES = 2


@dataclass(frozen=True)
class TrainPair:
    """One training example: a query, its positive document and optional explicit negatives.

    Either side may be text, an image or a fused text+image input (anything ``umr.MultimodalInput``
    accepts). Ids, when known (a dataset folder), key caches and in-batch duplicate detection;
    otherwise a hash of the content does.
    """

    query: MultimodalInput
    positive: MultimodalInput
    negatives: tuple[MultimodalInput, ...] = ()
    query_id: str | None = None
    positive_id: str | None = None
    negative_ids: tuple[str | None, ...] = ()

    def _memo(self, name: str, compute: Any) -> Any:
        # keys hash image bytes: computed once per pair, not at every training step
        if name not in self.__dict__:
            object.__setattr__(self, name, compute())
        return self.__dict__[name]

    def positive_key(self) -> str:
        return self._memo("_positive_key", lambda: doc_key(self.positive, self.positive_id))

    def negative_keys(self) -> list[str]:
        ids = list(self.negative_ids) + [None] * (len(self.negatives) - len(self.negative_ids))
        return list(self._memo("_negative_keys", lambda: tuple(doc_key(n, i) for n, i in zip(self.negatives, ids))))

    def query_key(self) -> str:
        return self._memo("_query_key", lambda: doc_key(self.query, self.query_id))


def content_key(item: MultimodalInput) -> str:
    """sha256 of what an input holds: text, instruction and image bytes (file content, not its path)."""
    h = hashlib.sha256()
    h.update(b"T" + (item.text or "").encode("utf-8", "surrogatepass") + b"\x00")
    h.update(b"I" + (item.instruction or "").encode("utf-8", "surrogatepass") + b"\x00")
    img = item.image
    if isinstance(img, Path):
        try:
            h.update(img.read_bytes())
        except OSError:
            h.update(os.fsencode(img))
    elif isinstance(img, bytes):
        h.update(img)
    elif isinstance(img, Image.Image):
        h.update(f"{img.mode}{img.size}".encode())
        h.update(img.tobytes())
    return h.hexdigest()[:32]


def doc_key(item: MultimodalInput, item_id: str | None = None) -> str:
    return f"id:{item_id}" if item_id is not None else f"sha:{content_key(item)}"


def _coerce(value: Any, where: str) -> MultimodalInput:
    if value is None:
        raise ValueError(f"{where} is missing; every pair needs a query and a positive (text, image or both)")
    try:
        item = MultimodalInput.coerce(value)
    except (TypeError, InputError) as exc:
        raise ValueError(f"{where}: {exc}") from None
    if item.image is not None:
        try:
            item.image_size()  # header only: unreadable or missing files fail here, naming the row
        except InputError as exc:
            raise InputError(f"{where}: {exc}; fix or drop this pair") from None
    return item


def coerce_pairs(pairs: Iterable[TrainPair | Sequence[Any] | Mapping[str, Any]]) -> list[TrainPair]:
    """Validate training pairs: ``TrainPair``, ``(query, positive[, negatives])`` or a dict.

    A dict takes ``query``, ``positive`` and optional ``negatives`` (a list). Errors name the pair's
    position (``pair #3``, counting from 0) and the side at fault.
    """
    out: list[TrainPair] = []
    for i, raw in enumerate(pairs):
        where = f"pair #{i}"
        if isinstance(raw, TrainPair):
            q, p, negs = raw.query, raw.positive, list(raw.negatives)
            ids = (raw.query_id, raw.positive_id, raw.negative_ids)
            where += f" (query {raw.query_id!r})" if raw.query_id is not None else ""
        elif isinstance(raw, Mapping):
            unknown = set(raw) - {"query", "positive", "negatives", "query_id", "positive_id", "negative_ids"}
            if unknown:
                raise ValueError(
                    f"{where}: unknown key(s) {sorted(unknown)}; use 'query', 'positive' and 'negatives'"
                )
            q, p, negs = raw.get("query"), raw.get("positive"), list(raw.get("negatives") or [])
            ids = (raw.get("query_id"), raw.get("positive_id"), tuple(raw.get("negative_ids") or ()))
        elif isinstance(raw, Sequence) and not isinstance(raw, (str, bytes)) and len(raw) in (2, 3):
            q, p = raw[0], raw[1]
            negs = list(raw[2]) if len(raw) == 3 and raw[2] is not None else []
            if len(raw) == 3 and isinstance(raw[2], (str, bytes, Mapping, MultimodalInput)):
                negs = [raw[2]]
            ids = (None, None, ())
        else:
            raise ValueError(
                f"{where}: expected (query, positive[, negatives]), a dict with 'query'/'positive' or a "
                f"umr.train.TrainPair, got {type(raw).__name__}"
            )
        query = _coerce(q, f"{where}: query")
        positive = _coerce(p, f"{where}: positive")
        negatives = tuple(_coerce(n, f"{where}: negative #{j}") for j, n in enumerate(negs))
        out.append(TrainPair(query, positive, negatives, ids[0], ids[1], tuple(ids[2])))
    if not out:
        raise ValueError("no training pairs: pass at least one (query, positive) pair")
    return out


@dataclass
class TrainingData:
    """What ``umr train`` reads from a dataset folder."""

    pairs: list[TrainPair]
    corpus_ids: list[str]
    corpus: list[Any]
    train_query_ids: list[str]
    train_queries: list[Any]
    train_positives: list[set[int]]  # corpus indices per training query
    eval_set: RetrievalDataset | None
    split_note: str = ""
    notes: list[str] = field(default_factory=list)


def _held_out(qid: str, fraction: float) -> bool:
    digest = hashlib.sha256(qid.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def load_training_data(root: str | os.PathLike, *, eval_fraction: float = 0.2) -> TrainingData:
    """Training pairs and the held-out evaluation set of a BEIR-layout folder (see the module doc)."""
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"dataset folder {str(base)!r} does not exist")
    missing = [p for p in ("corpus.jsonl", "queries.jsonl") if not (base / p).is_file()]
    train_path, test_path = base / "qrels" / "train.tsv", base / "qrels" / "test.tsv"
    if not train_path.is_file() and not test_path.is_file():
        missing.append("qrels/train.tsv (or qrels/test.tsv)")
    if missing:
        raise FileNotFoundError(
            f"dataset folder {str(base)!r} lacks {', '.join(missing)} (the BEIR layout: corpus.jsonl, "
            "queries.jsonl, qrels/train.tsv for training, qrels/test.tsv for the held-out evaluation)"
        )
    corpus_rows = [_row_input(r, base, "corpus.jsonl") for r in _read_jsonl(base / "corpus.jsonl")]
    query_rows = [_row_input(r, base, "queries.jsonl") for r in _read_jsonl(base / "queries.jsonl")]
    if not corpus_rows:
        raise ValueError(f"{base / 'corpus.jsonl'} is empty; add the documents to train on")
    if not query_rows:
        raise ValueError(f"{base / 'queries.jsonl'} is empty; add the queries to train on")
    corpus_ids = [c for c, _ in corpus_rows]
    corpus = [x for _, x in corpus_rows]
    queries = dict(query_rows)
    cindex = {c: i for i, c in enumerate(corpus_ids)}
    if len(cindex) != len(corpus_ids):
        dup = next(c for c in corpus_ids if corpus_ids.count(c) > 1)
        raise ValueError(f"{base / 'corpus.jsonl'}: id {dup!r} appears more than once; ids must be unique")
    qset, cset = set(queries), set(cindex)
    if train_path.is_file() and test_path.is_file():
        train_qrels = read_qrels(train_path, qset, cset)
        test_qrels = read_qrels(test_path, qset, cset)
        note = "qrels/train.tsv trains, qrels/test.tsv evaluates"
    else:
        only = train_path if train_path.is_file() else test_path
        all_qrels = read_qrels(only, qset, cset)
        test_qrels = {q: r for q, r in all_qrels.items() if _held_out(q, eval_fraction)}
        train_qrels = {q: r for q, r in all_qrels.items() if q not in test_qrels}
        note = (
            f"only qrels/{only.name}: {len(test_qrels)} of its {len(all_qrels)} queries held out for the "
            f"evaluation (deterministic hash split, fraction {eval_fraction})"
        )
    pairs: list[TrainPair] = []
    train_ids: list[str] = []
    train_positives: list[set[int]] = []
    for qid, judged in train_qrels.items():
        pos = [d for d, s in judged.items() if s > 0]
        if not pos:
            continue
        neg = [d for d, s in judged.items() if s <= 0][:MAX_JUDGED_NEGATIVES]
        q = MultimodalInput.coerce(queries[qid])
        for d in pos:
            pairs.append(
                TrainPair(
                    q, MultimodalInput.coerce(corpus[cindex[d]]),
                    tuple(MultimodalInput.coerce(corpus[cindex[n]]) for n in neg),
                    qid, d, tuple(neg),
                )
            )
        train_ids.append(qid)
        train_positives.append({cindex[d] for d in pos})
    if not pairs:
        raise ValueError(
            f"no training query with a positive judgement (score > 0) in {base / 'qrels'}; "
            "qrels/train.tsv needs lines 'query-id<TAB>corpus-id<TAB>1'"
        )
    eval_ids = [q for q, r in test_qrels.items() if any(v > 0 for v in r.values())]
    eval_set = (
        RetrievalDataset(corpus_ids, corpus, eval_ids, [queries[q] for q in eval_ids],
                         {q: test_qrels[q] for q in eval_ids})
        if eval_ids else None
    )
    # validate images once, naming the row
    pairs = coerce_pairs(pairs)
    return TrainingData(
        pairs=pairs, corpus_ids=corpus_ids, corpus=corpus, train_query_ids=train_ids,
        train_queries=[queries[q] for q in train_ids], train_positives=train_positives,
        eval_set=eval_set, split_note=note,
    )


def inputs_of(values: Sequence[InputLike]) -> list[MultimodalInput]:
    return [MultimodalInput.coerce(v) for v in values]
