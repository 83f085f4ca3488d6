"""Serve the widget scripts with the book, so saved widget state renders offline.

Pages with ``interact`` widgets load RequireJS and the Jupyter widget manager
(``nb_ipywidgets_js`` in ``_config.yml`` points at ``_static/widgets/...``). The
files live in ``_ext/widget_js/`` (see its README for their origin and licenses),
not in ``_static/``: Jupyter Book adds every script in ``_static/`` to every page.
This extension copies them into the built book's ``_static/widgets/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

SOURCE = Path(__file__).parent / "widget_js"


def copy_widget_scripts(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / "widgets"
    target.mkdir(parents=True, exist_ok=True)
    for script in SOURCE.glob("*.js"):
        shutil.copyfile(script, target / script.name)


def setup(app):
    app.connect("build-finished", copy_widget_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
