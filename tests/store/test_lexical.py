"""The lexical (BM25, tantivy) index: tokenisation, plain-text queries, filters, upsert/delete, repair."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("tantivy")

from umr.errors import LexicalIndexError, QueryError
from umr.store.lexical import (
    LexicalConfig,
    LexicalIndex,
    LexicalRecord,
    query_groups,
    tokenize,
)

R = LexicalRecord


# ---------------------------------------------------------------------------------------------- tokens
def test_codes_are_whole_tokens_and_also_their_parts() -> None:
    toks = tokenize("Invoice INV-2024-0173: part X200, total 1,234.50 EUR.")
    assert "inv-2024-0173" in toks and {"inv", "2024", "0173"} <= set(toks)
    assert "x200" in toks and {"x", "200"} <= set(toks)
    assert "1,234.50" in toks
    assert "eur" in toks and "eur." not in toks and "invoice" in toks


def test_unicode_case_and_accent_folding() -> None:
    assert tokenize("CAFÉ Straße ＡＢＣ") == ["cafe", "strasse", "abc"]  # NFKC full-width, casefold, accents
    assert tokenize("CAFÉ", fold_accents=False) == ["café"]
    assert tokenize("Ωμέγα") == ["ωμεγα"]


def test_cjk_runs_become_unigrams_and_bigrams() -> None:
    toks = tokenize("東京の天気 report")
    assert {"東", "京", "東京", "天気"} <= set(toks) and "report" in toks


def test_operators_quotes_and_emoji_are_plain_text() -> None:
    assert tokenize('AND OR NOT "quoted" title:foo (x) +y -z 😀*?~^') == [
        "and",
        "or",
        "not",
        "quoted",
        "title:foo",
        "title",
        "foo",
        "x",
        "y",
        "z",
    ]
    assert tokenize("😀 ... !!!") == []
    assert query_groups("x200 X200 x200") == [("x200", ["x", "200"])]


def test_overlong_tokens_are_not_indexed() -> None:
    assert tokenize("a" * 101 + " ok") == ["ok"]


# ---------------------------------------------------------------------------------------------- index
@pytest.fixture()
def lex(tmp_path: Path) -> LexicalIndex:
    idx = LexicalIndex(tmp_path / "lex")
    idx.upsert(
        [
            R(
                "a",
                "Invoice INV-2024-0173 for spare part X200",
                {"source": "/d/a.pdf", "page": 1, "kind": "pdf"},
            ),
            R(
                "b",
                "Invoice INV-2024-0174 for spare part X201 and a café",
                {"source": "/d/b.pdf", "page": 2, "kind": "pdf"},
            ),
            R(
                "c",
                "Quarterly report: cafe costs grew",
                {"source": "/d/c.pdf", "page": 1.0, "kind": "text", "flag": True},
            ),
            R("d", "", {"source": "/d/img.png", "kind": "image"}),
        ]
    )
    return idx


def _ids(hits: list) -> list[str]:
    return [h.id for h in hits]


def test_exact_code_is_rank_one_and_fragment_finds_it(lex: LexicalIndex) -> None:
    assert _ids(lex.search("INV-2024-0173", 5)) == ["a"]  # whole code known: only it is searched
    assert _ids(lex.search("inv-2024-0173", 5)) == ["a"]
    assert _ids(lex.search("2024-0173", 5))[0] == "a"  # an unknown fragment: searched by its parts
    assert _ids(lex.search("0173", 5)) == ["a"]
    assert _ids(lex.search("x201", 5)) == ["b"]
    assert set(_ids(lex.search("CAFÉ", 5))) == {"b", "c"}
    hits = lex.search("invoice spare", 5)
    assert set(_ids(hits)) == {"a", "b"} and hits[0].score >= hits[1].score > 0


def test_hostile_queries_are_text_or_clear_errors(
    lex: LexicalIndex, caplog: pytest.LogCaptureFixture
) -> None:
    # query syntax is never parsed: each of these is searched as words, or refused with QueryError
    assert _ids(lex.search('report AND "costs" OR title:(x) -invoice', 5))[0] == "c"
    assert _ids(lex.search("kind:pdf", 5)) == []  # "kind" and "pdf" are words, not a field filter
    assert _ids(lex.search("cafe 😀😀 *:* ~2 ^3 \\", 5))[:1] in (["b"], ["c"])
    long = ("report costs " * 1000)[:10_000]
    assert _ids(lex.search(long, 5))[0] == "c"
    many = " ".join("qq" + "".join(chr(97 + (i // 26**p) % 26) for p in range(3)) for i in range(3000))
    assert (
        _ids(lex.search(many + " report", 5)) == []
    )  # cut to MAX_QUERY_TERMS distinct terms, with a warning
    assert "searching the first 1024" in caplog.text
    for bad in ["", "   ", "😀", "!!! ???"]:
        with pytest.raises(QueryError, match="no words or numbers"):
            lex.search(bad, 5)
    with pytest.raises(TypeError):
        lex.search(b"bytes", 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be"):
        lex.search("report", 0)


@pytest.mark.parametrize(
    ("where", "expected", "exact"),
    [
        ({"source": "/d/a.pdf"}, {"a"}, True),
        ({"page": 1}, {"a", "c"}, True),  # int 1 and float 1.0 agree, as in Chroma
        ({"page": {"$eq": 2}}, {"b"}, True),
        ({"page": {"$ne": 1}}, {"b"}, True),  # (d has no page and no text match)
        ({"kind": {"$in": ["text", "image"]}}, {"c"}, True),
        ({"kind": {"$nin": ["pdf"]}}, {"c"}, True),
        ({"flag": True}, {"c"}, True),
        ({"flag": 1}, set(), True),  # booleans are not numbers (Chroma agrees)
        ({"$and": [{"kind": "pdf"}, {"page": {"$ne": 2}}]}, {"a"}, True),
        ({"$or": [{"source": "/d/b.pdf"}, {"flag": True}]}, {"b", "c"}, True),
        ({"page": {"$gt": 1}}, {"a", "b", "c"}, False),  # not translated: a superset, checked by Chroma
        ({"$or": [{"kind": "text"}, {"page": {"$gte": 2}}]}, {"a", "b", "c"}, False),
        ({"$and": [{"kind": "pdf"}, {"page": {"$gt": 1}}]}, {"a", "b"}, False),
    ],
)
def test_where_filters(lex: LexicalIndex, where: dict, expected: set[str], exact: bool) -> None:
    got = set(_ids(lex.search("invoice report cafe spare", 10, where=where)))
    assert got == expected
    assert lex.filter_is_exact(where) is exact


def test_filter_scores_are_bm25_only(lex: LexicalIndex) -> None:
    plain = {h.id: h.score for h in lex.search("invoice spare", 5)}
    filtered = {h.id: h.score for h in lex.search("invoice spare", 5, where={"kind": "pdf"})}
    assert filtered == pytest.approx(plain)


def test_upsert_replaces_and_delete_removes(lex: LexicalIndex) -> None:
    lex.upsert([R("a", "now about turbines", {"source": "/d/a.pdf"})])
    assert _ids(lex.search("INV-2024-0173", 5)) == []
    assert _ids(lex.search("turbines", 5)) == ["a"]
    assert lex.count() == 4
    assert lex.delete(["b", "missing"]) == 2
    assert lex.ids() == {"a", "c", "d"}
    assert _ids(lex.search("X201", 5)) == []
    lex.delete_source("/d/c.pdf")
    assert lex.ids() == {"a", "d"}
    assert not lex.needs_repair


def test_settings_are_fixed_per_index(tmp_path: Path) -> None:
    en = LexicalIndex(tmp_path / "en", LexicalConfig(language="english"))
    en.upsert([R("1", "the pumps were running"), R("2", "a pump runs")])
    assert set(_ids(en.search("pump run", 5))) == {"1", "2"}  # stemmed on both sides
    assert LexicalIndex(tmp_path / "en").config.language == "english"  # reopened with its own settings
    with pytest.raises(LexicalIndexError, match="rebuild"):
        LexicalIndex(tmp_path / "en", LexicalConfig(language="french"))
    with pytest.raises(ValueError, match="no stemmer"):
        LexicalConfig(language="klingon")
    plain = LexicalIndex.recreate(tmp_path / "en", LexicalConfig())
    assert plain.count() == 0 and plain.config.language is None


def test_sync_fills_the_missing_side_and_drops_extras(lex: LexicalIndex) -> None:
    truth = {
        "a": R("a", "Invoice INV-2024-0173 for spare part X200", {"source": "/d/a.pdf"}),
        "e": R("e", "a new page about gearboxes", {"source": "/d/e.pdf"}),
        "f": R("f", "another one, about valves", {"source": "/d/f.pdf"}),
    }
    asked: list[list[str]] = []

    def fetch(ids: list[str]) -> list[LexicalRecord]:
        asked.append(ids)
        return [truth[i] for i in ids]

    report = lex.sync(truth, fetch, batch=1)
    assert (report.added, report.removed) == (2, 3)
    assert asked == [["e"], ["f"]]  # only the missing ids are fetched
    assert lex.ids() == set(truth)
    assert _ids(lex.search("gearboxes", 5)) == ["e"]
    assert not lex.sync(truth, fetch).changed


def test_failed_session_keeps_pending_marker_but_commits_staged_work(lex: LexicalIndex) -> None:
    with pytest.raises(RuntimeError, match="boom"), lex.writer() as w:
        w.upsert([R("z", "zeppelin hangar")])
        raise RuntimeError("boom")
    assert lex.needs_repair
    assert _ids(lex.search("zeppelin", 5)) == ["z"]
    lex.sync(lex.ids(), lambda ids: [])
    assert not lex.needs_repair


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from umr.store.lexical import LexicalIndex, LexicalRecord
    lex = LexicalIndex(sys.argv[1], commit_every=0.0)
    print("ready", flush=True)
    i = 0
    with lex.writer() as w:
        while True:
            w.upsert([LexicalRecord(f"r{i}-{j}", f"record {i} word{j} INV-{i}-{j}", {"source": f"s{i}"})
                      for j in range(50)])
            if i % 3 == 2:
                w.delete([f"r{i - 2}-{j}" for j in range(25)])
            i += 1
    """
)


def test_kill_9_at_any_moment_leaves_an_index_that_opens_and_is_repaired(tmp_path: Path) -> None:
    folder = tmp_path / "lex"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for delay in (0.3, 0.7, 1.1):
        proc = subprocess.Popen(
            [sys.executable, "-c", _KILL_SCRIPT, str(folder)], env=env, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        lex = LexicalIndex(folder)  # opens, at its last commit
        assert lex.needs_repair
        have = lex.ids()
        assert have and all(i.startswith("r") for i in have - {"fresh"})
        truth = {i for i in have if i.endswith("-1")} | {"fresh"}
        lex.sync(truth, lambda ids: [R(i, "fresh text") for i in ids])
        assert lex.ids() == truth and not lex.needs_repair
        assert _ids(lex.search("fresh", 5)) == ["fresh"]
