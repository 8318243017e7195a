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

import json
import logging
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from spacy.language import Language

from kinpath.kg.graph import KnowledgeGraph
from kinpath.kg.link import PhraseIndex
from kinpath.kg.normalize import PHRASE_JOINER, normalized

log = logging.getLogger(__name__)

Sentence = list[str]


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

    def sentences(self, text: str) -> list[Sentence]:
        """One report's sentences, each a list of tokens (empty sentences dropped)."""
        return next(iter(self.pipe([text])))

    def tokens(self, text: str) -> list[str]:
        """One report as a flat token list (what the CNN reads)."""
        return [t for s in self.sentences(text) for t in s]

    def pipe(self, texts: Iterable[str], batch_size: int = 64) -> Iterator[list[Sentence]]:
        """Tokenize many reports, yielding each report's sentences in order."""
        for sents, _ in self.pipe_spans(texts, batch_size):
            yield sents

    def pipe_spans(
        self, texts: Iterable[str], batch_size: int = 64
    ) -> Iterator[tuple[list[Sentence], list[tuple[int, int]]]]:
        """As :meth:`pipe`, with each token's character span ``(start, end)`` in the report,
        in the order of the flattened tokens: a merged phrase spans its words, a word that an
        abbreviation's long form put in place spans the abbreviation. Evidence for a code is
        a run of tokens; these turn it into offsets into the text that was read."""
        limit = self.config.max_chars
        for doc in self._nlp.pipe((t[:limit] for t in texts), batch_size=batch_size):
            yield self._doc_sentences(doc)

    def _doc_sentences(self, doc: object) -> tuple[list[Sentence], list[tuple[int, int]]]:
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
                where.extend([(tok.idx, tok.idx + len(tok.text))] * len(new))
            merged = self._index.merge(words)
            where = _joined_spans(words, merged, where, PHRASE_JOINER)
            words = merged
            if self.collocations is not None:
                merged = list(self.collocations[words])  # type: ignore[index]
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
