#!/usr/bin/env bash
# On a lent GPU machine (no network): unpack what scripts/pack_for_device.sh packed and carried
# in .whl/parts, install it beside the image's Python (torch with CUDA is there), and run
# `scripts/gpu_check.py` from the packed commit. Report files land in ${OUT:-/tmp/out}/gpu-check.
set -euo pipefail
cd "$(dirname "$0")/.."
B=/tmp/bundle S=/tmp/src OUT=${OUT:-/tmp/out}
rm -rf "$B" "$S" && mkdir -p "$B" "$S" "$OUT"
# The parts collected in /tmp/parts over the calls (see pack_for_device.sh), else .whl/parts.
PARTS=/tmp/parts; [ -e "$PARTS/p00" ] || PARTS=.whl/parts
cp -n .whl/parts/p* "$PARTS"/ 2>/dev/null || true
cat "$PARTS"/p* | tar -x -C "$B"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site "$B"/whl/*.whl
export PYTHONPATH=/tmp/site:$S
tar -x -f "$B/src.tar" -C "$S"
unxz() { python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; }
M=$S/artifacts/onnx/multilingual-e5-small BASE=$S/artifacts/base/multilingual-e5-small
mkdir -p "$M" "$BASE" "$S/artifacts/train-data" /usr/share/dictd /tmp/debs
unxz "$B/model/model.onnx.xz" "$M/model.onnx"
unxz "$B/model/tokenizer.json.xz" "$M/tokenizer.json"
cp "$B"/model/*.json "$M/"
unxz "$B/base/tokenizer.json.xz" "$BASE/tokenizer.json"
cp "$B"/base/*.json "$BASE/"
cp "$B"/dictd/* /usr/share/dictd/
cp "$B"/train-data/* "$S/artifacts/train-data/"
for d in "$B"/debs/*.deb; do dpkg -x "$d" /tmp/debs; done
export PATH=/tmp/debs/usr/bin:$PATH LD_LIBRARY_PATH=/tmp/debs/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
# The training probe measures speed and memory: weights of the base's shape, randomly drawn
# (the converted weights are 470 MB, more than the machine takes in a call).
python3 - "$BASE" <<'PY'
import sys
from pathlib import Path
from transformers import AutoConfig, AutoModel
base = Path(sys.argv[1])
AutoModel.from_config(AutoConfig.from_pretrained(base)).save_pretrained(base)
(base / "RANDOM_INIT").write_text("weights drawn at random: speed and memory only\n")
PY
cd "$S"
export PYTHONUNBUFFERED=1
# More runs in the same call (other workers or settings) start from this environment:
#   . /tmp/lent-env.sh && FAQ_BATCH_MAX_WAIT_MS=1 python3 scripts/gpu_check.py --out "$OUT/b" ...
declare -p PYTHONPATH PATH LD_LIBRARY_PATH PYTHONUNBUFFERED | sed 's/^declare -x/export/' \
  >/tmp/lent-env.sh
echo "cd $S" >>/tmp/lent-env.sh
python3 scripts/gpu_check.py --out "$OUT/gpu-check" "$@"
