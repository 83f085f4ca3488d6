"""An author-year bibliography: the reference list is labelled as the text cites.

sphinxcontrib-bibtex's ``author_year`` reference style writes citations in the text
as "Williams (1992)", but its default list labels entries alphabetically
("[Wil92]"). This pybtex style labels each entry "Williams, 1992",
"Sutton and Barto, 2018" or "Schulman et al., 2015" (a, b, ... when two would
coincide), sorts the list by author, year and title, and links each entry's DOI
(``doi``) or arXiv page (``eprint``). Selected in ``_config.yml`` with
``bibtex_default_style: authoryear``.
"""

from __future__ import annotations

import re
from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle


def _surname(person) -> str:
    parts = person.rich_prelast_names + person.rich_last_names   # LaTeX accents decoded
    return re.sub(r"[{}]", "", " ".join(part.render_as("text") for part in parts))


def author_year(entry) -> str:
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_surname(p) for p in people]
    if not names:
        who = re.sub(r"[{}]", "", entry.fields.get("title", entry.key))
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabels(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        sorted_entries = list(sorted_entries)
        labels = [author_year(e) for e in sorted_entries]
        counts, seen = Counter(labels), Counter()
        for label in labels:
            if counts[label] > 1:
                seen[label] += 1
                yield label + "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            else:
                yield label


class AuthorYearStyle(PlainStyle):
    default_label_style = AuthorYearLabels


register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)


def setup(app):                            # a Sphinx extension: registering is all it does
    return {"parallel_read_safe": True, "parallel_write_safe": True}
