"""The Python examples in README.md and intro.md run as printed."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNIPPETS = [(name, block) for name in ("README.md", "intro.md")
            for block in re.findall(r"```python\n(.*?)```", (ROOT / name).read_text(), flags=re.S)]


def test_there_are_snippets():
    assert {name for name, _ in SNIPPETS} == {"README.md", "intro.md"}


@pytest.mark.parametrize("name, code", SNIPPETS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SNIPPETS)])
def test_snippet_runs(name, code):
    namespace = {}
    exec(compile(code, name, "exec"), namespace)
    if "grad" in namespace:
        assert namespace["grad"].shape == (namespace["policy"].n_params,)
