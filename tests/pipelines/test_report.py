"""The results pages: one set of sections, rendered as Markdown and as valid HTML."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from kinpath.pipelines.report import autocoding_table, duration, render_html, render_markdown

VOID = {"meta", "img", "br", "hr", "link", "input"}


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.first: str | None = None
        self.errors: list[str] = []
        self.h2: list[str] = []
        self._in_h2 = False

    def handle_decl(self, decl: str) -> None:
        self.first = self.first or decl.lower()

    def handle_starttag(self, tag: str, attrs: list) -> None:  # type: ignore[type-arg]
        self.first = self.first or tag
        if tag not in VOID:
            self.stack.append(tag)
        self._in_h2 = tag == "h2"

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()
        self._in_h2 = False

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.h2.append(data)


def check_html(page: str) -> _Checker:
    c = _Checker()
    c.feed(page)
    c.close()
    return c


SECTIONS = [
    ("Test metrics <pooled>", [("table", "| task | a |\n|---|---|\n| site | 0.9 |\n"),
                              ("text", "micro & macro")]),
    ("Embeddings", [("list", "word2vec: 0.1\nkg-joint: 0.2")]),
    ("Batch", [("code", '{"records": 3}')]),
    ("Plots", [("image", "f1.png")]),
]  # fmt: skip


def test_html_is_valid_and_has_every_markdown_section() -> None:
    md = render_markdown("kinpath results", SECTIONS)
    page = render_html("kinpath results", SECTIONS)
    c = check_html(page)
    assert c.first == "doctype html" and not c.errors and not c.stack
    md_sections = re.findall(r"^## (.+)$", md, flags=re.M)
    assert c.h2 == md_sections == [s for s, _ in SECTIONS]
    assert "&lt;pooled&gt;" in page and "<table>" in page and "<img src='f1.png'" in page


def test_autocoding_table_puts_before_beside_after() -> None:
    m = {"test/site/coverage": 0.9, "test/site/covered_accuracy": 0.98,
         "test/before/site/coverage": 0.95, "test/before/site/covered_accuracy": 0.93,
         "test/contradictions": 0.0, "test/before/contradictions": 4.0}  # fmt: skip
    rows = autocoding_table(m, ["site", "histology"], ["test"]).splitlines()
    assert rows[2] == "| pooled | site | 0.950 | 0.930 | 0.900 | 0.980 | — | — |"
    assert "contradictions: before 4 report(s), after 0 report(s)" in rows[3]
    assert not any("histology" in r for r in rows)  # a task without metrics has no row


def test_autocoding_table_shows_no_accuracy_where_nothing_was_coded() -> None:
    m = {"test/grade/coverage": 0.0, "test/grade/covered_accuracy": 0.0, "test/grade/backoff": 0.0,
         "test/grade/backoff_accuracy": 0.0, "test/before/grade/coverage": 0.2,
         "test/before/grade/covered_accuracy": 0.95, "test/contradictions": 1.0}  # fmt: skip
    rows = autocoding_table(m, ["grade"], ["test"]).splitlines()
    assert rows[2] == "| pooled | grade | 0.200 | 0.950 | 0.000 | — | 0.000 | — |"
    header_cells = rows[0].count("|") - 1
    assert all(r.count("|") - 1 == header_cells for r in rows)  # the records row too


def test_stage_durations_round_to_whole_seconds_before_splitting_minutes() -> None:
    assert duration(4.66) == "4.7 s"
    assert duration(839.7) == "14 min 00 s"  # not "13 min 60 s"
    assert duration(9910.4) == "165 min 10 s"
