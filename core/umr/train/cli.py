"""Former home of the ``umr train`` command, now :mod:`umr.cli.train`; these names still work."""

from __future__ import annotations

from umr.cli.train import SUMMARY_METRICS, register, run

add_parser = register
cmd_train = run

__all__ = ["SUMMARY_METRICS", "add_parser", "cmd_train"]
