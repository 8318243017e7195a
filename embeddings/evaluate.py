"""How good are the vectors, and what did the knowledge graph change?

* **Held-out KG neighbour recall@k**: for each held-out pair (a, b), is b among
  a's k nearest neighbours (cosine), and a among b's? The pairs were withheld
  from the trainer, so this measures what the infusion generalizes.
* **UMNSRS** similarity and relatedness (Pakhomov et al.): Spearman correlation
  between cosine similarity and the mean human rating, over the pairs whose two
  terms have vectors; coverage is reported beside it, since the sets are mostly
  diseases and drugs and a pathology corpus covers few of them. Files are CSV
  with columns ``Mean, Stdev, Term1, Term2, CUI1, CUI2``.
* **Nearest-neighbour tables** for a few clinical terms, and a **PNG plot**
  (PCA, one panel per set of vectors) of site and histology terms before and
  after infusion.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from gensim.models import KeyedVectors
from scipy.stats import spearmanr

from kinpath.common import InputError
from kinpath.embeddings.store import load_embeddings
from kinpath.kg.graph import load_graph
from kinpath.kg.link import link_vocabulary
from kinpath.kg.normalize import term_key

CLINICAL_TERMS = (
    "carcinoma",
    "adenocarcinoma",
    "squamous_cell_carcinoma",
    "lung",
    "breast",
    "kidney",
    "lymph_node",
    "thyroid",
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Similarity:
    spearman: float
    covered: int
    total: int

    @property
    def coverage(self) -> float:
        return self.covered / self.total if self.total else 0.0


def heldout_recall(vectors: KeyedVectors, heldout: pd.DataFrame, k: int = 10) -> tuple[float, int]:
    """Recall@k of held-out pairs (both directions), and how many pairs had vectors."""
    hits = tried = 0
    pairs = [
        (a, b)
        for a, b in zip(heldout["a"], heldout["b"], strict=True)
        if a in vectors and b in vectors
    ]
    for a, b in pairs:
        for x, y in ((a, b), (b, a)):
            tried += 1
            hits += y in {w for w, _ in vectors.most_similar(x, topn=k)}
    return (hits / tried if tried else 0.0), len(pairs)


def umnsrs(vectors: KeyedVectors, path: Path) -> Similarity:
    """Spearman of cosine vs human ratings on the covered pairs of one UMNSRS file."""
    try:
        df = pd.read_csv(path)
        terms1, terms2, mean = df["Term1"], df["Term2"], df["Mean"]
    except (KeyError, pd.errors.ParserError) as e:
        raise InputError(f"expected UMNSRS columns Mean, Term1, Term2 ({e})", path=path) from None
    sims, gold = [], []
    for t1, t2, m in zip(terms1, terms2, mean, strict=True):
        a, b = term_key(str(t1)), term_key(str(t2))
        if a in vectors and b in vectors:
            sims.append(float(vectors.similarity(a, b)))
            gold.append(float(m))
    rho = float(spearmanr(sims, gold).statistic) if len(sims) > 2 else float("nan")
    return Similarity(rho, len(sims), len(df))


def neighbour_table(
    sets: Mapping[str, KeyedVectors], terms: Sequence[str] = CLINICAL_TERMS, k: int = 5
) -> str:
    """A Markdown table: each term's k nearest neighbours under each set of vectors."""
    names = list(sets)
    lines = ["| term | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for t in terms:
        cells = []
        for n in names:
            kv = sets[n]
            cells.append(", ".join(w for w, _ in kv.most_similar(t, topn=k)) if t in kv else "—")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_neighbourhoods(
    sets: Mapping[str, KeyedVectors],
    groups: Mapping[str, Sequence[str]],
    path: Path,
    label: int = 12,
) -> Path:
    """PCA of each group's words, one panel per set of vectors, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    fig, axes = plt.subplots(1, len(sets), figsize=(6.5 * len(sets), 6), squeeze=False)
    for ax, (name, kv) in zip(axes[0], sets.items(), strict=True):
        every = [w for g in groups.values() for w in g if w in kv]
        if len(every) < 3:
            continue
        pca = PCA(n_components=2, random_state=0).fit(np.stack([kv[w] for w in every]))
        colours = ("tab:blue", "tab:red", "tab:green")
        for (group, words), colour in zip(groups.items(), colours, strict=False):
            ws = [w for w in words if w in kv]
            if not ws:
                continue
            xy = pca.transform(np.stack([kv[w] for w in ws]))
            ax.scatter(xy[:, 0], xy[:, 1], s=14, c=colour, alpha=0.7, label=f"{group} ({len(ws)})")
            for (x, y), w in list(zip(xy, ws, strict=True))[:label]:
                ax.annotate(w.replace("_", " "), (x, y), fontsize=7, alpha=0.8)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc="best", fontsize=8)
    fig.suptitle("Site and histology terms (PCA of word vectors)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


SITE_TYPE = "Body Part, Organ, or Organ Component"
HISTOLOGY_TYPE = "Neoplastic Process"


def evaluation(
    vectors: list[Path],
    graph: Path | None = None,
    umnsrs_dir: Path | None = None,
    out: Path | None = None,
    k: int = 10,
) -> list[dict[str, object]]:
    """Score embeddings folders side by side, one row per method: held-out KG recall@k and,
    with ``umnsrs_dir``, UMNSRS; with ``out``, also ``evaluation.json``, ``neighbours.md``
    and (with ``graph``) ``neighbourhoods.png`` there. The held-out pairs of the first folder
    are used for all, so the figures compare."""
    folders = [load_embeddings(v) for v in vectors]
    heldout = folders[0].pairs(held_out=True)
    sets: dict[str, KeyedVectors] = {}
    for f in folders:  # label by method; the folder's name tells two of one method apart
        name = f.manifest["method"]
        sets[f"{name} ({f.path.name})" if name in sets else name] = f.vectors
    rows = []
    for name, kv in sets.items():
        recall, n = heldout_recall(kv, heldout, k)
        row: dict[str, object] = {
            "method": name,
            f"heldout_recall@{k}": round(recall, 4),
            "heldout_pairs": n,
        }
        if umnsrs_dir is not None:
            for which in ("similarity", "relatedness"):
                s = umnsrs(kv, umnsrs_dir / f"UMNSRS_{which}.csv")
                row[f"umnsrs_{which}_spearman"] = round(s.spearman, 4)
                row[f"umnsrs_{which}_coverage"] = f"{s.covered}/{s.total}"
        rows.append(row)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "evaluation.json").write_text(json.dumps(rows, indent=2) + "\n")
        (out / "neighbours.md").write_text(neighbour_table(sets))
        if graph is not None:
            groups = _site_histology_groups(folders[0].vectors, graph)
            plot_neighbourhoods(sets, groups, out / "neighbourhoods.png")
        log.info("evaluation written to %s", out)
    return rows


def _site_histology_groups(kv: KeyedVectors, graph: Path) -> dict[str, list[str]]:
    g = load_graph(graph)
    links = link_vocabulary({w: 1 for w in kv.index_to_key}, g).by_token()
    types = g.concepts["semantic_types"]
    groups: dict[str, list[str]] = {"site": [], "histology": []}
    for tok, cuis in links.items():
        ts = {t for c in cuis for t in str(types.get(c, "")).split("|")}
        if SITE_TYPE in ts:
            groups["site"].append(tok)
        elif HISTOLOGY_TYPE in ts:
            groups["histology"].append(tok)
    return groups
