"""The report tokenizer: text → sentences of normalized tokens with phrases merged.

One tokenizer serves the embeddings, the CNN and the batch jobs, so it is saved
beside the vectors and loaded from there. Steps:

1. scispacy's rule tokenizer on a blank English pipeline (biomedical token rules:
   ``C50.9``, ``8500/3`` and ``2.5cm`` split sensibly) and spaCy's rule-based
   sentencizer;
2. optionally, scispacy's abbreviation detector: a short form defined in the
   report (``invasive ductal carcinoma (IDC)``) is replaced by its long form
   wherever it occurs in that report, so that ``IDC`` and the term meet;
3. :func:`kinpath.kg.normalize.normalize_token` on every token (case, Unicode,
   placeholders for numbers and dates), the same normalization as the graph;
4. knowledge-graph phrases merged (:class:`kinpath.kg.link.PhraseIndex`), then
   frequent collocations found by gensim ``Phrases`` when one was fitted.

A saved tokenizer is a folder: ``tokenizer.json`` (settings), ``phrases.txt``
(the KG phrases, one a line, words separated by spaces) and, if fitted,
``collocations.pkl`` (gensim ``FrozenPhrases``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from spacy.language import Language

from kinpath.kg.graph import KnowledgeGraph
from kinpath.kg.link import PhraseIndex
from kinpath.kg.normalize import PHRASE_JOINER, normalized

log = logging.getLogger(__name__)

Sentence = list[str]

# Tokenizing is most of the time it takes to read a report table (about 70 s for the 5,810
# TCGA reports on 2 cores), and one `kinpath run` reads the same tables for every fit. With
# ``remember=True`` a report's tokens are kept, in this process's memory only (never on
# disk: they are the report's text), under the tokenizer's fingerprint and the text's hash,
# the oldest dropped past MEMO_TOKENS tokens in all.
MEMO_TOKENS = 16_000_000
_memo: OrderedDict[tuple[str, bytes], tuple[tuple[str, ...], ...]] = OrderedDict()
_memo_tokens = 0


@dataclass(frozen=True)
class TokenizerConfig:
    expand_abbreviations: bool = True
    max_phrase_words: int = 6
    # spaCy's own limit is 1 M characters; a longer report is cut and the cut logged by id
    max_chars: int = 500_000


class ReportTokenizer:
    """Tokenize reports into sentences of normalized tokens."""

    def __init__(
        self,
        phrases: Iterable[tuple[str, ...]] = (),
        config: TokenizerConfig | None = None,
        collocations: object | None = None,
    ):
        self.config = config or TokenizerConfig()
        self.phrases = sorted({tuple(p) for p in phrases})
        self._index = PhraseIndex(self.phrases, self.config.max_phrase_words)
        self.collocations = collocations
        self._nlp = _pipeline(self.config.expand_abbreviations)
        self.fingerprint = _fingerprint(self.config, self.phrases, collocations)

    def sentences(self, text: str) -> list[Sentence]:
        """One report's sentences, each a list of tokens (empty sentences dropped)."""
        return next(iter(self.pipe([text])))

    def tokens(self, text: str) -> list[str]:
        """One report as a flat token list (what the CNN reads)."""
        return [t for s in self.sentences(text) for t in s]

    def pipe(
        self, texts: Iterable[str], batch_size: int = 64, remember: bool = False
    ) -> Iterator[list[Sentence]]:
        """Tokenize many reports, yielding each report's sentences in order. ``remember``:
        take a report this process tokenized before with the same tokenizer from memory, and
        keep the ones it tokenizes now (see :data:`MEMO_TOKENS`)."""
        fingerprint = self.fingerprint
        if not remember or fingerprint is None:
            for doc in self._docs(texts, batch_size):
                yield self._doc_sentences(doc, with_spans=False)[0]
            return
        chunk: list[str] = []
        for text in texts:
            chunk.append(text)
            if len(chunk) == 16 * batch_size:
                yield from self._remembered(fingerprint, chunk, batch_size)
                chunk = []
        yield from self._remembered(fingerprint, chunk, batch_size)

    def _remembered(
        self, fingerprint: str, texts: list[str], batch_size: int
    ) -> Iterator[list[Sentence]]:
        keys = [(fingerprint, hashlib.sha256(t.encode()).digest()) for t in texts]
        got = {k: _memo[k] for k in keys if k in _memo}
        todo: dict[tuple[str, bytes], int] = {}  # each text not in memory, once
        for i, k in enumerate(keys):
            if k not in got:
                todo.setdefault(k, i)
        parsed = self._docs((texts[i] for i in todo.values()), batch_size)
        for k, doc in zip(todo, parsed, strict=True):
            got[k] = _remember(k, self._doc_sentences(doc, with_spans=False)[0])
        for k in keys:
            yield [list(s) for s in got[k]]

    def pipe_spans(
        self, texts: Iterable[str], batch_size: int = 64
    ) -> Iterator[tuple[list[Sentence], list[tuple[int, int]]]]:
        """As :meth:`pipe`, with each token's character span ``(start, end)`` in the report,
        in the order of the flattened tokens: a merged phrase spans its words, a word that an
        abbreviation's long form put in place spans the abbreviation. Evidence for a code is
        a run of tokens; these turn it into offsets into the text that was read."""
        for doc in self._docs(texts, batch_size):
            yield self._doc_sentences(doc)

    def _docs(self, texts: Iterable[str], batch_size: int) -> Iterator[object]:
        limit = self.config.max_chars
        return self._nlp.pipe((t[:limit] for t in texts), batch_size=batch_size)

    def _doc_sentences(
        self, doc: object, with_spans: bool = True
    ) -> tuple[list[Sentence], list[tuple[int, int]]]:
        """A parsed report's sentences and, ``with_spans``, each token's character span."""
        expand: dict[int, list[str]] = {}
        if self.config.expand_abbreviations:
            for abrv in doc._.abbreviations:  # type: ignore[attr-defined]
                long = abrv._.long_form
                # where the short form is defined, "(IDC)" right after its long
                # form, it is dropped; elsewhere it becomes the long form
                defining = 0 <= abrv.start - long.end <= 1
                long_words = [] if defining else [w for t in long for w in normalized(t.text)]
                for i in range(abrv.start, abrv.end):
                    expand[i] = long_words if i == abrv.start else []
        out: list[Sentence] = []
        spans: list[tuple[int, int]] = []
        for sent in doc.sents:  # type: ignore[attr-defined]
            words: list[str] = []
            where: list[tuple[int, int]] = []
            for tok in sent:
                new = expand[tok.i] if tok.i in expand else normalized(tok.text)
                words.extend(new)
                if with_spans:
                    where.extend([(tok.idx, tok.idx + len(tok.text))] * len(new))
            merged = self._index.merge(words)
            if with_spans:
                where = _joined_spans(words, merged, where, PHRASE_JOINER)
            words = merged
            if self.collocations is not None:
                merged = list(self.collocations[words])  # type: ignore[index]
                if with_spans:
                    joiner = getattr(self.collocations, "delimiter", PHRASE_JOINER)
                    where = _joined_spans(words, merged, where, joiner)
                words = merged
            if words:
                out.append(words)
                spans.extend(where)
        return out, spans

    def with_collocations(self, collocations: object) -> ReportTokenizer:
        return ReportTokenizer(self.phrases, self.config, collocations)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tokenizer.json").write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        (folder / "phrases.txt").write_text("".join(" ".join(p) + "\n" for p in self.phrases))
        if self.collocations is not None:
            self.collocations.save(str(folder / "collocations.pkl"))  # type: ignore[attr-defined]

    @classmethod
    def load(cls, folder: Path) -> ReportTokenizer:
        config = TokenizerConfig(**json.loads((folder / "tokenizer.json").read_text()))
        phrases = [tuple(ln.split()) for ln in (folder / "phrases.txt").read_text().splitlines()]
        col = folder / "collocations.pkl"
        collocations = None
        if col.exists():  # gensim is needed only where collocations were fitted
            from gensim.models.phrases import FrozenPhrases

            collocations = FrozenPhrases.load(str(col))
        return cls(phrases, config, collocations)

    @classmethod
    def from_graph(
        cls, graph: KnowledgeGraph, config: TokenizerConfig | None = None
    ) -> ReportTokenizer:
        """A tokenizer that merges the graph's multi-word terms."""
        keys = graph.atoms["key"].drop_duplicates()
        return cls((tuple(k.split(PHRASE_JOINER)) for k in keys if PHRASE_JOINER in k), config)


def _fingerprint(
    config: TokenizerConfig, phrases: list[tuple[str, ...]], collocations: object | None
) -> str | None:
    """What decides a tokenizer's output, hashed: its settings, phrases and collocations
    (None for collocations of another kind than gensim's, which are not remembered)."""
    h = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode())
    h.update("\n".join(" ".join(p) for p in phrases).encode())
    if collocations is not None:
        grams = getattr(collocations, "phrasegrams", None)
        if not isinstance(grams, dict):
            return None
        h.update(repr((getattr(collocations, "delimiter", None), sorted(grams.items()))).encode())
    return h.hexdigest()


def _remember(key: tuple[str, bytes], sents: list[Sentence]) -> tuple[tuple[str, ...], ...]:
    """Keep one report's sentences (their words interned: a vocabulary's worth of strings
    however many reports) and drop the oldest past :data:`MEMO_TOKENS`."""
    global _memo_tokens
    kept = tuple(tuple(sys.intern(w) for w in s) for s in sents)
    _memo[key] = kept
    _memo_tokens += sum(map(len, kept))
    while _memo_tokens > MEMO_TOKENS and _memo:
        _memo_tokens -= sum(map(len, _memo.popitem(last=False)[1]))
    return kept


def forget_tokens() -> None:
    """Drop every remembered report's tokens."""
    global _memo_tokens
    _memo.clear()
    _memo_tokens = 0


def _joined_spans(
    words: list[str], merged: list[str], spans: list[tuple[int, int]], joiner: str
) -> list[tuple[int, int]]:
    """The spans of ``merged``, where each token is one of ``words`` or several consecutive
    ones joined by ``joiner``: each covers the words it was made of."""
    out: list[tuple[int, int]] = []
    i = 0
    for m in merged:
        j = i + 1
        while j < min(len(words), i + 16) and m != joiner.join(words[i:j]):
            j += 1
        if m != joiner.join(words[i:j]):  # cannot happen for a join; keep one word a token
            j = i + 1
        out.append((spans[i][0], spans[j - 1][1]))
        i = j
    return out


def _pipeline(abbreviations: bool) -> Language:
    import spacy
    from scispacy.custom_tokenizer import combined_rule_tokenizer

    # scispacy's abbreviation detector runs a matcher that is empty between documents by
    # design, and spaCy warns about it (W036) once per place; importing spaCy installs that
    # "once" filter ahead of any the user set, so it is silenced here, after the import
    warnings.filterwarnings("ignore", message=r".*\[W036\]")

    nlp = spacy.blank("en")
    nlp.tokenizer = combined_rule_tokenizer(nlp)
    nlp.add_pipe("sentencizer")
    if abbreviations:
        from scispacy.abbreviation import AbbreviationDetector  # noqa: F401 (registers the pipe)

        nlp.add_pipe("abbreviation_detector")
    nlp.max_length = 2_000_000
    return nlp
