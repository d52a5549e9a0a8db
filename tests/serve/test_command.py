"""``python -m umr.serve`` (the ``umr serve`` command): starts on 127.0.0.1, serves, stops on SIGINT."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "core"), str(ROOT)])
    env.pop("UMR_SERVE_API_KEY", None)
    return env


def test_add_parser_registers_serve_with_safe_defaults() -> None:
    from umr.serve.command import add_parser, run

    parser = argparse.ArgumentParser(prog="umr")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--db", "x"])
    assert args.bind == "127.0.0.1" and args.port == 8000 and args.func is run
    assert args.allow_media_dir == [] and not args.no_batching


@pytest.mark.slow  # a fresh interpreter loads torch and the model (~30 s on a busy 2-core box)
def test_serve_command_runs_and_stops(tiny_model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "umr.serve", "--model", str(tiny_model_dir), "--device", "cpu", "--db",
         str(tmp_path / "db"), "--port", str(port), "--api-key", "k", "--log-level", "warning"],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        models = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer k"}).json()["data"]
        assert models[0]["owned_by"] == "umr" and models[0]["kind"] == "embedding"
        assert httpx.get(url + "/v1/stats").status_code == 401
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_serve_command_reports_a_bad_model_in_one_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "umr.serve", "--model", str(tmp_path / "missing"), "--port", str(free_port())],
        env=_env(), capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 2
    assert "umr serve: error: cannot load the model" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("argv,expected", [
    (["--max-batch-tokens", "0"], "--max-batch-tokens: Input should be greater than 0"),
    (["--max-inputs", "-3", "--allow-media-dir", "/nonexistent/umr"],
     "--allow-media-dir: allowed media folder '/nonexistent/umr' is not a directory; --max-inputs:"),
])
def test_bad_limits_are_named_by_their_option(argv: list[str], expected: str, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "umr.serve", *argv, "--model", str(tmp_path / "never-loaded")],
                         env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert expected in out.stderr and "pydantic" not in out.stderr and "Traceback" not in out.stderr
