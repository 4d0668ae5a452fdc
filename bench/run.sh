#!/usr/bin/env bash
# run.sh - `make bench`: every comparison interleaved in one run, then one table
# (bench/README.md says what each peer does and does not do).
# Env (set by mk/bench.mk): LUA, FLOOR (the built bench/floor.c), LUA_PATH/LUA_CPATH.
# Knobs: BENCH_ROUNDS (21 sequential rounds), BENCH_BATCH_ROUNDS (3), BENCH_SCALE (1.0:
# multiplies every count; 0.2 for a smoke run), BENCH_SKIP_JS=1, BENCH_SKIP_CALLGRIND=1.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(dirname "$HERE")
cd "$ROOT"
LUA=${LUA:-lua5.4}; FLOOR=${FLOOR:?FLOOR=path of the built floor program}
export LUA FLOOR
ROUNDS=${BENCH_ROUNDS:-21}; BROUNDS=${BENCH_BATCH_ROUNDS:-3}; SCALE=${BENCH_SCALE:-1}
ID=18dea47f-b081-4107-9a5c-4300819d2c6c
SEED=emulator/fixtures/$ID.json
NORAW=emulator/fixtures/identifiers-no-rawid-no-kind.json
LARGE=emulator/fixtures/large-200-targets.json
OUT=$HERE/results; rm -rf "$OUT"; mkdir -p "$OUT"
: > "$OUT/raw.txt"
say() { echo "bench: $*" >&2; }
n_of() { awk -v n="$1" -v s="$SCALE" 'BEGIN { v = int(n * s); print (v < 1 ? 1 : v) }'; }

# ---- servers ---------------------------------------------------------------
STATIC_DIR=""; EMU_DIRS=()
cleanup() {
  [ -n "$STATIC_DIR" ] && "$HERE/static-nginx" stop "$STATIC_DIR" >/dev/null 2>&1 || true
  local d; for d in "${EMU_DIRS[@]}"; do emulator/acs-emulator stop --dir "$d" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
trap 'exit 130' INT; trap 'exit 143' TERM
eval "$("$HERE/static-nginx" start "$SEED")"; STATIC_DIR=$BENCH_NGINX_DIR
emu() { # start an emulator with the given options, set EMU_* from its output
  local out; out=$(emulator/acs-emulator start "$@")
  EMU_DIR=$(sed -n 's/^export ACS_EMULATOR_DIR=//p' <<<"$out"); EMU_DIRS+=("$EMU_DIR")
  EMU_ENDPOINT=$(sed -n 's/^export ACS_ENDPOINT=//p' <<<"$out")
  EMU_LOG=$(sed -n 's/^export ACS_EMULATOR_LOG=//p' <<<"$out")
  BENCH_KEY=$(sed -n 's/^export ACS_ACCESS_KEY=//p' <<<"$out"); export BENCH_KEY
}
emu_stop() { emulator/acs-emulator stop --dir "$EMU_DIR" >/dev/null 2>&1 || true; }

HAVE_JS=0
if [ "${BENCH_SKIP_JS:-0}" != 1 ] && command -v node >/dev/null &&
   [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] &&
   [ -d "$HERE/node_modules/@azure/communication-call-automation" ]; then HAVE_JS=1
else say "JS SDK rows skipped (needs node >= 20 and bench/node_modules: make bench-deps)"; fi

# ---- 1. instructions per call (callgrind), no noise ---------------------------
# (Ir of K calls - Ir of 0 calls) / K, each run after the same 5 warm-up calls
cg_total() { sed -n 's/^summary: *\([0-9]*\).*/\1/p; s/^totals: *\([0-9]*\).*/\1/p' "$1" | head -1; }
cg_run() { # out-file command... (prints total Ir)
  local f=$1; shift
  valgrind --tool=callgrind --callgrind-out-file="$f" "$@" >/dev/null 2>"$f.log" || { say "valgrind failed: $*"; cat "$f.log" >&2; return 1; }
  cg_total "$f"
}
client_cmd() { # label endpoint ca -> command words in CMD
  case $1 in
    floor-raw)   CMD=("$FLOOR" raw "$2" "$3") ;;
    fair-bearer) CMD=("$FLOOR" fair-bearer "$2" "$3") ;;
    fair-hmac)   CMD=("$FLOOR" fair-hmac "$2" "$3") ;;
    *)           CMD=("$LUA" "$HERE/clients.lua" "$1" "$2" "$ID") ;;
  esac
}
K=$(n_of 400)
if [ "${BENCH_SKIP_CALLGRIND:-0}" != 1 ]; then
  say "1/5 callgrind: client instructions per call (K=$K)"
  for scheme in http https; do
    if [ $scheme = http ]; then ep=$BENCH_HTTP; ca=-; else ep=$BENCH_HTTPS; ca=$BENCH_CA_FILE; fi
    for label in floor-raw fair-bearer fair-hmac acscall-bearer acscall-hmac lua-keepalive; do
      client_cmd $label "$ep" "$ca"
      case $label in floor-*|fair-*) tail=() ;; *) tail=("$ca") ;; esac
      a=$(cg_run "$OUT/cg.$label.$scheme.0" "${CMD[@]}" 0 5 "${tail[@]}")
      b=$(cg_run "$OUT/cg.$label.$scheme.K" "${CMD[@]}" "$K" 5 "${tail[@]}")
      echo "Ir $label $scheme $(awk -v a="$a" -v b="$b" -v k="$K" 'BEGIN { printf "%.0f", (b - a) / k }')" >> "$OUT/ir.txt"
    done
  done
  # where the instructions go: only inside l_get_call (acscall) and curl_easy_perform
  # (the fair floors), K calls + 5 warm-up, HTTP: inclusive and self listings
  cg_only() { # name toggle-function command...
    local name=$1 fn=$2; shift 2
    valgrind --tool=callgrind --collect-atstart=no --toggle-collect="$fn" --callgrind-out-file="$OUT/cg.only.$name" "$@" >/dev/null 2>&1 || return 0
    callgrind_annotate --inclusive=yes --threshold=99 "$OUT/cg.only.$name" > "$OUT/annotate-$name-inclusive.txt" 2>/dev/null || true
    callgrind_annotate --threshold=99 "$OUT/cg.only.$name" > "$OUT/annotate-$name-self.txt" 2>/dev/null || true
  }
  cg_only fair-hmac-http curl_easy_perform "$FLOOR" fair-hmac "$BENCH_HTTP" - "$K" 5
  cg_only acscall-hmac-http l_get_call "$LUA" "$HERE/clients.lua" acscall-hmac "$BENCH_HTTP" "$ID" "$K" 5
  cg_only acscall-bearer-http l_get_call "$LUA" "$HERE/clients.lua" acscall-bearer "$BENCH_HTTP" "$ID" "$K" 5
fi
cat "$OUT/ir.txt" >> "$OUT/raw.txt" 2>/dev/null || true

# ---- 2. sequential get, static nginx: interleaved bursts ----------------------
say "2/5 sequential get, static nginx, $ROUNDS interleaved rounds per scheme"
for scheme in http https; do
  if [ $scheme = http ]; then ep=$BENCH_HTTP; ca=-; else ep=$BENCH_HTTPS; ca=$BENCH_CA_FILE; fi
  "$LUA" "$HERE/interleave.lua" run $scheme "$ep" "$ca" "$ROUNDS" "$SCALE" "$OUT" $HAVE_JS || {
    for f in "$OUT/fifo-$scheme"/*.err; do [ -s "$f" ] && { echo "== $f" >&2; cat "$f" >&2; }; done
    exit 1
  }
done

# ---- 3. decode alone ---------------------------------------------------------
say "3/5 decode alone: acscall.decode vs cjson.decode (interleaved wall, then callgrind)"
"$LUA" "$HERE/decode.lua" wall "$ROUNDS" "$SEED" "$NORAW" "$LARGE" | grep '^RESULT' | sed 's/^/decode /' >> "$OUT/decode.txt"
if [ "${BENCH_SKIP_CALLGRIND:-0}" != 1 ]; then
  for b in seed noraw large; do
    case $b in seed) file=$SEED; k=$(n_of 3000) ;; noraw) file=$NORAW; k=$(n_of 1000) ;; large) file=$LARGE; k=$(n_of 60) ;; esac
    for fn in acscall cjson; do
      a=$(cg_run "$OUT/cg.decode.$fn.$b.0" "$LUA" "$HERE/decode.lua" count $fn "$file" 0)
      c=$(cg_run "$OUT/cg.decode.$fn.$b.K" "$LUA" "$HERE/decode.lua" count $fn "$file" "$k")
      echo "Ir decode $fn $b $(awk -v a="$a" -v c="$c" -v k="$k" 'BEGIN { printf "%.0f", (c - a) / k }')" >> "$OUT/decode.txt"
    done
    callgrind_annotate --inclusive=yes --threshold=99 "$OUT/cg.decode.acscall.$b.K" > "$OUT/annotate-decode-acscall-$b-inclusive.txt" 2>/dev/null || true
  done
fi
cat "$OUT/decode.txt" >> "$OUT/raw.txt"

# ---- 4. batch: 10k ids, emulator latency 20 ms, against the fair floor ----------
BATCH_N=$(n_of 10000); LAT=20
say "4/5 batch: $BATCH_N ids, ${LAT} ms latency, concurrency 64 and 256, $BROUNDS interleaved rounds"
emu --latency "$LAT"
for conc in 64 256; do
  for r in $(seq 1 "$BROUNDS"); do
    if [ $((r % 2)) = 1 ]; then order="acscall floor"; else order="floor acscall"; fi
    for who in $order; do
      if [ $who = acscall ]; then line=$("$LUA" "$HERE/batch.lua" "$EMU_ENDPOINT" "$BATCH_N" "$conc" "$ID")
      else line=$("$FLOOR" batch fair-hmac "$EMU_ENDPOINT" - "$BATCH_N" "$conc"); fi
      echo "batch who=$who round=$r $line" >> "$OUT/batch.txt"
      : > "$EMU_LOG"
    done
  done
done
emu_stop
cat "$OUT/batch.txt" >> "$OUT/raw.txt"

# ---- 5. the table ---------------------------------------------------------------
say "5/5 table ($OUT/table.md)"
"$LUA" "$HERE/report.lua" "$OUT" "$LAT" > "$OUT/table.md"
cat "$OUT/table.md"
