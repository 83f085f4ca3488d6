"""The book and pgkit cover each other.

* every public pgkit name (each module's ``__all__``) is used in some chapter, or
  waits in ``WAITING`` for a chapter not written yet;
* every ``[book:...]`` marker in pgkit is included by some chapter, or waits in
  ``WAITING_MARKERS``;
* every ``literalinclude`` in a chapter names a file and a marker pair that exist.

The waiting lists only shrink: a name that a chapter now uses must leave them.
"""

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import pgkit

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_SOURCES = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "chapters").glob("*.md"))]


def _code_of(text: str) -> str:
    """The code cells and inline code spans of a MyST chapter (names in prose do not count)."""
    cells = re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", text, flags=re.S)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return "\n".join(cells + spans)


CHAPTER_CODE = "\n".join(_code_of(text) for text in CHAPTER_SOURCES)

# Public names whose chapter is not written yet (later chapters empty this list).
WAITING = {
    "pgkit.budget": {"LEVELS"},
    "pgkit.optim": {"GradientAscent"},
    "pgkit.plotting": {"BOOK_STYLE"},
    "pgkit.policies": {"SoftmaxPolicy"},
    "pgkit.returns": {"episode_starts"},
}
# Book markers whose chapter is not written yet.
WAITING_MARKERS = {"reward-to-go"}


def public_names():
    names = []
    for info in pkgutil.walk_packages(pgkit.__path__, prefix="pgkit."):
        if info.name.split(".")[-1].startswith("_"):
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", []):
            names.append((info.name, name))
    return names


def used_in_chapters(name: str) -> bool:
    return re.search(rf"\b{re.escape(name)}\b", CHAPTER_CODE) is not None


def book_markers():
    markers = {}
    for path in (ROOT / "pgkit").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for name in re.findall(r"# \[book:([\w-]+)\]", text):
            assert f"# [/book:{name}]" in text, f"{path.name}: marker {name} is never closed"
            markers[name] = path
    return markers


def inclusions():
    found = []
    for path in sorted((ROOT / "chapters").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"```\{literalinclude\}\s+(\S+)\n((?::[^\n]*\n)*)", text):
            opts = dict(re.findall(r"^:([\w-]+):\s*(.*)$", m.group(2), flags=re.M))
            found.append((path, m.group(1), opts))
    return found


def test_every_module_declares_its_public_names():
    for info in pkgutil.walk_packages(pgkit.__path__, prefix="pgkit."):
        if not info.name.split(".")[-1].startswith("_") and not info.ispkg:
            assert hasattr(importlib.import_module(info.name), "__all__"), info.name


@pytest.mark.parametrize("module, name", public_names())
def test_public_name_is_used_by_a_chapter_or_waits(module, name):
    waiting = name in WAITING.get(module, set())
    if used_in_chapters(name):
        assert not waiting, f"{module}.{name} is used in a chapter now: remove it from WAITING"
    else:
        assert waiting, f"{module}.{name} is used by no chapter (use it, or add it to WAITING)"


def test_waiting_names_exist():
    existing = set(public_names())
    for module, names in WAITING.items():
        for name in names:
            assert (module, name) in existing, f"WAITING lists {module}.{name}, which does not exist"


def test_every_marker_is_included_or_waits():
    included = {o.get("start-after", "").strip('"').replace("# [book:", "").rstrip("]")
                for _, _, o in inclusions()}
    for name in book_markers():
        if name in included:
            assert name not in WAITING_MARKERS, f"marker {name} is included now: remove it from WAITING_MARKERS"
        else:
            assert name in WAITING_MARKERS, f"marker {name} is included by no chapter"
    assert WAITING_MARKERS <= set(book_markers()), "WAITING_MARKERS names a marker that does not exist"


def test_every_inclusion_names_an_existing_marker():
    assert inclusions(), "no chapter includes pgkit code"
    for chapter, target, opts in inclusions():
        path = (chapter.parent / target).resolve()
        assert path.exists(), f"{chapter.name} includes {target}, which does not exist"
        text = path.read_text(encoding="utf-8")
        start, end = opts.get("start-after", "").strip('"'), opts.get("end-before", "").strip('"')
        assert re.fullmatch(r"# \[book:[\w-]+\]", start), f"{chapter.name}: start-after {start!r} is not a marker"
        assert end == start.replace("[book:", "[/book:"), f"{chapter.name}: end-before {end!r} does not close {start!r}"
        assert start in text and end in text, f"{chapter.name}: {start} not found in {target}"
        assert text.index(start) < text.index(end)


def chapter_equation_labels() -> set[str]:
    """Every equation label a chapter defines: ``$$ ... $$ (label)`` and ``:label:``."""
    labels = set()
    for text in CHAPTER_SOURCES:
        labels.update(re.findall(r"\$\$[ \t]*\(([\w-]+)\)", text))
        labels.update(re.findall(r"^:label:[ \t]*([\w-]+)", text, flags=re.M))
    return labels


def cited_equation_labels():
    """(file, label) for every "book equation(s) ``label``" in pgkit's docstrings."""
    cited = []
    for path in sorted((ROOT / "pgkit").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"[Bb]ook equations?((?:\s*(?:,|and)?\s*``[\w-]+``)+)", text):
            cited.extend((path.name, label) for label in re.findall(r"``([\w-]+)``", m.group(1)))
    return cited


def test_docstrings_cite_equation_labels_that_exist():
    cited = cited_equation_labels()
    assert len(cited) > 20, "the pattern no longer finds pgkit's citations of book equations"
    labels = chapter_equation_labels()
    missing = sorted({f"{name}: {label}" for name, label in cited if label not in labels})
    assert not missing, "docstrings cite book equations that no chapter labels: " + ", ".join(missing)


def _enclosing_function(path: Path, marker: str) -> str:
    lines = path.read_text(encoding="utf-8").splitlines()
    idx = next(i for i, line in enumerate(lines) if marker in line)
    indent = len(lines[idx]) - len(lines[idx].lstrip())
    for line in reversed(lines[:idx]):
        m = re.match(r"^(\s*)(?:def|class) (\w+)", line)
        if m and len(m.group(1)) < indent:
            return m.group(2)
    return ""


def test_every_inclusion_has_a_caption_naming_file_and_function():
    for chapter, target, opts in inclusions():
        path = (chapter.parent / target).resolve()
        caption = opts.get("caption", "")
        rel = path.relative_to(ROOT).as_posix()
        assert rel in caption, f"{chapter.name}: the inclusion of {target} needs :caption: naming {rel}"
        function = _enclosing_function(path, opts["start-after"].strip('"'))
        if function:
            assert function in caption, f"{chapter.name}: caption {caption!r} should name {function}"
