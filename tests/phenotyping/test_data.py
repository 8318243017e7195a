from pathlib import Path

import pandas as pd
import pytest

from kinpath.common import InputError
from kinpath.phenotyping.data import PAD, BucketBatchSampler, ReportDataModule
from kinpath.phenotyping.rules import NOT_APPLICABLE
from kinpath.phenotyping.tasks import MISSING


def test_fixture_data_loads_with_masks_and_buckets(fixtures: Path) -> None:
    dm = ReportDataModule(str(fixtures / "reports.csv"), batch_size=8, max_length=60)
    assert set(dm.num_classes) == {
        "site",
        "subsite",
        "laterality",
        "behavior",
        "histology",
        "grade",
    }
    assert dm.summary()["reports"] == {"train": 108, "val": 21, "test": 21}
    j = dm.tasks.index("laterality")
    # unpaired organs (colon) are labelled "not applicable" (SEER 0), as a registry codes them
    colon = (dm.table["site"] == "C18").to_numpy()
    na = dm.label_maps["laterality"].index(NOT_APPLICABLE)
    assert colon.any() and (dm.labels[colon, j] == na).all()
    plain = ReportDataModule(str(fixtures / "reports.csv"), max_length=60,
                             laterality_not_applicable=False)  # fmt: skip
    assert (plain.labels[colon, j] == MISSING).all()
    assert NOT_APPLICABLE not in plain.label_maps["laterality"]
    assert dm.truncated > 0 and max(len(x) for x in dm.ids) == 60
    batch = next(iter(dm.train_dataloader()))
    lengths = batch["lengths"]
    assert batch["tokens"].shape[1] == max(5, int(lengths.max()))  # padded to the longest only
    assert (batch["tokens"][lengths.argmin(), int(lengths.min()) :] == PAD).all()


def test_buckets_hold_similar_lengths() -> None:
    lengths = list(range(1000))
    s = BucketBatchSampler(lengths, batch_size=10, seed=0, bucket_batches=5)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == lengths
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    # random batches of 10 from 1000 lengths span ~820 on average; buckets of 50 sorted, ~200
    assert sum(spread) / len(spread) < 300


def test_split_ratio_when_no_split_column_and_errors(tmp_path: Path, fixtures: Path) -> None:
    df = pd.read_csv(fixtures / "reports.csv", dtype=str, keep_default_na=False).drop(
        columns="split"
    )
    df.to_csv(tmp_path / "r.csv", index=False)
    dm = ReportDataModule(str(tmp_path / "r.csv"), tasks=["site"])
    assert sum(dm.summary()["reports"].values()) == 150 and dm.summary()["reports"]["train"] > 80
    with pytest.raises(InputError, match=r"no task column\(s\) \['t_stage'\]"):
        ReportDataModule(str(tmp_path / "r.csv"), tasks=["t_stage"])


def test_external_word2vec_file_and_a_bad_one(tmp_path: Path, fixtures: Path) -> None:
    import numpy as np
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vector_size=4)
    kv.add_vectors(["breast", "lung", "carcinoma"], np.eye(3, 4, dtype=np.float32) + 1.0)
    kv.save_word2vec_format(str(tmp_path / "vectors.txt"))
    dm = ReportDataModule(
        str(fixtures / "reports.csv"), embeddings=str(tmp_path / "vectors.txt"), tasks=["site"]
    )
    assert dm.vocab.itos == ["<pad>", "<unk>", "breast", "lung", "carcinoma"]
    assert dm.embedding_dim == 4 and dm.init_vectors is not None
    assert dm.embedding_manifest is not None and dm.embedding_manifest["method"] == "external"
    # centered: the shared +1 offset is gone, the differences stay
    assert abs(float(dm.init_vectors[2:].mean())) < 1e-6
    (tmp_path / "bad.txt").write_text("not vectors at all\n")
    with pytest.raises(InputError, match=r"bad\.txt: not a word2vec-format vectors file"):
        ReportDataModule(
            str(fixtures / "reports.csv"), embeddings=str(tmp_path / "bad.txt"), tasks=["site"]
        )


def test_two_tables_load_as_one_with_their_splits_kept(fixtures: Path, tmp_path: Path) -> None:
    df = pd.read_csv(fixtures / "reports.csv", dtype=str, keep_default_na=False)
    paths = []
    for name in ("hospital-a", "hospital-b"):
        (tmp_path / name).mkdir()
        part = df.assign(report_id=name + "-" + df["report_id"])
        part.to_csv(tmp_path / name / "reports.csv", index=False)
        paths.append(str(tmp_path / name / "reports.csv"))
    dm = ReportDataModule(paths, max_length=60)
    one = ReportDataModule(str(fixtures / "reports.csv"), max_length=60)
    assert dm.summary()["reports"] == {s: 2 * n for s, n in one.summary()["reports"].items()}
    assert dm.source_of is not None and one.source_of is None
    for split in ("train", "val", "test"):
        rows = dm.splits[split]
        assert sorted(set(dm.source_of[rows])) == ["hospital-a", "hospital-b"]
        assert (dm.table["split"].to_numpy()[rows] == split).all()


def test_a_name_in_four_patients_reports_stays_out_of_the_vocabulary(
    fixtures: Path, tmp_path: Path
) -> None:
    from kinpath.phenotyping.bundle import save_bundle
    from kinpath.phenotyping.module import MTCNNModule

    df = pd.read_csv(fixtures / "reports.csv", dtype=str, keep_default_na=False)
    train = df.index[df["split"] == "train"]
    df["patient_id"] = "P" + df.index.astype(str)
    for i in train[:4]:  # four patients
        df.loc[i, "text"] = "Patient Quillonberg seen today. " + df.loc[i, "text"]
    for i in train[4:9]:  # five patients: an ordinary word, shared widely enough
        df.loc[i, "text"] = "Specimen zorblax noted. " + df.loc[i, "text"]
    path = tmp_path / "reports.csv"
    df.to_csv(path, index=False)
    dm = ReportDataModule(str(path), max_length=60, min_count=1)
    assert "quillonberg" not in dm.vocab.stoi and "zorblax" in dm.vocab.stoi
    assert dm.summary()["vocab_held_back"] > 0
    module = MTCNNModule(dm.vocab_size, dm.num_classes, filters=4, label_maps=dm.label_maps)
    folder = save_bundle(tmp_path / "bundle", module, dm)
    for f in folder.rglob("*"):
        if f.is_file():
            assert b"quillonberg" not in f.read_bytes().lower(), f
