#!/usr/bin/env bash
# One quick serving measurement for A/B comparisons of settings, run alternately in one sitting:
# starts faq-serve with the given FAQ_* (or other) environment, warms it up for 4 s, drives
# `POST /search` with wrk for 12 s at concurrency C on the benchmark query, prints req/s,
# p50/p99 and the server's CPU ms per request (from /proc), and stops the server.
#
#   scripts/ab_serve.sh LABEL "ENV=VALUE ..." [C]
#   for r in 1 2; do scripts/ab_serve.sh off ""; scripts/ab_serve.sh on "FAQ_ORT_SPINNING=true"; done
#
# VARIANT (default int8) picks the model variant, INDEX the embedded index directory (default
# the one `make bench-peer` builds for the variant; var/bench-100k/qdrant-large-int8 is the
# 100k index of `make bench-100k`), PORT the port (default 8124). The index must exist.
set -euo pipefail
cd "$(dirname "$0")/.."
label=${1:?label}
extra=${2:-}
conc=${3:-32}
variant=${VARIANT:-int8}
index=${INDEX:-var/bench-peer/qdrant-$variant}
port=${PORT:-8124}
[ -d "$index" ] || { echo "$index: no index (run make bench-peer or make bench-100k)" >&2; exit 2; }
script=$(mktemp --suffix=.lua)
log=$(mktemp --suffix=.log)
cat >"$script" <<'EOF'
wrk.method = "POST"
wrk.body = '{"query":"can I cancel mi pedido","top_k":5}'
wrk.headers["Content-Type"] = "application/json"
EOF
# shellcheck disable=SC2086  # $extra is a list of assignments
env $extra FAQ_MODEL_DIR=artifacts/onnx/multilingual-e5-small FAQ_MODEL_VARIANT="$variant" \
    FAQ_QDRANT_PATH="$index" FAQ_HOST=127.0.0.1 FAQ_PORT="$port" FAQ_LOG_LEVEL=warning \
    .venv/bin/faq-serve >"$log" 2>&1 &
pid=$!
trap 'rc=$?; kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -f "$script" "$log"; exit $rc' EXIT
for _ in $(seq 240); do
    curl -sf "localhost:$port/health/ready" >/dev/null 2>&1 && break
    kill -0 $pid 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.5
done
url="http://127.0.0.1:$port/search"
wrk -t1 -c"$conc" -d4s -s "$script" "$url" >/dev/null
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
t0=$(ticks)
out=$(wrk -t1 -c"$conc" -d12s --latency -s "$script" "$url")
t1=$(ticks)
rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
p50=$(awk '/ 50%/ {print $2}' <<<"$out")
p99=$(awk '/ 99%/ {print $2}' <<<"$out")
n=$(awk '/requests in/ {print $1}' <<<"$out")
hz=$(getconf CLK_TCK)
cpu=$(awk -v a="$t0" -v b="$t1" -v n="$n" -v hz="$hz" 'BEGIN {printf "%.3f", (b - a) * 1000 / hz / n}')
echo "$label c=$conc req/s=$rps p50=$p50 p99=$p99 cpu_ms_per_req=$cpu"
