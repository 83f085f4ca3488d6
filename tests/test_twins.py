"""Each chapter's .ipynb twin is exactly what scripts/make_twins.py makes from its .md now."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import make_twins  # noqa: E402

CHAPTERS = make_twins.chapter_sources()


def test_there_are_chapters():
    assert CHAPTERS, "no chapters/NN_*.md found"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_twin_is_current(md):
    twin = md.with_suffix(".ipynb")
    assert twin.exists(), f"{twin.name} is missing: run python scripts/make_twins.py"
    assert twin.read_text(encoding="utf-8") == make_twins.make_twin(md), (
        f"{twin.name} is stale: run python scripts/make_twins.py")


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_twin_shows_included_code_and_installs_pgkit(md):
    nb = json.loads(md.with_suffix(".ipynb").read_text(encoding="utf-8"))
    sources = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in nb["cells"]]
    text = "\n".join(sources)
    assert "literalinclude" not in text
    assert make_twins.repository_url() in sources[1] and "import pgkit" in sources[1]
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
    if "literalinclude" in md.read_text(encoding="utf-8"):
        assert "```python" in text


def test_included_lines_follow_markers(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text("a = 1\n    # [book:x]\n    b = 2\n    # [/book:x]\nc = 3\n")
    got = make_twins.included_lines(src, {"start-after": '"# [book:x]"', "end-before": '"# [/book:x]"',
                                          "dedent": ""})
    assert got == "b = 2"


def test_check_mode_reports_a_stale_twin(tmp_path, monkeypatch):
    chapters = tmp_path / "chapters"
    chapters.mkdir()
    (chapters / "01_x.md").write_text(CHAPTERS[0].read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(make_twins, "CHAPTERS", chapters)
    monkeypatch.setattr(make_twins, "ROOT", tmp_path)
    (tmp_path / "_config.yml").write_text((ROOT / "_config.yml").read_text())
    (tmp_path / "pgkit").symlink_to(ROOT / "pgkit")
    (tmp_path / "references.bib").symlink_to(ROOT / "references.bib")
    assert make_twins.main(["--check"]) == 1                     # missing
    assert make_twins.main([]) == 0
    assert make_twins.main(["--check"]) == 0                     # fresh
    md = chapters / "01_x.md"
    md.write_text(md.read_text() + "\nOne more sentence.\n")
    assert make_twins.main(["--check"]) == 1                     # stale


MYST_ONLY = ["{cite", "{eq}`", "{ref}`", "{prf:", "{numref}`", "{doc}`", "```{", ":::{", "{py:"]


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_twin_markdown_has_no_myst_syntax_left(md):
    nb = json.loads(md.with_suffix(".ipynb").read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            text = "".join(cell["source"])
            left = [s for s in MYST_ONLY if s in text]
            assert not left, f"{md.name}: {left} left raw in a markdown cell: {text[:200]!r}"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_twin_collapses_hidden_cells_and_lists_references(md):
    nb = json.loads(md.with_suffix(".ipynb").read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell["cell_type"] == "code" and tags & {"remove-cell", "hide-input"}:
            assert cell["metadata"]["jupyter"]["source_hidden"] is True
            assert "".join(cell["source"]).startswith("# @title")
    if "{cite" in md.read_text(encoding="utf-8"):
        assert "".join(nb["cells"][-1]["source"]).startswith("## References")


def test_conversion_of_equations_citations_and_references(tmp_path, monkeypatch):
    chapters = tmp_path / "chapters"
    chapters.mkdir()
    md = chapters / "02_x.md"
    md.write_text("---\njupytext:\n  text_representation:\n    format_name: myst\n---\n"
                  "(sec-a)=\n## A section\n\n$$\nx = 1\n$$ (first)\n\n"
                  "```{math}\n:label: second\ny = 2\n```\n\n"
                  "See {eq}`second`, {ref}`sec-a`, {cite:t}`williams1992simple` and "
                  "{cite}`williams1992simple,sutton2018reinforcement`.\n", encoding="utf-8")
    monkeypatch.setattr(make_twins, "CHAPTERS", chapters)
    monkeypatch.setattr(make_twins, "ROOT", tmp_path)
    (tmp_path / "_config.yml").write_text("repository:\n  url: https://example.org/r\n"
                                          "html:\n  baseurl: https://example.org/book/\n")
    (tmp_path / "references.bib").symlink_to(ROOT / "references.bib")
    assert make_twins.equation_numbers(md) == {"first": "2.1", "second": "2.2"}
    conv = make_twins.Converter(md)
    text = conv.convert(md.read_text(encoding="utf-8").split("---\n", 2)[2])
    assert "\\tag{2.1}" in text and "\\tag{2.2}" in text
    assert "See (2.2), [A section](https://example.org/book/chapters/02_x.html#sec-a)" in text
    assert "Williams (1992)" in text and "(Williams, 1992; Sutton and Barto, 2018)" in text
    assert conv.references_cell().startswith("## References")


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_twin_equation_numbers_match_the_built_book(md):
    """The twins number equations as Sphinx does (checked when the book has been built)."""
    import re
    html = ROOT / "_build" / "html" / "chapters" / (md.stem + ".html")
    if not html.exists() or html.stat().st_mtime < md.stat().st_mtime:
        pytest.skip("the book is not built, or is older than the chapter: run make book")
    built = dict(re.findall(r'id="equation-([\w-]+)">\s*<span class="eqno">\(([\d.]+)\)',
                            html.read_text(encoding="utf-8")))
    assert make_twins.equation_numbers(md) == built
