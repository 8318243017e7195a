"""Reader for ontologies in OBO 1.4 flat-file format, such as the NCI Thesaurus.

An OBO file is a header followed by stanzas; each ``[Term]`` stanza holds
``tag: value`` lines. The tags read here::

    id: NCIT:C4017
    name: Breast Ductal Carcinoma
    synonym: "Infiltrating duct carcinoma, NOS" EXACT []
    is_a: NCIT:C5214 ! Breast Adenocarcinoma
    xref: UMLS:C1134719
    is_obsolete: true

Synonym scopes are EXACT, RELATED, BROAD or NARROW; ``is_a`` forms a DAG (a
term may have several parents). Trailing ``! comments`` and ``{qualifiers}``
are dropped. ``[Typedef]`` and other stanzas are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kinpath.common import InputError

_SYNONYM = re.compile(r'^"((?:[^"\\]|\\.)*)"\s+(EXACT|RELATED|BROAD|NARROW)\b')


@dataclass(frozen=True)
class OboTerm:
    """One ``[Term]`` stanza."""

    id: str
    name: str
    synonyms: tuple[tuple[str, str], ...]  # (text, scope)
    parents: tuple[str, ...]
    xrefs: tuple[str, ...]
    obsolete: bool = False


def _strip_comment(value: str) -> str:
    value = value.split(" ! ", 1)[0]
    return re.sub(r"\s*\{[^}]*\}\s*$", "", value).strip()


def read_obo(path: Path, include_obsolete: bool = False) -> Iterator[OboTerm]:
    """Yield the terms of an OBO file in file order.

    A tag line without ``:`` or a synonym without a quoted text is an
    :class:`~kinpath.common.InputError` naming the file and line.
    """
    stanza: str | None = None
    tags: dict[str, list[str]] = {}
    synonyms: list[tuple[str, str]] = []
    start = 0

    def flush() -> OboTerm | None:
        if stanza != "Term" or not tags:
            return None
        if "id" not in tags:
            raise InputError("[Term] stanza without an id", path=path, line=start)
        term = OboTerm(
            id=tags["id"][0],
            name=tags.get("name", [""])[0],
            synonyms=tuple(synonyms),
            parents=tuple(tags.get("is_a", [])),
            xrefs=tuple(tags.get("xref", [])),
            obsolete=tags.get("is_obsolete", ["false"])[0] == "true",
        )
        return None if term.obsolete and not include_obsolete else term

    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("!"):
                continue
            if line.startswith("[") and line.endswith("]"):
                term = flush()
                if term:
                    yield term
                stanza, tags, synonyms, start = line[1:-1], {}, [], lineno
                continue
            if stanza is None:
                continue  # header
            if ":" not in line:
                raise InputError("expected 'tag: value'", path=path, line=lineno)
            tag, value = (x.strip() for x in line.split(":", 1))
            if tag == "synonym":
                m = _SYNONYM.match(value)
                if not m:
                    raise InputError(
                        "synonym without a quoted text and scope", path=path, line=lineno
                    )
                synonyms.append((m.group(1).replace('\\"', '"'), m.group(2)))
            else:
                tags.setdefault(tag, []).append(_strip_comment(value))
    term = flush()
    if term:
        yield term
