"""The tokenized training corpus: reports → one sentence a line on disk.

Reports are read in chunks (:func:`kinpath.kg.reports.read_reports`), tokenized
(:class:`~kinpath.embeddings.tokenize.ReportTokenizer`) and written as
``sentences.txt``, tokens separated by spaces, the format gensim's
``LineSentence`` streams. The corpus is therefore never held in memory, and
every trainer reads the very same token stream. Optionally gensim ``Phrases``
is fitted on the written corpus and the file rewritten with the frequent
collocations joined (``lymph_node``); the fitted model joins the tokenizer.

The file is derived from report text: it stays in the run folder and is never
logged or uploaded; manifests carry only its checksum and counts.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from kinpath.embeddings.tokenize import ReportTokenizer
from kinpath.kg.reports import Tables, read_reports

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorpusSlice:
    """Sentences between two byte offsets of a corpus file; iterable many times."""

    path: Path
    start: int
    end: int
    sentences: int
    words: int

    def __iter__(self) -> Iterator[list[str]]:
        with open(self.path, "rb") as f:
            f.seek(self.start)
            pos = self.start
            for line in f:
                if pos >= self.end:
                    break
                pos += len(line)
                yield line.decode("utf-8").split()


@dataclass(frozen=True)
class Corpus:
    path: Path
    reports: int
    sentences: int
    tokens: int
    checksum: str

    def __iter__(self) -> Iterator[list[str]]:
        yield from CorpusSlice(self.path, 0, self.path.stat().st_size, self.sentences, self.tokens)

    def vocabulary(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for s in self:
            counts.update(s)
        return counts

    def slices(self, n: int) -> list[CorpusSlice]:
        """Cut the corpus into ``n`` slices of about equal word counts."""
        target = max(1, -(-self.tokens // max(1, n)))
        out: list[CorpusSlice] = []
        start = pos = 0
        sents = words = 0
        with open(self.path, "rb") as f:
            for line in f:
                pos += len(line)
                sents += 1
                words += line.count(b" ") + 1
                if words >= target:
                    out.append(CorpusSlice(self.path, start, pos, sents, words))
                    start, sents, words = pos, 0, 0
        if sents:
            out.append(CorpusSlice(self.path, start, pos, sents, words))
        return out


def build_corpus(
    reports: Tables,
    tokenizer: ReportTokenizer,
    out: Path,
    text_col: str = "text",
    id_col: str = "report_id",
    where: Mapping[str, str] | None = None,
    collocations: bool = False,
    collocation_min_count: int = 5,
    collocation_threshold: float = 10.0,
) -> tuple[Corpus, ReportTokenizer]:
    """Tokenize a report table into ``out/sentences.txt``.

    Returns the corpus and the tokenizer to save with the vectors (the given one,
    or it plus the fitted collocations).
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / "sentences.txt"
    tmp = path.with_suffix(".tmp")
    n_reports = 0
    with open(tmp, "w", encoding="utf-8") as f:
        bar = tqdm(desc="tokenizing reports", unit=" reports", disable=None)
        for chunk in read_reports(reports, id_col=id_col, text_col=text_col, where=where):
            for sents in tokenizer.pipe(chunk[text_col]):
                f.writelines(" ".join(s) + "\n" for s in sents)
            n_reports += len(chunk)
            bar.update(len(chunk))
        bar.close()
    if collocations:
        from gensim.models.phrases import ENGLISH_CONNECTOR_WORDS, Phrases

        raw = _stats(tmp, n_reports)
        phrases = Phrases(
            raw,
            min_count=collocation_min_count,
            threshold=collocation_threshold,
            connector_words=ENGLISH_CONNECTOR_WORDS,
        ).freeze()
        tokenizer = tokenizer.with_collocations(phrases)
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(" ".join(phrases[s]) + "\n" for s in raw)
        tmp.unlink()
    else:
        os.replace(tmp, path)
    corpus = _stats(path, n_reports)
    log.info(
        "corpus: %d reports, %d sentences, %d tokens",
        corpus.reports,
        corpus.sentences,
        corpus.tokens,
    )
    return corpus, tokenizer


def _stats(path: Path, reports: int) -> Corpus:
    h = hashlib.sha256()
    sentences = tokens = 0
    with open(path, "rb") as f:
        for line in f:
            h.update(line)
            sentences += 1
            tokens += line.count(b" ") + 1
    return Corpus(path, reports, sentences, tokens, h.hexdigest())


def open_corpus(path: Path) -> Corpus:
    """A corpus file written before (e.g. by :func:`build_corpus`), with its counts."""
    return _stats(path, reports=0)
