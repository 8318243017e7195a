"""How good is the evidence? Plausibility and faithfulness on the TCGA test splits (issue 22, §1).

* **Plausibility**: the share of emitted site / subsite / histology codes whose top span
  overlaps a graph term (name or synonym, normalized as the tokenizer normalizes) of the
  code or of its parent: for a site, the site and its subsites (``C34`` is the union of
  ``C34.0``–``C34.9``); for a subsite, it and its site; for a histology, it (any behavior)
  and the NOS code it backs off to. Over every decoded code, and over the auto-coded ones.
* **Faithfulness**: mask the top span (its tokens become the unknown token) and score
  again: how much the emitted class's probability falls, against masking a random span of
  the same length elsewhere in the report (one draw per report, seeded). The share of
  reports where the evidence's fall is the larger, and the mean falls.

Two ways to find the spans are measured (``--methods``): ``windows``, what kinpath emits
(:meth:`kinpath.phenotyping.network.MTCNN.window_scores`: the exact split of a linear head's
logit over the windows its max-pools took), and ``ig``, integrated gradients of the
emitted class's logit along the word vectors from zero (``--ig-steps`` steps; per
token the vector times the mean gradient, summed per window of 3 to 5 tokens), the
attribution method captum would give, written out here so that no dependency comes in
for a measurement.

::

    python bench/evidence_quality.py --model models:/kinpath-tcga@champion --graph runs/tcga/nci \\
        --docs docs/results/evidence.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from kinpath.pipelines.environment import machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
SPLITS = ["tcga-reports", "tcga-ocr"]
GRAPH_TASKS = ["site", "subsite", "histology"]


def term_keys(graph: Path) -> dict[str, dict[str, set[str]]]:
    """Per task, per class code (as the data writes it): the normalized keys of its terms and
    of its concept's synonyms."""
    from kinpath.kg.graph import load_graph

    atoms = load_graph(graph).atoms
    by_cui: dict[str, set[str]] = defaultdict(set)
    for cui, key in zip(atoms["cui"], atoms["key"], strict=True):
        if key:
            by_cui[cui].add(str(key))
    out: dict[str, dict[str, set[str]]] = {t: defaultdict(set) for t in GRAPH_TASKS}
    icdo = atoms[atoms["sab"] == "ICDO3"]
    for code, cui in zip(icdo["code"], icdo["cui"], strict=True):
        code = str(code)
        keys = by_cui[cui]
        if len(code) == 3 and code.startswith("C"):
            out["site"][code] |= keys
        elif len(code) == 5 and code.startswith("C") and code[3] == ".":
            out["subsite"][code] |= keys
            out["site"][code[:3]] |= keys  # a site is the union of its subsites
        elif "/" in code and code[:4].isdigit():
            out["histology"][code[:4]] |= keys
    return out


def plausible_keys(task: str, code: str, keys: dict, backoff: dict) -> set[str]:
    own = set(keys[task].get(code, set()))
    if task == "subsite":
        own |= keys["site"].get(code[:3], set())
    if task == "histology" and code in backoff.get("histology", {}):
        own |= keys["histology"].get(backoff["histology"][code], set())
    return own


def occurrences(tokens: list[str], wanted: set[str], longest: int = 8) -> list[tuple[int, int]]:
    """Token ranges that hold one of ``wanted`` (graph keys: words joined as the graph joins
    them). Matched word by word, so a term inside a merged token (a phrase or collocation the
    tokenizer joined: ``ductal_carcinoma_grade``) counts where it lies."""
    from kinpath.kg.normalize import PHRASE_JOINER

    words: list[str] = []
    owner: list[int] = []
    for k, tok in enumerate(tokens):
        for w in tok.split(PHRASE_JOINER):
            words.append(w)
            owner.append(k)
    found = []
    for i in range(len(words)):
        for j in range(i + 1, min(len(words), i + longest) + 1):
            if PHRASE_JOINER.join(words[i:j]) in wanted:
                found.append((owner[i], owner[j - 1] + 1))
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model", required=True, help="models:/NAME@ALIAS, runs:/..., or a bundle folder"
    )
    ap.add_argument("--graph", type=Path, required=True)
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--docs", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+", default=["windows", "ig"])
    ap.add_argument("--ig-steps", type=int, default=16)
    ap.add_argument("--label", default=None, help="how the docs name the model")
    ap.add_argument("--splits", nargs="+", default=SPLITS, choices=SPLITS)
    args = ap.parse_args()
    if not SHARED.exists():
        sys.exit(f"needs the shared TCGA tables at {SHARED}")
    from kinpath.phenotyping.bundle import encode, load_bundle, score
    from kinpath.phenotyping.decode import decode

    if Path(args.model).is_dir():
        bundle, name = load_bundle(Path(args.model), precision="fp32"), str(args.model)
    else:
        from kinpath.pipelines.batch import load_model

        loaded = load_model(args.model, args.tracking_uri, "fp32")
        bundle, name = loaded.bundle, f"{args.model} (version {loaded.version})"
    name = args.label or name
    keys = term_keys(args.graph)
    rng = np.random.default_rng(args.seed)
    rows = []
    for split in args.splits:
        table = pd.read_csv(SHARED / split / "reports.csv", dtype=str, keep_default_na=False)
        table = table[table["split"] == "test"]
        texts = table["text"].tolist()
        enc = encode(bundle, texts)
        tokens = [[t for s in sents for t in s][: bundle.max_length]
                  for sents in bundle.tokenizer.pipe(texts)]  # fmt: skip
        base = score(bundle, enc.ids, evidence=True)
        assert base.evidence is not None
        d = decode(base.probs, bundle.decoder, base.similarity)
        for method in args.methods:
            rows += measure(bundle, method, split, enc.ids, tokens, base, d, keys, rng, args)
    md = render(rows, name, args)
    print(md)
    if args.docs is not None:
        args.docs.parent.mkdir(parents=True, exist_ok=True)
        args.docs.write_text(md)


def ig_spans(bundle, ids: list[list[int]], task: str, classes: np.ndarray, steps: int) -> list:
    """Integrated-gradients spans of ``classes`` (one per report; -1: none), per report."""
    import torch

    from kinpath.phenotyping.bundle import spans_of
    from kinpath.phenotyping.vocab import MIN_TOKENS, PAD

    net = bundle.nets[0]
    out: list = [[] for _ in ids]
    order = np.argsort([len(x) for x in ids], kind="stable")
    for s in range(0, len(ids), 16):
        idx = [i for i in order[s : s + 16] if classes[i] >= 0]
        if not idx:
            continue
        width = max(MIN_TOKENS, max(len(ids[i]) for i in idx))
        tokens = torch.full((len(idx), width), PAD, dtype=torch.long)
        for r, i in enumerate(idx):
            tokens[r, : len(ids[i])] = torch.tensor(ids[i])
        lengths = torch.tensor([len(ids[i]) for i in idx])
        cls = torch.tensor([int(classes[i]) for i in idx])
        with torch.no_grad():
            emb = net.embedding(tokens)
        total = torch.zeros_like(emb)
        for k in range(1, steps + 1):
            x = (emb * (k / steps)).requires_grad_(True)
            logits = net.classify(net.encode_vectors(x, lengths))[task]
            (grad,) = torch.autograd.grad(logits.gather(1, cls[:, None]).sum(), x)
            total += grad
        attribution = (emb * total / steps).sum(-1).detach()  # [B, T]
        for r, i in enumerate(idx):
            a = attribution[r, : len(ids[i])].numpy()
            windows = [(w, np.convolve(a, np.ones(w), "valid")) for w in (3, 4, 5) if len(a) >= w]
            out[i] = spans_of(windows, len(ids[i]))
    return out


def measure(bundle, method, split, ids, tokens, base, d, keys, rng, args) -> list[dict]:
    """One method's rows (one per task) for one split."""
    from kinpath.phenotyping.bundle import score
    from kinpath.phenotyping.evidence import emitted_classes
    from kinpath.phenotyping.vocab import UNK

    backoff = bundle.decoder.hierarchy.backoff
    rows = []
    for t in bundle.tasks:
        if len(bundle.label_maps[t]) < 2:  # one class: its probability is always 1
            rows.append({"split": split, "method": method, "task": t, "codes": len(ids),
                         "one_class": True})  # fmt: skip
            continue
        emitted = emitted_classes(d.labels[t], bundle.label_maps[t], base.probs[t], backoff.get(t))
        found = (
            base.evidence[t]
            if method == "windows"
            else ig_spans(bundle, ids, t, emitted, args.ig_steps)
        )
        masked, shuffled, top_len, keep = [], [], [], []
        for i, c in enumerate(emitted):
            if c < 0 or not found[i]:
                continue
            a, b, _ = found[i][0]
            n = len(ids[i])
            m = list(ids[i])
            m[a:b] = [UNK] * (b - a)
            masked.append(m)
            # a random span of the same length that does not overlap the top one
            choices = [s for s in range(max(1, n - (b - a) + 1)) if s + (b - a) <= a or s >= b]
            s = int(rng.choice(choices)) if choices else 0
            r = list(ids[i])
            r[s : s + (b - a)] = [UNK] * (b - a)
            shuffled.append(r)
            keep.append((i, c))
            top_len.append(b - a)
        if not keep:
            continue
        pm = score(bundle, masked).probs[t]
        pr = score(bundle, shuffled).probs[t]
        p0 = np.array([base.probs[t][i, c] for i, c in keep])
        fall_ev = p0 - np.array([pm[k, c] for k, (_, c) in enumerate(keep)])
        fall_rand = p0 - np.array([pr[k, c] for k, (_, c) in enumerate(keep)])
        row: dict[str, object] = {
            "split": split, "method": method, "task": t, "codes": len(keep),
            "faithful": float(np.mean(fall_ev > fall_rand)),
            "fall_evidence": float(np.mean(fall_ev)), "fall_random": float(np.mean(fall_rand)),
            "span_tokens": float(np.mean(top_len)),
        }  # fmt: skip
        if t in GRAPH_TASKS:
            hit, hit_auto = [], []
            for i, c in keep:
                wanted = plausible_keys(t, bundle.label_maps[t][c], keys, backoff)
                wanted |= plausible_keys(t, str(d.labels[t][i]), keys, backoff)
                a, b, _ = found[i][0]
                ok = any(x < b and a < y for x, y in occurrences(tokens[i], wanted))
                hit.append(ok)
                if not d.abstain[t][i]:
                    hit_auto.append(ok)
            row["plausible"] = float(np.mean(hit))
            row["plausible_auto"] = float(np.mean(hit_auto)) if hit_auto else None
            row["auto_codes"] = len(hit_auto)
        rows.append(row)
        print(row, flush=True)
    return rows


def _pct(v: object) -> str:
    return "—" if v is None else f"{100 * float(v):.1f}%"  # type: ignore[arg-type]


def render(rows: list[dict], name: str, args: argparse.Namespace) -> str:
    lines = [
        "# Evidence quality",
        "",
        f"Measured {dt.date.today()} on {machine()}, model {name}, "
        f"fp32, on the test split of {', '.join(f'`{s}`' for s in args.splits)}, with",
        f"`python bench/evidence_quality.py --model <model> --graph <graph folder> --methods {' '.join(args.methods)} --ig-steps {args.ig_steps} --splits {' '.join(args.splits)}`. "
        "Spans: `windows` is what kinpath emits; `ig` is integrated gradients, for comparison.",
        "",
        "*Plausible*: the top span overlaps a graph term of the emitted code or its parent "
        "(all decoded codes / auto-coded ones only). *Faithful*: masking the top span lowers "
        "the emitted class's probability more than masking a random span of the same length "
        "(share of codes; mean fall of the probability for each).",
        "",
        "| split | spans | task | codes | plausible | plausible (auto-coded) | faithful | fall: evidence | fall: random | top span, tokens |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("one_class"):
            lines.append(f"| {r['split']} | {r['method']} | {r['task']} | {r['codes']} | one class: "
                         "nothing to explain | | | | | |")  # fmt: skip
            continue
        plaus = _pct(r.get("plausible")) if "plausible" in r else "n/a"
        auto = (
            f"{_pct(r.get('plausible_auto'))} of {r.get('auto_codes')}"
            if "plausible" in r
            else "n/a"
        )
        lines.append(
            f"| {r['split']} | {r['method']} | {r['task']} | {r['codes']} | {plaus} | {auto} | {_pct(r['faithful'])} "
            f"| {r['fall_evidence']:.3f} | {r['fall_random']:.3f} | {r['span_tokens']:.1f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
