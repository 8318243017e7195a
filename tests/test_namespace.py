"""kinpath installs one import name, ``kinpath``, and lives beside the package index's ``kg``,
``embeddings`` and ``pipelines``.

The wheel is built from the checkout and installed into a fresh virtual environment next to
those projects. The environment also sees the test's own site-packages, appended to its path
by a ``.pth`` line (not processed as a site directory, so kinpath's editable install there is
not loaded), so that kinpath's pinned dependencies need not be installed again; its own
site-packages come first on the path, so what it imports as ``kg``, ``embeddings``,
``pipelines`` and ``kinpath`` is what was installed into it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The index's ``kg`` (0.10.0 and every older release) fails to build on Python 3.11 (its
# setup.py errors while reading its own metadata), so the test builds a stand-in distribution
# named ``kg`` with a top-level ``kg`` module: the clash is the import name, not its content.
KG_STANDIN = {
    "pyproject.toml": '[build-system]\nrequires = ["setuptools>=68"]\n'
    'build-backend = "setuptools.build_meta"\n[project]\nname = "kg"\nversion = "0.0.0"\n',
    "kg/__init__.py": 'WHO = "another project\'s kg"\n',
}

PROBE = """
import json, kg, embeddings, pipelines
import kinpath.kg.graph, kinpath.embeddings.tokenize, kinpath.phenotyping.decode
import kinpath.pipelines.cli
print(json.dumps({m.__name__: m.__file__ for m in (kg, embeddings, pipelines, kinpath.kg,
      kinpath.embeddings, kinpath.phenotyping, kinpath.pipelines)}))
"""


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # build from a copy of what the wheel is made of: setuptools builds in the source tree,
    # and neither a stale build/ there nor the checkout's own state should shape the wheel
    src = tmp_path_factory.mktemp("src")
    for f in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / f, src / f)
    for d in ("kinpath", "kg", "embeddings", "phenotyping", "pipelines"):
        shutil.copytree(ROOT / d, src / d, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    r = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
              "-w", str(out), str(src)])  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = out.glob("kinpath-*.whl")
    return whl


def _venv(where: Path) -> Path:
    r = _run([sys.executable, "-m", "venv", "--without-pip", str(where)])
    assert r.returncode == 0, r.stderr
    python = where / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    (Path(purelib.stdout.strip()) / "kinpath-test-dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    return python


def _pip_install(python: Path, *what: str) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                 "-q", *what])  # fmt: skip


def test_the_wheel_holds_kinpath_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"kinpath"}
    for p in ("kg/graph.py", "embeddings/tokenize.py", "phenotyping/tables/laterality_sites.csv",
              "pipelines/review/templates/report.html", "py.typed"):  # fmt: skip
        assert f"kinpath/{p}" in names, p


def test_kinpath_installs_beside_the_index_kg_embeddings_and_pipelines(
    wheel: Path, tmp_path: Path
) -> None:
    python = _venv(tmp_path / "venv")
    standin = tmp_path / "kg-standin"
    for name, text in KG_STANDIN.items():
        (standin / name).parent.mkdir(parents=True, exist_ok=True)
        (standin / name).write_text(text)
    r = _pip_install(python, "embeddings==0.0.8", "pipelines==0.0.14")
    if r.returncode != 0:
        pytest.skip(
            f"the package index's embeddings/pipelines cannot be installed here: {r.stderr[-300:]}"
        )
    r = _pip_install(python, str(standin), str(wheel))
    assert r.returncode == 0, r.stderr[-2000:]
    probe = _run([str(python), "-c", PROBE], cwd=tmp_path)  # not the checkout: no folder shadows
    assert probe.returncode == 0, probe.stderr[-3000:]
    files = json.loads(probe.stdout.strip().splitlines()[-1])
    site = str(tmp_path / "venv")
    for name in ("kg", "embeddings", "pipelines"):  # the other projects' own modules
        assert files[name].startswith(site) and "/kinpath/" not in files[name], files[name]
    for name in ("kinpath.kg", "kinpath.embeddings", "kinpath.phenotyping", "kinpath.pipelines"):
        assert files[name].startswith(site) and "/kinpath/" in files[name], files[name]
    cli = _run([str(tmp_path / "venv" / "bin" / "kinpath"), "--help"], cwd=tmp_path)
    assert cli.returncode == 0 and cli.stdout.startswith("usage: kinpath"), cli.stderr[-2000:]


@pytest.mark.slow
def test_the_wheel_runs_the_demo_in_a_fresh_environment(wheel: Path, tmp_path: Path) -> None:
    python = _venv(tmp_path / "venv")
    assert _pip_install(python, str(wheel)).returncode == 0
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    r = subprocess.run([str(tmp_path / "venv" / "bin" / "kinpath"), "demo"], cwd=tmp_path,
                       capture_output=True, text=True, check=False, env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "registered as models:/kinpath-demo@champion" in r.stdout
    assert (tmp_path / "runs/demo/report/results.html").exists()
