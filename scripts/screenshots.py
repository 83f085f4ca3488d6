"""Screenshots of every page of the built book, offline, at a desktop and a phone width.

Usage::

    python scripts/screenshots.py                  # every page, 1280 px and 390 px
    python scripts/screenshots.py chapters/02_importance_sampling --widths 1280

Needs Debian's ``chromium`` (headless) and the built book in ``_build/html``. Each
page is rendered with the network blocked (the book must work offline: MathJax and
the widget scripts are served with it), then cut into tiles of at most 2400 px
height, blank margins trimmed: ``_build/screenshots/<page>-<width>-<k>.png``. Look at
them: math typeset, nothing cut at the right edge, figures legible, widget controls
visible.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
OUT = ROOT / "_build" / "screenshots"
TILE = 2400
Image.MAX_IMAGE_PIXELS = None


def pages() -> list[str]:
    found = ["intro", "notation"]
    found += [f"chapters/{p.stem}" for p in sorted((HTML / "chapters").glob("[0-9][0-9]_*.html"))]
    found += ["api", "bibliography"]
    return [p for p in found if (HTML / f"{p}.html").exists()]


def shoot(page: str, width: int, height: int) -> Path:
    png = Path(tempfile.mkstemp(suffix=".png")[1])
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--host-resolver-rules=MAP * ~NOTFOUND",         # offline: no host resolves
             f"--user-data-dir={profile}", "--hide-scrollbars", "--force-device-scale-factor=1",
             f"--window-size={width},{height}", "--virtual-time-budget=15000",
             f"--screenshot={png}", (HTML / f"{page}.html").as_uri()],
            check=True, capture_output=True, timeout=300)
    return png


def tiles(png: Path, stem: str) -> list[Path]:
    image = Image.open(png).convert("RGB")
    # The page fills the window, with the footer at its bottom: cut out the blank run
    # between the last content and the footer (looking only at the text column, since
    # the sidebars' borders run down the whole window).
    band = image.crop((image.width // 5 if image.width > 800 else 0, 0,
                       image.width * 97 // 100, image.height)).convert("L")
    content = (np.asarray(band) < 245).any(axis=1)
    rows = np.flatnonzero(content)
    if rows.size:
        gaps = np.diff(rows)
        k = int(np.argmax(gaps)) if gaps.size else -1
        if k >= 0 and gaps[k] > 600:                     # the blank run above the footer
            keep = list(range(0, rows[k] + 40)) + list(range(rows[k + 1] - 20, image.height))
            image = Image.fromarray(np.asarray(image)[keep])
        else:
            image = image.crop((0, 0, image.width, min(image.height, rows[-1] + 40)))
    out = []
    for k, top in enumerate(range(0, image.height, TILE)):
        path = OUT / f"{stem}-{k:02d}.png"
        image.crop((0, top, image.width, min(image.height, top + TILE))).save(path)
        out.append(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="*", help="pages under _build/html, without .html")
    parser.add_argument("--widths", type=int, nargs="+", default=[1280, 390])
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for page in args.pages or pages():
        for width in args.widths:
            height = 160000 if width < 800 else 64000
            png = shoot(page, width, height)
            made = tiles(png, f"{page.replace('/', '_')}-{width}")
            png.unlink()
            print(f"{page} at {width} px: {len(made)} tiles in {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
