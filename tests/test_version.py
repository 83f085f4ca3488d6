"""pgkit's version is stated once in pyproject.toml and matches the package."""

import re
from pathlib import Path

import pgkit

ROOT = Path(__file__).resolve().parents[1]


def test_version_matches_pyproject():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^version = "([^"]+)"', text, flags=re.M).group(1) == pgkit.__version__
