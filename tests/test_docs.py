"""The README's command-line section says what a new user needs, and its examples parse; pytest
shows the reasons of skipped tests."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
COMMAND_LINE = README.split("## The command line\n", 1)[1].split("\n## ", 1)[0]


def test_the_command_line_section_says_what_plot_and_png_inputs_need():
    assert "--plot" in COMMAND_LINE and 'pip install ".[plot]"' in COMMAND_LINE
    assert "PNG" in COMMAND_LINE and "28×28" in COMMAND_LINE  # what images predict takes, and how to make one
    assert "Image.open(" in COMMAND_LINE


def test_the_command_line_examples_use_flags_that_exist():
    from nnx.cli import build_parser

    lines = [line.split("  #")[0].strip() for line in re.findall(r"^nnx .*$", COMMAND_LINE, re.M)]
    assert len(lines) >= 5
    for line in lines:
        args = shlex.split(line)[1:]
        if "--help" in args:
            continue
        build_parser().parse_args(args)  # exits 2 on an unknown flag or value


def test_pytest_reports_why_tests_were_skipped():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib is new in Python 3.11")
    import tomllib

    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    assert any(option.startswith("-r") and "s" in option for option in options.split())
