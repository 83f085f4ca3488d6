"""Generate each chapter's output-free ``.ipynb`` twin from its MyST source.

The ``.md`` file is the only source; the twin is made from it, one way, so that
it reads well in Jupyter and on Colab, where MyST roles and directives would show
raw:

* a first code cell installs pgkit when it is missing (on Colab); the repository
  address comes from ``repository.url`` in ``_config.yml``;
* every ``literalinclude`` of pgkit code becomes that code, as a fenced block under
  a caption naming its file and function;
* equations keep the numbers the book gives them, ``(2.3)``, and ``{eq}``
  references become those numbers;
* cross-references (``{ref}``, ``{prf:ref}``) become links to the book's pages,
  under the address ``html.baseurl`` in ``_config.yml``;
* citations become author-year text, "Williams (1992)" or "(Williams, 1992)", and
  a last cell lists the references cited;
* theorem boxes and notes become quoted paragraphs, solutions in dropdowns become
  ``<details>`` blocks (collapsed until clicked), and cells the book hides
  (``remove-cell``, ``hide-input``) start collapsed.

Usage::

    python scripts/make_twins.py          # write every twin
    python scripts/make_twins.py --check  # exit 1 if a twin is stale or missing

``tests/test_twins.py`` runs the check.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap
import unicodedata
from pathlib import Path

import jupytext
import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"

DIRECTIVE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}[ \t]*(?P<arg>.*)$")


def repository_url() -> str:
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    return config["repository"]["url"].rstrip("/")


def install_cell_source() -> str:
    url = repository_url()
    return (
        "# Runs on Colab or any fresh environment: installs pgkit if it is missing.\n"
        "try:\n"
        "    import pgkit\n"
        "except ImportError:\n"
        f'    %pip install --quiet "pgkit @ git+{url}"\n'
    )


def _split_directive(lines: list[str], start: int):
    """Parse the directive opening at ``lines[start]``: (name, arg, options, body, end index)."""
    m = DIRECTIVE.match(lines[start])
    fence = m.group("fence")
    options, body = {}, []
    i = start + 1
    while i < len(lines) and lines[i].startswith(":") and not lines[i].startswith(fence):
        key, _, value = lines[i][1:].partition(":")
        options[key.strip()] = value.strip()
        i += 1
    while i < len(lines) and lines[i].rstrip() != fence:
        body.append(lines[i])
        i += 1
    return m.group("name"), m.group("arg").strip(), options, body, i


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def included_lines(path: Path, options: dict) -> str:
    """The lines a ``literalinclude`` with ``start-after``/``end-before`` shows."""
    text = path.read_text(encoding="utf-8").splitlines()
    if "start-after" in options:
        marker = _unquote(options["start-after"])
        idx = next(i for i, line in enumerate(text) if marker in line)
        text = text[idx + 1:]
    if "end-before" in options:
        marker = _unquote(options["end-before"])
        idx = next(i for i, line in enumerate(text) if marker in line)
        text = text[:idx]
    code = "\n".join(text)
    if "dedent" in options:
        code = textwrap.dedent(code)
    return code.strip("\n")


# ---------------------------------------------------------------- the book's structure

LABELLED_DISPLAY = re.compile(r"^>?[ \t]*\$\$[ \t]*\(([\w-]+)\)[ \t]*$", flags=re.M)
TARGET = re.compile(r"^\(([\w-]+)\)=[ \t]*$")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t]*$")


def book_url() -> str:
    """The published book's address (``html.baseurl``), without a trailing slash."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    return (config.get("html", {}).get("baseurl") or "").rstrip("/")


def chapter_number(md_path: Path) -> int:
    return int(md_path.name[:2])


def _page(md_path: Path) -> str:
    return f"chapters/{md_path.stem}.html"


def equation_numbers(md_path: Path) -> dict[str, str]:
    """label -> "2.3": labelled displays and ``{math}`` blocks in order, as Sphinx numbers them."""
    text = md_path.read_text(encoding="utf-8")
    found = []
    for m in LABELLED_DISPLAY.finditer(text):
        found.append((m.start(), m.group(1)))
    for m in re.finditer(r"^[`:]{3,}\{math\}[^\n]*\n((?::[^\n]*\n)*)", text, flags=re.M):
        label = re.search(r"^:label:[ \t]*([\w-]+)", m.group(1), flags=re.M)
        if label:
            found.append((m.start(), label.group(1)))
    n = chapter_number(md_path)
    return {label: f"{n}.{k}" for k, (_, label) in enumerate(sorted(found), 1)}


def link_targets(md_paths: list[Path]) -> dict[str, tuple[str, str]]:
    """label -> (page, text): section targets ``(label)=`` and labelled prf boxes."""
    targets = {}
    for md in md_paths:
        lines = md.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            m = TARGET.match(line)
            if m:
                title = next((HEADING.match(l).group(2) for l in lines[i + 1:i + 4]
                              if HEADING.match(l)), m.group(1))
                targets[m.group(1)] = (_page(md), title)
            d = DIRECTIVE.match(line)
            if d and d.group("name").startswith("prf:"):
                name, arg, options, _, _ = _split_directive(lines, i)
                if "label" in options:
                    kind = name.split(":", 1)[1].capitalize()
                    arg = re.sub(r"\s*\{cite(?::\w+)?\}`[^`]*`", "", arg).strip()  # link text
                    targets[options["label"]] = (_page(md), f"{kind} ({arg})" if arg else kind)
    return targets


def _bibliography():
    from pybtex.database import parse_file
    return parse_file(str(ROOT / "references.bib")).entries


def _surnames(entry) -> list[str]:
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    return [re.sub(r"[{}]", "", " ".join(p.prelast_names + p.last_names)) for p in people]


def _who(entry) -> str:
    names = _surnames(entry)
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} and {names[1]}"
    return f"{names[0]} et al." if names else entry.key


def _tex_to_text(value: str) -> str:
    value = value.replace("\\&", "&").replace("--", "–")
    value = re.sub(r"\\'\{?([a-zA-Z])\}?", lambda m: unicodedata.normalize("NFC", m.group(1) + "\u0301"),
                   value)
    return re.sub(r"[{}]", "", value)


def reference_line(entry) -> str:
    """One entry of the twin's reference list, in Markdown."""
    f = entry.fields
    people = entry.persons.get("author") or []
    authors = ", ".join(_tex_to_text(" ".join(p.first_names + p.middle_names + p.prelast_names
                                              + p.last_names)) for p in people)
    venue = f.get("journal") or f.get("booktitle") or f.get("howpublished") \
        or f.get("publisher") or f.get("institution") or ""
    line = f"{authors} ({f.get('year', 'n.d.')}). {_tex_to_text(f.get('title', ''))}."
    if venue:
        line += f" *{_tex_to_text(venue)}*."
    if "eprint" in f:
        line += f" [arXiv:{f['eprint']}](https://arxiv.org/abs/{f['eprint']})."
    if "doi" in f:
        line += f" [doi:{f['doi']}](https://doi.org/{f['doi']})."
    return line


# ---------------------------------------------------------------- Markdown conversion

class Converter:
    """Turns one chapter's MyST Markdown cells into Markdown that Jupyter renders."""

    def __init__(self, md_path: Path):
        self.md_path = md_path
        self.chapter_dir = md_path.parent
        self.base = book_url()
        self.equations = equation_numbers(md_path)
        self.targets = link_targets(chapter_sources() or [md_path])
        self.entries = None
        self.cited: list[str] = []

    def _url(self, page: str, anchor: str | None = None) -> str:
        url = f"{self.base}/{page}" if self.base else page
        return f"{url}#{anchor}" if anchor else url

    def _cite(self, kind: str, keys: str) -> str:
        if self.entries is None:
            self.entries = _bibliography()
        parts = []
        for key in (k.strip() for k in keys.split(",")):
            entry = self.entries[key]
            if key not in self.cited:
                self.cited.append(key)
            year = entry.fields.get("year", "n.d.")
            parts.append(f"{_who(entry)} ({year})" if kind == "t" else f"{_who(entry)}, {year}")
        return "; ".join(parts) if kind == "t" else "(" + "; ".join(parts) + ")"

    def _reference(self, role: str, body: str) -> str:
        m = re.fullmatch(r"\s*(.*?)\s*<([^>]+)>\s*", body)
        text, label = (m.group(1), m.group(2)) if m else ("", body.strip())
        if role == "doc":
            page = os.path.normpath(os.path.join("chapters", label)).replace(os.sep, "/")
            return f"[{text or Path(label).name}]({self._url(page + '.html')})"
        if role.startswith("py:"):
            name = label.lstrip("~")
            return f"[`{text or name}`]({self._url('api.html', name)})"
        page, title = self.targets.get(label, (None, label))
        if page is None:
            return text or label
        return f"[{text or title}]({self._url(page, label)})"

    def convert(self, source: str) -> str:
        lines = source.splitlines()
        out: list[str] = []
        i = 0
        while i < len(lines):
            m = DIRECTIVE.match(lines[i])
            if not m:
                out.append(lines[i])
                i += 1
                continue
            name, arg, options, body, end = _split_directive(lines, i)
            i = end + 1
            if name == "literalinclude":
                path = Path(os.path.normpath(self.chapter_dir / arg))
                rel = Path(os.path.relpath(path, ROOT)).as_posix()
                caption = options.get("caption", "")
                out.append(f"*From {caption}:*" if caption else f"*From `{rel}`:*")
                out.append("")
                out.append("```" + options.get("language", "python"))
                out.append(included_lines(path, options))
                out.append("```")
            elif name == "math":
                label = options.get("label")
                out.append("$$")
                out.extend(body)
                if label:
                    out.append(f"\\tag{{{self.equations.get(label, label)}}}")
                out.append("$$")
            elif name.startswith("prf:"):
                kind = name.split(":", 1)[1].capitalize()
                title = f" ({arg})" if arg else ""
                out.append(f"> **{kind}{title}.**")
                out.extend("> " + line if line.strip() else ">" for line in body)
            elif "dropdown" in options.get("class", "") or name == "toggle":
                title = arg or "Show"
                out.append(f"<details><summary><b>{title}</b></summary>")
                out.append("")
                out.extend(body)
                out.append("")
                out.append("</details>")
            elif name in {"note", "tip", "warning", "important", "admonition"}:
                title = arg or name.capitalize()
                out.append(f"> **{title}.**")
                out.extend("> " + line if line.strip() else ">" for line in body)
            else:
                out.extend(body)                          # other directives: keep their text
        text = "\n".join(out)
        # labelled display math `$$ ... $$ (label)`: the book's number as a tag
        text = re.sub(r"^(>?[ \t]*)\$\$[ \t]*\(([\w-]+)\)[ \t]*$",
                      lambda m: f"{m.group(1)}\\tag{{{self.equations.get(m.group(2), m.group(2))}}}"
                                f"\n{m.group(1)}$$", text, flags=re.M)
        text = re.sub(r"\{cite(?::(\w+))?\}`([^`]+)`",
                      lambda m: self._cite(m.group(1) or "p", m.group(2)), text)
        text = re.sub(r"\{eq\}`([^`]+)`",
                      lambda m: f"({self.equations.get(m.group(1), m.group(1))})", text)
        text = re.sub(r"\{(numref|ref|prf:ref|doc|py:func|py:class|py:mod)\}`([^`]*)`",
                      lambda m: self._reference(m.group(1), m.group(2)), text)
        text = re.sub(r"^\(([\w-]+)\)=\s*$", "", text, flags=re.M)       # MyST targets
        return text

    def references_cell(self) -> str | None:
        if not self.cited:
            return None
        lines = ["## References", ""]
        for key in sorted(self.cited, key=lambda k: (_who(self.entries[k]).lower(),
                                                     self.entries[k].fields.get("year", ""))):
            lines.append(f"- {reference_line(self.entries[key])}")
        lines += ["", f"The book's full bibliography: [{self._url('bibliography.html')}]"
                      f"({self._url('bibliography.html')})."]
        return "\n".join(lines)


def convert_markdown(source: str, chapter_dir: Path) -> str:
    """MyST Markdown of one cell as plain Markdown (kept for callers of the old interface)."""
    md = next(iter(sorted(chapter_dir.glob("[0-9][0-9]_*.md"))), chapter_dir / "00_x.md")
    return Converter(md).convert(source)


HIDDEN_TAGS = {"remove-cell": "Check", "remove-input": "Check", "hide-input": "Show code",
               "hide-cell": "Show code"}


def make_twin(md_path: Path) -> str:
    """The twin notebook of ``md_path``, as the JSON text that is written to disk."""
    nb = jupytext.read(md_path)
    converter = Converter(md_path)
    cells = [nbformat.v4.new_markdown_cell(
        f"*This notebook is generated from `{md_path.name}`; edit that file, not this one. "
        f"The book's page: [{converter._url(_page(md_path))}]({converter._url(_page(md_path))}).*"),
        nbformat.v4.new_code_cell(install_cell_source())]
    for cell in nb.cells:
        tags = list(cell.metadata.get("tags", []))
        if cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(converter.convert(cell.source))
        elif cell.cell_type == "code":
            hidden = next((HIDDEN_TAGS[t] for t in tags if t in HIDDEN_TAGS), None)
            source = cell.source
            new = nbformat.v4.new_code_cell(source)
            if hidden:
                # collapsed in JupyterLab (source_hidden) and on Colab (a titled form cell)
                first, _, rest = source.partition("\n")
                if first.startswith("# Solution"):              # an exercise's solution
                    new.source = "# @title " + first[2:] + "\n" + rest
                elif not source.startswith("# @title"):
                    new.source = f"# @title {hidden}\n" + source
                new.metadata["jupyter"] = {"source_hidden": True}
                new.metadata["cellView"] = "form"
        else:
            new = nbformat.v4.new_raw_cell(cell.source)
        if tags:
            new.metadata["tags"] = tags
        cells.append(new)
    references = converter.references_cell()
    if references:
        cells.append(nbformat.v4.new_markdown_cell(references))
    twin = nbformat.v4.new_notebook(cells=cells)
    twin.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
    }
    for k, cell in enumerate(twin.cells):
        cell["id"] = f"cell-{k}"                       # stable ids: the twin is reproducible
    return json.dumps(twin, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def chapter_sources() -> list[Path]:
    return sorted(CHAPTERS.glob("[0-9][0-9]_*.md"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a twin is stale or missing")
    args = parser.parse_args(argv)
    stale = []
    for md in chapter_sources():
        twin_path = md.with_suffix(".ipynb")
        text = make_twin(md)
        current = twin_path.read_text(encoding="utf-8") if twin_path.exists() else None
        if current != text:
            if args.check:
                stale.append(twin_path.relative_to(ROOT).as_posix())
            else:
                twin_path.write_text(text, encoding="utf-8")
                print(f"wrote {twin_path.relative_to(ROOT)}")
    if stale:
        print("stale or missing twins (run python scripts/make_twins.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
