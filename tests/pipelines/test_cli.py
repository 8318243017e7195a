import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from kinpath.pipelines.cli import main, normalize_argv
from kinpath.pipelines.synthetic import synthetic_reports

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kinpath.pipelines.cli", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_argv_spellings() -> None:
    assert normalize_argv(["-c", "a.yaml", "--on-error", "skip", "--keep-suppressed=true", "x-y"]) == [
        "--config", "a.yaml", "--on_error", "skip", "--keep_suppressed=true", "x-y",
    ]  # fmt: skip
    assert normalize_argv(["predict", "--resume", "--chunk-size", "5", "--overwrite"]) == [
        "predict", "--resume", "true", "--chunk_size", "5", "--overwrite", "true",
    ]  # fmt: skip
    assert normalize_argv(["--resume", "false"]) == ["--resume", "false"]


def test_build_stats_link_roundtrip(
    tmp_path: Path, fixtures: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    g = tmp_path / "g"
    assert main(["kg", "build", "--umls", str(fixtures / "umls_META"), "--out", str(g)]) == 0
    capsys.readouterr()
    assert main(["kg", "stats", str(g)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["strings"], stats["concepts"], stats["relations"]) == (16, 10, 12)
    corpus = tmp_path / "reports.csv"
    corpus.write_text(
        'report_id,text\nr1,"Invasive ductal carcinoma (IDC) of the breast."\nr2,Lung: squamous cell carcinoma\n'
    )
    assert main(["kg", "link", str(g), "--corpus", str(corpus), "--out", str(tmp_path / "l")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["linked_phrases"] == 2 and out["pairs"] >= 1
    assert out["top_linked_phrases"] == {
        "invasive_ductal_carcinoma": 1,
        "squamous_cell_carcinoma": 1,
    }
    assert (tmp_path / "l" / "pairs.parquet").exists()
    assert (tmp_path / "l" / "linked_phrases.tsv").read_text().splitlines()[0].split("\t")[1] == "1"


def test_config_file(tmp_path: Path, fixtures: Path) -> None:
    cfg = tmp_path / "kg.yaml"
    cfg.write_text(
        f"umls: {fixtures / 'umls_META'}\nout: {tmp_path / 'g'}\nkeep_suppressed: true\n"
    )
    r = run("kg", "build", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["strings"] == 17


def test_malformed_row_exits_2_or_is_skipped(tmp_path: Path, fixtures: Path) -> None:
    meta = tmp_path / "META"
    meta.mkdir()
    lines = (fixtures / "umls_META" / "MRCONSO.RRF").read_text().splitlines()
    lines.insert(6, "C9000077|ENG|P|L1|PF|S1|Y|A1|SECRET TEXT|")
    (meta / "MRCONSO.RRF").write_text("\n".join(lines) + "\n")
    r = run("kg", "build", "--umls", str(meta), "--out", str(tmp_path / "g"))
    assert r.returncode == 2
    assert f"{meta / 'MRCONSO.RRF'}:7: expected 18" in r.stderr
    assert "SECRET" not in r.stderr and "Traceback" not in r.stderr
    r = run("kg", "build", "--umls", str(meta), "--out", str(tmp_path / "g"), "--on-error", "skip")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["skipped_rows"] == 1


HEAVY = ("torch", "spacy", "pytorch_lightning", "mlflow", "gensim", "sklearn")


@pytest.mark.parametrize("argv", [["--help"], ["predict", "--help"], ["run", "--help"]])
def test_help_loads_no_heavy_library(argv: list[str]) -> None:
    code = (
        "import sys\nfrom kinpath.pipelines.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "usage: kinpath" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "[]"  # none of them imported to show help


def test_unknown_subcommand_is_a_clear_error() -> None:
    r = run("predcit")
    assert r.returncode == 2 and "unknown subcommand 'predcit'" in r.stderr


def test_library_warnings_are_not_the_users_business() -> None:
    code = (
        "from kinpath.common import setup\nsetup()\n"
        "from kinpath.embeddings.tokenize import ReportTokenizer\n"
        "print(len(list(ReportTokenizer().pipe(['Invasive ductal carcinoma (IDC) of the breast.']))))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "1"
    assert "W036" not in r.stderr and "FutureWarning" not in r.stderr


def test_lightnings_advertisement_is_dropped_and_where_a_fit_runs_is_kept() -> None:
    code = (
        "from kinpath.common import setup\nsetup()\nimport pytorch_lightning as pl\n"
        "pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "GPU available" in r.stderr and "litlogger" not in r.stderr


def test_help_names_programs_and_types_plainly() -> None:
    r = subprocess.run([sys.executable, "-m", "kinpath.phenotyping", "--help"], cwd=ROOT,
                       capture_output=True, text=True, check=False)  # fmt: skip
    assert r.stdout.startswith("usage: python -m kinpath.phenotyping"), r.stdout[:200]
    r = subprocess.run([sys.executable, "-m", "kinpath.pipelines.cli", "demo", "--help"],
                       capture_output=True, text=True, check=False)  # fmt: skip
    assert "(type: Path, default: runs/demo)" in " ".join(r.stdout.split())
    assert "<class" not in r.stdout


def test_the_deploy_guide_says_what_a_batch_input_holds_and_a_sample_ships() -> None:
    readme = " ".join((ROOT / "docs/guides/deploy.md").read_text().split())
    for text in ("a `report_id` column and a `text` column", "`--id_column` and `--text_column`",
                 "`examples/tonight.csv`"):  # fmt: skip
        assert text in readme, text
    sample = pd.read_csv(ROOT / "examples/tonight.csv", dtype=str, keep_default_na=False)
    assert list(sample.columns) == ["report_id", "text"] and len(sample) == 20
    # the project's own synthetic reports, as the generator writes them: no real patient's text
    expected = synthetic_reports(20, seed=2026)[["report_id", "text"]]
    pd.testing.assert_frame_equal(sample, expected.reset_index(drop=True))
    assert sample["text"].str.contains("\n").all()  # quoted over several lines, as usual


def test_a_choice_outside_its_values_is_exit_2_naming_them() -> None:
    """Choices are Literal types: jsonargparse refuses another value before anything loads."""
    r = run("predict", "--model", "models:/x@champion", "--input", "a.csv", "--output",
                 "b.parquet", "--precision", "fp16")  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "'auto', 'fp32', 'int8', 'bf16'" in r.stderr and "fp16" in r.stderr
    r = run("embed", "train", "--method", "glove")
    assert r.returncode == 2 and "'word2vec', 'retrofit', 'kg-joint'" in r.stderr
