"""Term normalization shared by the knowledge graph and the report tokenizer.

A knowledge-graph string ("Squamous cell carcinoma, NOS") and a report token
("Squamous") must normalize the same way, or the terms never meet the words.
Both go through :func:`normalize_token`:

* Unicode NFKC (full-width letters, ligatures, non-breaking spaces fold to plain
  forms) and case folding;
* dates become ``<date>`` and numbers (``2.5``, ``3/4``, ``12%``, ``15``)
  ``<num>``; single digits stay (``grade 2``, ``stage 3``: they carry the grade
  a registrar codes), and so do ICD-O-3 morphology codes (``8500/3``) and
  topography codes (``c50.9``), which a registrar reads as words;
* what is left splits into runs of letters and digits: punctuation and hyphens
  separate words (``non-small`` is ``non``, ``small``).

A multi-word term is one *phrase token*, its words joined by ``_``
(``squamous_cell_carcinoma``), so that it can stand in a report's token stream
and in a word-vector vocabulary.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

PHRASE_JOINER = "_"
NUM = "<num>"
DATE = "<date>"

_DATE = re.compile(r"^(\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{4})$")
_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d+)*|\.\d+)(%|/\d+)?$")
_MORPHOLOGY = re.compile(r"^\d{4}/[0-39]$")
_TOPOGRAPHY = re.compile(r"^c\d{2}(\.\d)?$")
_WORD = re.compile(r"[^\W_]+")
# Qualifiers that ICD-O appends to a term but a report never writes.
_TRAILING_QUALIFIERS = frozenset({"nos"})


def normalize_token(token: str) -> list[str]:
    """Normalize one surface token into zero or more words.

    >>> normalize_token("Non-Small")
    ['non', 'small']
    >>> normalize_token("8500/3"), normalize_token("12/03/2014"), normalize_token("2.5")
    (['8500/3'], ['<date>'], ['<num>'])
    """
    return list(normalized(token))


@lru_cache(maxsize=1 << 18)
def normalized(token: str) -> tuple[str, ...]:
    """:func:`normalize_token` as a tuple, cached: a report's tokens repeat across reports
    (the tokenizer calls this once per token, and it was a fifth of the tokenizer's time)."""
    t = unicodedata.normalize("NFKC", token).casefold().strip()
    if not t:
        return ()
    if _MORPHOLOGY.match(t) or _TOPOGRAPHY.match(t):
        return (t,)
    if len(t) == 1 and t.isdigit():
        return (t,)
    if _DATE.match(t):
        return (DATE,)
    if _NUMBER.match(t):
        return (NUM,)
    return tuple(_WORD.findall(t))


def words(text: str) -> list[str]:
    """Split free text on white space and normalize each piece."""
    out: list[str] = []
    for piece in text.split():
        out.extend(normalize_token(piece))
    return out


def term_words(term: str) -> tuple[str, ...]:
    """The words of a knowledge-graph term, without trailing ICD-O qualifiers.

    >>> term_words("Squamous cell carcinoma, NOS")
    ('squamous', 'cell', 'carcinoma')
    """
    ws = words(term.replace(",", " "))
    while len(ws) > 1 and ws[-1] in _TRAILING_QUALIFIERS:
        ws.pop()
    return tuple(ws)


def phrase_token(ws: Iterable[str]) -> str:
    """Join words into one phrase token: ``('squamous', 'cell')`` → ``squamous_cell``."""
    return PHRASE_JOINER.join(ws)


def term_key(term: str) -> str:
    """The vocabulary key of a term: its normalized words as one phrase token."""
    return phrase_token(term_words(term))
