"""The book names its sources as a reader can look them up, never by file name or number.

The course documents the book draws on are cited by title with a bibliography
entry (the policy gradient slides, Janson's CS/STAT 184 lecture, the CS/STAT 184
course notes, the CS 285 notes). Private shorthand ("seed 004", "slide 001",
"lecture 002", "the textbook chapter", ``seed_004_printed``) must not appear in
any page of the book.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "chapters").glob("*.md")) + [ROOT / name for name in (
    "intro.md", "notation.md", "api.md", "bibliography.md", "README.md")]

SHORTHAND = re.compile(
    r"\bseeds?[ _-]?\d{3}|\bseed's (?:printed|formula|version)|\b(?:slides?|lectures?|notes|documents?|files?)[ _-]?00\d\b"
    r"|\b00[0-4]_[0-9a-f]{6}|textbook chapter|shared/seeds",
    flags=re.IGNORECASE)
# the four course sources: each must have its bibliography entry
SOURCE_KEYS = ["pgslides", "janson2024cs184", "cs184notes", "levine2023cs285"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_private_shorthand_for_sources(page):
    hits = [f"{page.name}:{n}: {line.strip()[:80]}"
            for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
            if SHORTHAND.search(line)]
    assert not hits, "name the source by its title and cite it:\n" + "\n".join(hits)


def test_the_pattern_catches_shorthand():
    for bad in ["Seed 004 writes", "slide 001", "lecture 002", "seed_004_printed",
                "the seed's printed form", "the textbook chapter", "notes 004"]:
        assert SHORTHAND.search(bad), bad
    for fine in ["for seed in range(5)", "seeds 0..4", "rng = default_rng(seed)",
                 "the CS 285 notes", "Janson's CS/STAT 184 lecture"]:
        assert not SHORTHAND.search(fine), fine


def test_each_course_source_has_a_bibliography_entry_and_is_cited():
    bib = (ROOT / "references.bib").read_text(encoding="utf-8")
    chapters = "\n".join(p.read_text(encoding="utf-8") for p in PAGES)
    for key in SOURCE_KEYS:
        assert re.search(rf"@\w+\{{{key},", bib), f"references.bib has no entry {key}"
        assert re.search(rf"\{{cite(?::\w+)?\}}`[^`]*\b{key}\b", chapters), f"no page cites {key}"
