#!/usr/bin/env bash
# Pack what `make gpu-check` needs on a lent GPU machine that has no network and takes at most
# 64 MiB per call (the device tool of this workplace): onnxruntime-gpu and the serving wheels
# for its Python 3.12, the fp32 model (xz; the int8/fp16 variants are rebuilt there), the base
# model's config and tokenizer (the training probe runs on randomly initialised weights of the
# same shape), wrk, the probe's dictionaries and training data, and this commit's source.
# Output: .whl/parts/pNN, 63,000,000 bytes each (PART_BYTES): with the ~3.3 MB source tree
# that travels beside each part, under the 64 MiB (67,108,864 bytes) a call carries. Each call carries
# one part (carry [".whl/parts/pNN"]) and copies it aside with
# `mkdir -p /tmp/parts && cp .whl/parts/* /tmp/parts/`: a call replaces the whole ignored .whl
# folder there, so a part left in it does not survive the next call. The last call runs
# `bash scripts/lent_device.sh`. .whl/ must be ignored (.git/info/exclude).
set -euo pipefail
cd "$(dirname "$0")/.."
ORT_GPU=${ORT_GPU:-onnxruntime-gpu==1.31.1}
M=artifacts/onnx/multilingual-e5-small
BASE=artifacts/base/multilingual-e5-small
B=.whl/bundle
rm -rf "$B" .whl/parts && mkdir -p "$B"/{whl,debs,model,base,dictd,train-data} .whl/parts .whl/cache
dl() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$B/whl" "$@"
}
dl "$ORT_GPU"
# The wheel's deflate leaves its 284 MB CUDA provider at 231 MB; LZMA entries take it to 186 MB
# (the wheel 256 -> 205 MB, one part fewer, one call fewer of the lease). pip reads LZMA
# entries like any zip (Python's zipfile), and RECORD's hashes are of the unpacked files.
# Two minutes of one core: cached per wheel.
for w in "$B"/whl/onnxruntime_gpu-*.whl; do
  L=.whl/cache/lzma-$(basename "$w")
  [ -s "$L" ] || python3 - "$w" "$L.tmp" <<'PY'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as src, zipfile.ZipFile(sys.argv[2], "w") as dst:
    for info in src.infolist():
        data = src.read(info)
        info.compress_type = zipfile.ZIP_LZMA
        dst.writestr(info, data)
PY
  [ -s "$L" ] || mv "$L.tmp" "$L"
  cp "$L" "$w"
done
# The serving dependencies the GPU image lacks, at the versions this venv runs.
dl $(.venv/bin/pip list --format=freeze 2>/dev/null | grep -iE '^(fastapi|starlette|pydantic|pydantic_core|pydantic-core|annotated-types|typing-inspection|pydantic-settings|python-dotenv|uvicorn|httptools|qdrant-client|h2|hpack|hyperframe|tenacity|orjson|opentelemetry-api|lingua-language-detector|threadpoolctl)==')
# fastapi >= 0.16x imports opentelemetry-api, which needs importlib-metadata on any Python.
dl importlib-metadata
(cd "$B/debs" && apt-get download wrk libluajit-5.1-2 libluajit-5.1-common >/dev/null 2>&1)
# Compressing 470 MB takes minutes: once per fp32 graph (named by its hash in the manifest).
C=.whl/cache/model-$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["files"][m["variants"]["fp32"]][:16])' "$M/manifest.json").onnx.xz
mkdir -p .whl/cache
[ -s "$C" ] || { xz -T2 -6 -c "$M/model.onnx" > "$C.tmp" && mv "$C.tmp" "$C"; }
ln "$C" "$B/model/model.onnx.xz"
xz -6 -c "$M/tokenizer.json" > "$B/model/tokenizer.json.xz"
cp "$M/manifest.json" "$M/export_report.json" "$B/model/"
xz -6 -c "$BASE/tokenizer.json" > "$B/base/tokenizer.json.xz"
cp "$BASE"/{config.json,tokenizer_config.json,special_tokens_map.json} "$B/base/"
for l in fra spa por ita nld tur ind jpn; do cp /usr/share/dictd/freedict-eng-$l.{index,dict.dz} "$B/dictd/"; done
cp artifacts/train-data/{shop-logs,shop-faq,oscar}.jsonl "$B/train-data/"
git archive -o "$B/src.tar" HEAD
tar -c -C "$B" . | split -b "${PART_BYTES:-63000000}" -d - .whl/parts/p
ls -l .whl/parts
