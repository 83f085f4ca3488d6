"""The page's download button serves the chapter's twin notebook.

sphinx-book-theme's ".ipynb" download button links ``_sources/<page>.ipynb``, into
which it copies the notebook MyST-NB executed: the raw MyST conversion, with
``{literalinclude}``, ``{cite}`` and ``{eq}`` left as they are and no install
cell, so it fails on Colab. After the build, this extension copies each chapter's
twin (``chapters/NN_topic.ipynb``, made by ``scripts/make_twins.py``: install
cell, included code, links, author-year citations, equation numbers) over it.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def copy_twins(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    sources = Path(app.outdir) / "_sources"
    for twin in sorted((Path(app.srcdir) / "chapters").glob("[0-9][0-9]_*.ipynb")):
        target = sources / "chapters" / twin.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(twin, target)


def setup(app):
    app.connect("build-finished", copy_twins)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
