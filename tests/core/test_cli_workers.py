"""``umr index --workers``: a number, or ``auto`` sized by where the model runs."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest

from umr.cli.index import _workers_arg, render_workers
from umr.documents import usable_cpus


def test_workers_argument_parses_numbers_and_auto() -> None:
    assert _workers_arg("auto") == "auto" and _workers_arg("3") == 3
    for bad in ("0", "-2", "many", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="auto"):
            _workers_arg(bad)


def test_auto_workers_follow_the_device() -> None:
    cpu, gpu, server = SimpleNamespace(device="cpu"), SimpleNamespace(device="cuda:0"), SimpleNamespace()
    assert render_workers("auto", cpu, files=50) == 1
    assert render_workers("auto", gpu, files=50) == max(1, min(usable_cpus() - 1, 16))
    assert render_workers("auto", server, files=50) == render_workers("auto", gpu, files=50)
    assert render_workers("auto", gpu, files=1) == 1
    assert render_workers(4, cpu, files=1) == 4  # a number is taken as given


def test_index_parser_defaults_to_auto() -> None:
    from umr.cli import build_parser

    args = build_parser().parse_args(["index", "x.pdf"])
    assert args.workers == "auto"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["index", "x.pdf", "--workers", "0"])
