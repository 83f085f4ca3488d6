"""Generate each chapter's output-free ``.ipynb`` twin from its MyST source.

The ``.md`` file is the only source; the twin is made from it, one way:

* a first code cell installs pgkit when it is missing (on Colab); the repository
  address comes from ``repository.url`` in ``_config.yml``;
* every ``literalinclude`` of pgkit code becomes that code, as a fenced block;
* MyST-only syntax that Jupyter would show raw is turned into plain Markdown
  (``{math}`` blocks, theorem boxes, citation and reference roles).

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


def convert_markdown(source: str, chapter_dir: Path) -> str:
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
            path = Path(os.path.normpath(chapter_dir / arg))
            rel = Path(os.path.relpath(path, ROOT)).as_posix()
            out.append(f"*From `{rel}`:*")
            out.append("")
            out.append("```" + options.get("language", "python"))
            out.append(included_lines(path, options))
            out.append("```")
        elif name == "math":
            label = options.get("label")
            out.append("$$")
            out.extend(body)
            out.append("$$" + (f"  *({label})*" if label else ""))
        elif name.startswith("prf:"):
            kind = name.split(":", 1)[1].capitalize()
            title = f" ({arg})" if arg else ""
            out.append(f"> **{kind}{title}.**")
            out.extend("> " + line if line.strip() else ">" for line in body)
        elif name in {"note", "tip", "warning", "important", "admonition"}:
            title = arg or name.capitalize()
            out.append(f"> **{title}.**")
            out.extend("> " + line if line.strip() else ">" for line in body)
        else:
            out.extend(body)                              # other directives: keep their text
    text = "\n".join(out)
    # labelled display math `$$ ... $$ (label)`: Jupyter's MathJax shows the label as a tag
    text = re.sub(r"^(>?[ \t]*)\$\$[ \t]*\(([\w-]+)\)[ \t]*$", r"\1\\tag{\2}\n\1$$", text, flags=re.M)
    text = re.sub(r"\{cite(?::\w+)?\}`([^`]+)`", lambda m: "[" + m.group(1) + "]", text)
    text = re.sub(r"\{eq\}`([^`]+)`", r"(\1)", text)
    text = re.sub(r"\{(?:numref|ref|prf:ref|doc|py:func|py:class|py:mod)\}`([^`<]*?)(?:\s*<[^>]*>)?`",
                  lambda m: m.group(1).strip() or "see the book", text)
    text = re.sub(r"^\(([\w-]+)\)=\s*$", "", text, flags=re.M)       # MyST targets
    return text


def make_twin(md_path: Path) -> str:
    """The twin notebook of ``md_path``, as the JSON text that is written to disk."""
    nb = jupytext.read(md_path)
    chapter_dir = md_path.parent
    cells = [nbformat.v4.new_markdown_cell(
        f"*This notebook is generated from `{md_path.name}`; edit that file, not this one.*"),
        nbformat.v4.new_code_cell(install_cell_source())]
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(convert_markdown(cell.source, chapter_dir))
        elif cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(cell.source)
        else:
            new = nbformat.v4.new_raw_cell(cell.source)
        tags = cell.metadata.get("tags")
        if tags:
            new.metadata["tags"] = list(tags)
        cells.append(new)
    twin = nbformat.v4.new_notebook(cells=cells)
    twin.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
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
