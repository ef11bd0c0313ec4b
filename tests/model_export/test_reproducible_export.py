"""Two clones exporting the same weights write the same bytes and the same fingerprints.

Each "clone" is a copy of the exporting packages and of the tiny model's files in its own
directory (paths of different lengths), and the export runs in a fresh interpreter from there,
as `make model` would in a second checkout: the exporter's stack traces then name that clone's
files, which is what made the hashes differ.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from index_builder.model.manifest import ModelManifest

REPO = Path(__file__).resolve().parents[2]


def _clone(root: Path, tiny_bert_dir: Path) -> Path:
    root.mkdir(parents=True)
    for package in ("model_export", "index_builder"):
        shutil.copytree(
            REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copytree(tiny_bert_dir, root / "tiny")
    return root


def _export_in(clone: Path) -> ModelManifest:
    env = {**os.environ, "PYTHONPATH": str(clone), "PYTHONDONTWRITEBYTECODE": "1"}
    # Prints where the exporter was imported from: the clone's copy, not the repository's.
    script = (
        "import sys, model_export.onnx_export as e; print(e.__file__); "
        "e.main(['tiny', 'out', '--name', 'tiny'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=clone,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    assert done.stdout.splitlines()[0] == str(clone / "model_export" / "onnx_export.py")
    return ModelManifest.read(clone / "out")


def test_two_clones_export_identical_files(tiny_bert_dir: Path, tmp_path: Path) -> None:
    a = _clone(tmp_path / "clone-a", tiny_bert_dir)
    b = _clone(tmp_path / "a-second-clone-with-a-longer-path", tiny_bert_dir)
    ma, mb = _export_in(a), _export_in(b)

    assert ma.variants == mb.variants and set(ma.variants) == {"fp32", "int8", "fp16"}
    for variant, file in ma.variants.items():
        data_a = (a / "out" / file).read_bytes()
        data_b = (b / "out" / file).read_bytes()
        for where in (a, b, REPO, Path(sys.prefix)):
            assert str(where).encode() not in data_a, (file, where)
        assert data_a == data_b, file
        assert ma.files[file] == mb.files[file], file
        assert ma.fingerprint(variant) == mb.fingerprint(variant), variant
    tokenizer = "tokenizer.json"
    assert (a / "out" / tokenizer).read_bytes() == (b / "out" / tokenizer).read_bytes()
