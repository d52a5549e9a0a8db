"""umr.confine: untrusted paths are read only under allowed folders, as regular files, with one message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from umr import confine
from umr.confine import PathNotAllowedError, PathPolicy


@pytest.fixture()
def tree(tmp_path: Path) -> dict[str, Path]:
    allowed = tmp_path / "allowed dir ü"  # spaces and non-ASCII survive the file:// round trip
    allowed.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (allowed / "ok.png").write_bytes(b"ok-bytes")
    (outside / "secret.png").write_bytes(b"secret")
    (allowed / "link.png").symlink_to(outside / "secret.png")
    (allowed / "inner-link.png").symlink_to(allowed / "ok.png")
    os.mkfifo(allowed / "fifo.png")
    (allowed / "big.png").write_bytes(b"")
    os.truncate(allowed / "big.png", 200 * 1024 * 1024)  # sparse: nothing real is read
    return {"allowed": allowed, "outside": outside}


def test_reads_allowed_files_by_path_and_uri(tree: dict[str, Path]) -> None:
    policy = PathPolicy([tree["allowed"]])
    ok = tree["allowed"] / "ok.png"
    assert policy.read_bytes(ok) == b"ok-bytes"
    assert policy.read_bytes(ok.as_uri()) == b"ok-bytes"  # percent-encoded URI
    assert policy.read_bytes(tree["allowed"] / "inner-link.png") == b"ok-bytes"  # a link that stays inside


@pytest.mark.parametrize(
    "name",
    ["/etc/passwd", "/etc/shadow", "/no/such/file.png", "/proc/self/environ", "/dev/zero", "http://h/x.png",
     "OUT/secret.png", "IN/link.png", "IN/fifo.png", "IN/big.png", "IN/../outside/secret.png", "IN/missing.png"],
)
def test_refusals_look_alike(tree: dict[str, Path], name: str) -> None:
    policy = PathPolicy([tree["allowed"]], max_bytes=1024 * 1024)
    value = name.replace("IN", str(tree["allowed"])).replace("OUT", str(tree["outside"]))
    with pytest.raises(PathNotAllowedError) as err:
        policy.read_bytes(value, what="candidate")
    # the same text for an existing file, a missing one, a device or a FIFO
    assert str(err.value) == str(PathPolicy([])._refuse("candidate"))
    assert isinstance(err.value, PermissionError)


def test_default_roots_are_the_registered_store_folders(tree: dict[str, Path], monkeypatch) -> None:
    monkeypatch.setattr(confine, "_registered", [])
    policy = PathPolicy()  # looked up at each check
    with pytest.raises(PathNotAllowedError):
        policy.read_bytes(tree["allowed"] / "ok.png")
    confine.register_root(tree["allowed"])
    assert policy.read_bytes(tree["allowed"] / "ok.png") == b"ok-bytes"
    assert PathPolicy(extra_roots := [tree["outside"]]).roots == [Path(os.path.realpath(extra_roots[0]))]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        PathPolicy([], max_bytes=0)
    with pytest.raises(PathNotAllowedError):
        PathPolicy(["/"]).read_bytes(12)  # type: ignore[arg-type]
