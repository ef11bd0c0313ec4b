"""Time each exported ONNX variant on one execution provider: `python scripts/bench_variants.py`.

    python scripts/bench_variants.py --model-dir artifacts/onnx/multilingual-e5-small \
        --threads 1 --batch 1 --batch 16 [--device cuda]

Prints the mean time of one model run (after a warm-up run) per variant and batch size, with
the same session options as the service (index_builder.model.encoder.OnnxEncoder).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from index_builder.model.encoder import OnnxEncoder, resolve_providers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--model-dir", type=Path, default=Path("artifacts/onnx/multilingual-e5-small")
    )
    parser.add_argument("--variant", action="append", help="default: every exported variant")
    parser.add_argument("--batch", type=int, action="append", help="default: 1 and 16")
    parser.add_argument("--threads", type=int, default=None, help="ORT intra-op threads")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from index_builder.model.manifest import ModelManifest

    variants = args.variant or list(ModelManifest.read(args.model_dir).variants)
    for variant in variants:
        encoder = OnnxEncoder.load(
            args.model_dir,
            variant=variant,
            providers=resolve_providers(args.device),
            intra_op_threads=args.threads,
            batch_size=1024,
        )
        for batch in args.batch or [1, 16]:
            tokens = encoder.tokenize(["can I cancel mi pedido please"] * batch, "query")
            encoder.encode_tokenized(tokens)  # warm-up: first run allocates
            start = time.perf_counter()
            for _ in range(args.repeats):
                encoder.encode_tokenized(tokens)
            ms = (time.perf_counter() - start) / args.repeats * 1000
            print(f"{variant:5s} batch {batch:3d} on {encoder.providers[0]}: {ms:8.1f} ms")


if __name__ == "__main__":
    main()
