"""The knowledge graph: concepts, their terms and the relations between them.

A graph folder holds four files::

    manifest.json       what made it: sources and their checksums, filters, counts
    atoms.parquet       one row per source string: cui, sab, tty, code, string, key
    concepts.parquet    cui, name, semantic_types, sources, definition
    relations.parquet   head, rel, rela, tail, source (UMLS sense: rel is tail's
                        relation to head, so PAR means tail is head's parent)

``key`` is the normalized phrase token of a string (:func:`kinpath.kg.normalize.term_key`);
the *terms* of the graph are its distinct keys, each linked to one or more
concepts. Sources are UMLS ``META/`` folders (:mod:`kinpath.kg.umls`) and OBO ontologies
(:mod:`kinpath.kg.obo`); atoms and relations are written to parquet batch by batch, so a
full UMLS release builds in bounded memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kinpath.common import InputError
from kinpath.kg import obo, umls
from kinpath.kg.normalize import term_key

log = logging.getLogger(__name__)

ATOMS_SCHEMA = pa.schema(
    [(c, pa.string()) for c in ("cui", "sab", "tty", "code", "string", "key")]
    + [("rank", pa.int8())]
)
RELATIONS_SCHEMA = pa.schema([(c, pa.string()) for c in ("head", "rel", "rela", "tail", "source")])
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Concept:
    cui: str
    name: str
    semantic_types: tuple[str, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True)
class KnowledgeGraph:
    """A loaded graph folder. The frames are read-only by convention."""

    concepts: pd.DataFrame
    atoms: pd.DataFrame
    relations: pd.DataFrame
    manifest: dict

    def concept(self, cui: str) -> Concept:
        row = self.concepts.loc[cui]
        return Concept(
            cui=cui,
            name=row["name"],
            semantic_types=tuple(filter(None, row["semantic_types"].split("|"))),
            sources=tuple(filter(None, row["sources"].split("|"))),
        )

    def terms(self) -> dict[str, frozenset[str]]:
        """Normalized term key → the concepts it names."""
        grouped = self.atoms[self.atoms["key"] != ""].groupby("key")["cui"]
        return {k: frozenset(v) for k, v in grouped}

    @property
    def checksum(self) -> str:
        """A stable id of this graph's content, for the manifests of later stages."""
        return str(self.manifest["checksum"])


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def folder_sha256(folder: Path) -> str:
    """One checksum of a folder: each file's path inside it and its checksum, in path order.
    Two folders of the same files, wherever they lie, give the same."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(folder).as_posix()}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()


def _rank(ts: str, stt: str, ispref: str) -> int:
    """Lower is more preferred: the UMLS preferred atom is TS=P, STT=PF, ISPREF=Y."""
    return (ts != "P") * 4 + (stt != "PF") * 2 + (ispref != "Y")


def _umls_atoms(batch: umls.Batch) -> pa.Table:
    return pa.table(
        {
            "cui": batch["CUI"],
            "sab": batch["SAB"],
            "tty": batch["TTY"],
            "code": batch["CODE"],
            "string": batch["STR"],
            "key": [term_key(s) for s in batch["STR"]],
            "rank": pa.array(
                [_rank(*r) for r in zip(batch["TS"], batch["STT"], batch["ISPREF"], strict=True)],
                pa.int8(),
            ),
        },
        schema=ATOMS_SCHEMA,
    )


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build_graph` wrote and skipped."""

    out: Path
    counts: dict[str, int]
    skipped: dict[str, int]


def build_graph(
    out: Path,
    umls_dirs: Iterable[Path] = (),
    obo_files: Iterable[Path] = (),
    filters: umls.RrfFilters | None = None,
    on_error: umls.OnError = "raise",
    batch_size: int = 100_000,
) -> BuildResult:
    """Read the sources and write a graph folder at ``out``.

    Raises :class:`~kinpath.common.InputError` on the first malformed row unless
    ``on_error="skip"``, in which case skipped rows are counted per file; an
    MRCONSO that yields no row at all is an error either way, and an empty or
    missing MRREL or MRSTY is warned about. The graph is built in a temporary
    folder beside ``out`` and swapped in only when complete, so a failed build
    leaves an existing graph as it was.
    """
    filters = filters or umls.RrfFilters()
    umls_dirs, obo_files = [Path(p) for p in umls_dirs], [Path(p) for p in obo_files]
    if not umls_dirs and not obo_files:
        raise InputError("no sources: give a UMLS META/ folder or an OBO file")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        result = _build(work, umls_dirs, obo_files, filters, on_error, batch_size)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(work, out)
        shutil.rmtree(old)
    else:
        os.replace(work, out)
    log.info("graph written to %s: %s", out, result.counts)
    return BuildResult(out=out, counts=result.counts, skipped=result.skipped)


def _build(
    out: Path,
    umls_dirs: list[Path],
    obo_files: list[Path],
    filters: umls.RrfFilters,
    on_error: umls.OnError,
    batch_size: int,
) -> BuildResult:
    sources: list[dict] = []
    skipped: dict[str, int] = {}
    sty: dict[str, list[tuple[str, str]]] = {}
    defs: dict[str, str] = {}

    atoms_writer = pq.ParquetWriter(out / "atoms.parquet", ATOMS_SCHEMA)
    rel_writer = pq.ParquetWriter(out / "relations.parquet", RELATIONS_SCHEMA)
    # Relations wait until every source's atoms are written: only relations
    # between concepts the graph holds are kept.
    pending_rel: list[tuple[Path, int]] = []  # MRREL and the index of its source
    obo_rels: list[pa.Table] = []
    try:
        for meta in umls_dirs:
            conso = umls.RrfFile(umls.find_file(meta, "MRCONSO.RRF"), umls.MRCONSO_FIELDS, on_error)  # type: ignore[arg-type]
            kept = 0
            for batch in umls.read_mrconso(conso, filters, batch_size):
                atoms_writer.write_table(_umls_atoms(batch))
                kept += len(batch["CUI"])
            if conso.lines - len(conso.skipped) <= 0:
                raise InputError(f"no readable row ({len(conso.skipped)} skipped)", path=conso.path)
            if not kept:
                raise InputError(f"the filters keep none of its {conso.lines} rows "
                                 f"({asdict(filters)})", path=conso.path)  # fmt: skip
            files = [conso]
            if p := umls.find_file(meta, "MRSTY.RRF", required=False):
                f = umls.RrfFile(p, umls.MRSTY_FIELDS, on_error)
                for cui, types in umls.read_mrsty(f).items():
                    sty.setdefault(cui, []).extend(types)
                files.append(f)
                if not f.lines - len(f.skipped):
                    log.warning("%s has no rows: the graph's concepts get no semantic types", p)
            else:
                log.warning("%s: no MRSTY.RRF: the graph's concepts get no semantic types", meta)
            if p := umls.find_file(meta, "MRDEF.RRF", required=False):
                f = umls.RrfFile(p, umls.MRDEF_FIELDS, on_error)
                for cui, d in umls.read_mrdef(f, filters).items():
                    defs.setdefault(cui, d)
                files.append(f)
            if p := umls.find_file(meta, "MRREL.RRF", required=False):
                pending_rel.append((p, len(sources)))  # this source is appended next
            else:
                log.warning("%s: no MRREL.RRF: the graph has no relations from it", meta)
            for f in files:
                skipped[str(f.path)] = len(f.skipped)
            sources.append({
                "kind": "umls", "path": str(meta), "files": {f.path.name: f.sha256 for f in files},
                "counts": {"mrconso_rows": conso.lines, "strings_kept": kept,
                           "dropped_by_filters": conso.lines - kept - len(conso.skipped)},
            })  # fmt: skip
        for path in obo_files:
            atoms, rels = _obo_tables(path)
            atoms_writer.write_table(atoms)
            obo_rels.append(rels)
            sources.append({
                "kind": "obo", "path": str(path), "files": {path.name: file_sha256(path)},
                "counts": {"terms": len(pc.unique(atoms["cui"])), "strings": atoms.num_rows},
            })  # fmt: skip
        atoms_writer.close()

        known = pq.read_table(out / "atoms.parquet", columns=["cui"]).column("cui").unique()

        def write_known(t: pa.Table) -> None:
            mask = pc.and_(pc.is_in(t["head"], known), pc.is_in(t["tail"], known))
            rel_writer.write_table(t.filter(mask))

        for t in obo_rels:
            write_known(t)
        for p, src in pending_rel:
            rel = umls.RrfFile(p, umls.MRREL_FIELDS, on_error)
            for batch in umls.read_mrrel(rel, filters, batch_size):
                write_known(pa.table(
                    {"head": batch["CUI1"], "rel": batch["REL"], "rela": batch["RELA"],
                     "tail": batch["CUI2"], "source": batch["SAB"]},
                    schema=RELATIONS_SCHEMA,
                ))  # fmt: skip
            skipped[str(p)] = len(rel.skipped)
            sources[src]["files"][p.name] = rel.sha256
            if not rel.lines - len(rel.skipped):
                log.warning("%s has no rows: the graph has no relations from it", p)
    finally:
        atoms_writer.close()
        rel_writer.close()

    atoms = pq.read_table(out / "atoms.parquet", columns=["cui", "sab", "string", "rank"])
    concepts = _concepts(atoms, sty, defs)
    del atoms
    pq.write_table(concepts, out / "concepts.parquet")
    counts = {
        "strings": pq.read_metadata(out / "atoms.parquet").num_rows,
        "concepts": concepts.num_rows,
        "terms": len(pc.unique(pq.read_table(out / "atoms.parquet", columns=["key"])["key"])),
        "relations": pq.read_metadata(out / "relations.parquet").num_rows,
        "skipped_rows": sum(skipped.values()),
    }
    manifest = {
        "kind": "kinpath.graph",
        "format": 1,
        "sources": sources,
        "filters": asdict(filters),
        "on_error": on_error,
        "counts": counts,
        "skipped_rows_by_file": skipped,
    }
    manifest["checksum"] = _manifest_checksum(manifest)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return BuildResult(out=out, counts=counts, skipped=skipped)


def _manifest_checksum(manifest: dict) -> str:
    """Checksum of what determines the content: sources, filters and counts (not the date)."""
    body = json.dumps(
        {
            "sources": [s["files"] for s in manifest["sources"]],
            "on_error": manifest["on_error"],
            "filters": manifest["filters"],
            "counts": manifest["counts"],
        },
        sort_keys=True,
    )
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _obo_tables(path: Path) -> tuple[pa.Table, pa.Table]:
    """An OBO file as atoms (name rank 0, synonyms 1) and is_a relations.

    A UMLS xref becomes a relation ``(term, SY, xref, CUI)`` so that a graph built
    from UMLS and an OBO ontology together is connected through shared concepts.
    """
    atoms: dict[str, list] = {c: [] for c in ATOMS_SCHEMA.names}
    rels: dict[str, list] = {c: [] for c in RELATIONS_SCHEMA.names}
    source = path.stem.upper()

    def atom(term_id: str, tty: str, text: str, rank: int) -> None:
        for c, v in zip(ATOMS_SCHEMA.names, (term_id, source, tty, term_id, text, term_key(text), rank), strict=True):  # fmt: skip
            atoms[c].append(v)

    def rel(head: str, r: str, rela: str, tail: str) -> None:
        for c, v in zip(RELATIONS_SCHEMA.names, (head, r, rela, tail, source), strict=True):
            rels[c].append(v)

    for term in obo.read_obo(path):
        atom(term.id, "PT", term.name, 0)
        for text, scope in term.synonyms:
            atom(
                term.id, "SY" if scope == "EXACT" else scope[:2], text, 1 if scope == "EXACT" else 2
            )
        for parent in term.parents:
            rel(term.id, "PAR", "inverse_isa", parent)
        for x in term.xrefs:
            if x.startswith("UMLS:"):
                rel(term.id, "SY", "xref", x.split(":", 1)[1])
    return pa.table(atoms, schema=ATOMS_SCHEMA), pa.table(rels, schema=RELATIONS_SCHEMA)


def _concepts(
    atoms: pa.Table, sty: dict[str, list[tuple[str, str]]], defs: dict[str, str]
) -> pa.Table:
    """One row per concept: its most preferred string as name, its sources and types.

    Arrow-native (sort, then the first row of each run of equal CUIs), so that a
    large release does not turn into Python objects.
    """
    t = atoms.sort_by([("cui", "ascending"), ("rank", "ascending")])
    cui = t["cui"].combine_chunks()
    n = len(cui)
    first = pa.concat_arrays([
        pa.array([True]), pc.not_equal(cui.slice(1), cui.slice(0, n - 1)),
    ]) if n else pa.array([], pa.bool_())  # fmt: skip
    best = t.filter(first)
    src = t.group_by("cui").aggregate([("sab", "distinct")]).sort_by("cui")
    cuis = best["cui"].to_pylist()
    return pa.table(
        {
            "cui": best["cui"],
            "name": best["string"],
            "semantic_types": ["|".join(sorted({s for _, s in sty.get(c, [])})) for c in cuis],
            "sources": ["|".join(sorted(v)) for v in src["sab_distinct"].to_pylist()],
            "definition": [defs.get(c, "") for c in cuis],
        }
    )


def load_graph(path: Path) -> KnowledgeGraph:
    """Read a graph folder written by :func:`build_graph`."""
    path = Path(path)
    mf = path / MANIFEST
    if not mf.exists():
        raise InputError(
            "not a graph folder (no manifest.json); build one with `kinpath kg build`", path=path
        )
    manifest = json.loads(mf.read_text())
    concepts = pd.read_parquet(path / "concepts.parquet").set_index("cui", drop=False)
    return KnowledgeGraph(
        concepts=concepts,
        atoms=pd.read_parquet(path / "atoms.parquet"),
        relations=pd.read_parquet(path / "relations.parquet"),
        manifest=manifest,
    )
