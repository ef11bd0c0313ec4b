"""Model folders for the infinity-emb peer: the optimum-cli export of the base model, as is (fp32)
and quantised the way our own export quantises (`model_export/onnx_export.py`: ONNX Runtime
dynamic quantisation, int8 weights, per channel).

    python -m tools.peer_model --export .cache/bench-peer/export-fp32 --out .cache/bench-peer

writes `<out>/peer-fp32/model.onnx` and `<out>/peer-int8/model_quantized.onnx`, each folder with
the export's config and tokenizer files. One ONNX file per folder on purpose: infinity's optimum
engine picks a file by name (a name containing "quantize" on CPU, else "model.onnx"), so a folder
holding both would serve whichever it prefers.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

PEER_FILES = {"fp32": "model.onnx", "int8": "model_quantized.onnx"}


def _copy_side_files(export: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for item in export.iterdir():
        if item.suffix == ".onnx" or item.name.endswith(".onnx_data") or not item.is_file():
            continue
        shutil.copy2(item, target / item.name)


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def quantize_int8(fp32: Path, int8: Path) -> None:
    """The same call as model_export.onnx_export._quantize_int8 (dynamic, per channel, QInt8)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = int8.with_suffix(".tmp.onnx")
    quantize_dynamic(fp32, tmp, per_channel=True, weight_type=QuantType.QInt8)
    tmp.replace(int8)


def build(export: Path, out: Path) -> dict[str, Path]:
    source = export / "model.onnx"
    if not source.is_file():
        raise SystemExit(f"{source}: missing; run the optimum-cli export first (make bench-peer)")
    paths: dict[str, Path] = {}
    for variant, name in PEER_FILES.items():
        folder = out / f"peer-{variant}"
        _copy_side_files(export, folder)
        for stale in folder.glob("*.onnx"):
            if stale.name != name:
                stale.unlink()
        target = folder / name
        if variant == "fp32":
            _link_or_copy(source, target)
        elif not target.is_file() or target.stat().st_mtime < source.stat().st_mtime:
            quantize_int8(source, target)
        paths[variant] = target
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--export", type=Path, default=Path(".cache/bench-peer/export-fp32"))
    parser.add_argument("--out", type=Path, default=Path(".cache/bench-peer"))
    args = parser.parse_args()
    for variant, path in build(args.export, args.out).items():
        print(f"peer {variant}: {path} ({path.stat().st_size / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
