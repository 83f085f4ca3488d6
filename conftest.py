"""Lets ``pytest --nbval`` execute the MyST chapters (``chapters/*.md``).

nbval collects only ``.ipynb`` files. Here each chapter's MyST source is read with
jupytext and handed to nbval, so the literal command ``pytest --nbval`` runs
pgkit's tests and every chapter. The ``.ipynb`` twins are generated from the
sources (``scripts/make_twins.py``) and checked by ``tests/test_twins.py``; they
are not executed a second time.
"""

from pathlib import Path

import pytest

ROOT = Path(__file__).parent
collect_ignore_glob = ["chapters/*.ipynb", "_build/*"]


def _is_myst_notebook(path: Path) -> bool:
    if path.suffix != ".md" or path.parent != ROOT / "chapters":
        return False
    head = path.read_text(encoding="utf-8")[:400]
    return head.startswith("---") and "format_name: myst" in head


def pytest_collect_file(file_path, parent):
    opt = parent.config.option
    if not (getattr(opt, "nbval", False) or getattr(opt, "nbval_lax", False)):
        return None
    if _is_myst_notebook(Path(file_path)):
        from nbval.plugin import IPyNbFile

        class MystNotebook(IPyNbFile):
            """An nbval notebook read from MyST markdown."""

            def collect(self):
                import jupytext
                import nbval.plugin as plugin

                real = plugin.nbformat

                class _Reader:
                    def __getattr__(self, name):
                        return getattr(real, name)

                    @staticmethod
                    def read(path, as_version=4):
                        return jupytext.read(path)

                plugin.nbformat = _Reader()
                try:
                    yield from super().collect()
                finally:
                    plugin.nbformat = real

        return MystNotebook.from_parent(parent, path=Path(file_path))
    return None
