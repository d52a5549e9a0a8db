from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from umr.documents import FileError, NotIndexed, check_regular, safe_display, source_key, walk
from umr.documents.names import path_from_key
from umr.documents.records import DocumentError


def test_safe_display_escapes_undecodable_bytes_and_control_characters() -> None:
    name = os.fsdecode(b"dir/caf\xe9\nx\t\x1b[31m.pdf")
    shown = safe_display(name)
    assert "\n" not in shown and "\t" not in shown and "\x1b" not in shown
    assert "\\xe9" in shown and "\\n" in shown
    shown.encode("utf-8")  # printable anywhere
    assert safe_display("plain/ünïcode.pdf") == "plain/ünïcode.pdf"
    assert safe_display(b"bytes/path.pdf") == "bytes/path.pdf"


def test_source_key_is_utf8_clean_and_stable() -> None:
    name = os.fsdecode(b"caf\xe9.pdf")
    key = source_key(name)
    key.encode("utf-8")
    assert key == source_key(os.fsencode(name)) == "caf\\xe9.pdf"
    assert source_key(Path("a/b.pdf")) == "a/b.pdf"
    assert source_key("new\nline.pdf") == "new\nline.pdf"  # valid UTF-8 is stored unchanged


def test_walk_sorted_recursive_skips_hidden_reports_non_regular(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "a.pdf").write_bytes(b"x")
    (tmp_path / "b" / "c.png").write_bytes(b"x")
    (tmp_path / "b" / "a.png").write_bytes(b"x")
    (tmp_path / ".hidden.pdf").write_bytes(b"x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.pdf").write_bytes(b"x")
    (tmp_path / "empty.pdf").write_bytes(b"")
    os.mkfifo(tmp_path / "pipe.pdf")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling.pdf")
    os.symlink(tmp_path / "b", tmp_path / "loop")  # symlinked folder: not followed inside a walk
    out = list(walk(tmp_path))
    files = [x for x in out if isinstance(x, str)]
    errors = {os.path.basename(e.source): e.kind for e in out if isinstance(e, FileError)}
    assert files == [str(tmp_path / "a.pdf"), str(tmp_path / "b" / "a.png"), str(tmp_path / "b" / "c.png")]
    assert errors == {"dangling.pdf": "not_found", "empty.pdf": "empty", "pipe.pdf": "not_regular"}
    assert list(walk(tmp_path)) == out  # deterministic
    left: list[NotIndexed] = []
    assert list(walk(tmp_path, on_skip=left.append)) == out
    assert {os.path.basename(n.source): n.kind for n in left} == {
        ".hidden.pdf": "hidden", ".git": "hidden", "loop": "symlinked_folder"  # .git once, not file by file
    }
    assert all("explicitly" in n.reason for n in left)
    # A file named explicitly is yielded even when hidden.
    assert list(walk([tmp_path / ".hidden.pdf"])) == [str(tmp_path / ".hidden.pdf")]


def test_walk_handles_non_utf8_names(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/\xff\xfe.pdf"
    with open(raw, "wb") as fh:
        fh.write(b"%PDF-")
    (out,) = list(walk(tmp_path))
    assert isinstance(out, str) and os.fsencode(out) == raw
    assert "\\xff\\xfe" in safe_display(out)


def test_check_regular_never_opens_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    try:
        check_regular(fifo)
    except DocumentError as exc:
        assert exc.kind == "not_regular" and "FIFO" in exc.reason
    else:  # pragma: no cover
        raise AssertionError("FIFO accepted")


def test_documents_and_store_do_not_import_torch() -> None:
    code = (
        "import sys, umr.documents, umr.store; "
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "assert not bad, bad"
    )
    core = str(Path(__file__).resolve().parents[2] / "core")
    env = dict(os.environ, PYTHONPATH=core)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_walk_reports_excluded_folders_once_and_other_suffixes(tmp_path: Path) -> None:
    (tmp_path / "db" / "images").mkdir(parents=True)
    (tmp_path / "db" / "images" / "p.png").write_bytes(b"x")
    (tmp_path / "a.pdf").write_bytes(b"x")
    (tmp_path / "A.SVG").write_bytes(b"x")
    (tmp_path / "notes.txt").write_bytes(b"x")
    (tmp_path / "README").write_bytes(b"x")
    left: list[NotIndexed] = []
    files = list(walk(tmp_path, exclude=[tmp_path / "db"], suffixes={".pdf", ".svg"}, on_skip=left.append,
                      exclude_reason="the store's folder"))
    assert files == [str(tmp_path / "A.SVG"), str(tmp_path / "a.pdf")]
    assert {os.path.basename(n.source): (n.kind, n.reason) for n in left} == {
        "db": ("excluded", "the store's folder"),
        "notes.txt": ("not_a_document", "not a PDF or image by its name (.txt); supported: .pdf, .svg"),
        "README": ("not_a_document", "not a PDF or image by its name (no suffix); supported: .pdf, .svg"),
    }
    left.clear()  # named explicitly: a file under an excluded folder is still left out, and said so
    assert list(walk([tmp_path / "db" / "images" / "p.png"], exclude=[tmp_path / "db"], on_skip=left.append)) == []
    assert [n.kind for n in left] == ["excluded"]
    assert list(walk([tmp_path / "notes.txt"], suffixes={".pdf"})) == [str(tmp_path / "notes.txt")]


def test_source_key_is_injective_and_leaves_ordinary_names_alone() -> None:
    import itertools

    for name in ["a/b.pdf", "ünïcode/日本.pdf", "new\nline.pdf", "C:\\Users\\me\\doc.pdf", "50%.pdf", "a\\b"]:
        assert source_key(name) == name  # existing stores keep their names
    assert source_key(os.fsdecode(b"bad\xff.pdf")) == "bad\\xff.pdf"  # as before
    assert source_key("bad\\xff.pdf") == "bad\\\\xff.pdf"  # the literal spelling no longer collides
    # Every name over an adversarial alphabet: keys are UTF-8, distinct, and decode back.
    alphabet = ["\\", "x", "f", "F", "0", "g", os.fsdecode(b"\xff"), os.fsdecode(b"\xc3"), "é"]
    keys: dict[str, str] = {}
    for n in range(5):
        for chars in itertools.product(alphabet, repeat=n):
            name = "".join(chars)
            key = source_key(name)
            key.encode("utf-8")
            assert keys.setdefault(key, name) == name
            assert path_from_key(key) == name
    assert source_key(os.fsencode("caf\udce9")) == source_key("caf\udce9")  # bytes and str agree
