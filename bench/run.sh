#!/usr/bin/env bash
# run.sh - `make bench`: everything side by side in one run, then one table.
# Env (set by mk/bench.mk): LUA, FLOOR (the built bench/floor.c), LUA_PATH/LUA_CPATH.
# Knobs: BENCH_ROUNDS (5), BENCH_SCALE (1.0: multiplies every iteration count), BENCH_SKIP_JS=1.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(dirname "$HERE")
cd "$ROOT"
LUA=${LUA:-lua5.4}; FLOOR=${FLOOR:?FLOOR=path of the built floor program}
ROUNDS=${BENCH_ROUNDS:-5}; SCALE=${BENCH_SCALE:-1}
ID=18dea47f-b081-4107-9a5c-4300819d2c6c
SEED=emulator/fixtures/$ID.json
OUT=$HERE/results; mkdir -p "$OUT"
RAW=$OUT/raw.txt; : > "$RAW"
TABLE=$OUT/table.md
say() { echo "bench: $*" >&2; }
n_of() { awk -v n="$1" -v s="$SCALE" 'BEGIN { v = int(n * s); print (v < 1 ? 1 : v) }'; }
field() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" <<<" $2"; }   # field NAME "RESULT a=1 b=2"
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else print a[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a == "nan" || b == "nan") print "-"; else printf "%.2f", a / b }'; }

# ---- servers ---------------------------------------------------------------
STATIC_DIR=""; EMU_DIRS=()
cleanup() {
  [ -n "$STATIC_DIR" ] && "$HERE/static-nginx" stop "$STATIC_DIR" >/dev/null 2>&1 || true
  local d; for d in "${EMU_DIRS[@]}"; do emulator/acs-emulator stop --dir "$d" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
eval "$("$HERE/static-nginx" start "$SEED")"; STATIC_DIR=$BENCH_NGINX_DIR
emu() { # start an emulator with the given options, set EMU_* from its output
  local out; out=$(emulator/acs-emulator start "$@")
  EMU_DIR=$(sed -n 's/^export ACS_EMULATOR_DIR=//p' <<<"$out"); EMU_DIRS+=("$EMU_DIR")
  EMU_ENDPOINT=$(sed -n 's/^export ACS_ENDPOINT=//p' <<<"$out")
  EMU_CA=$(sed -n 's/^export ACS_CA_FILE=//p' <<<"$out")
  EMU_LOG=$(sed -n 's/^export ACS_EMULATOR_LOG=//p' <<<"$out")
  export BENCH_KEY=$(sed -n 's/^export ACS_ACCESS_KEY=//p' <<<"$out") BENCH_TOKEN=$(sed -n 's/^export ACS_TOKEN=//p' <<<"$out")
}
emu_stop() { emulator/acs-emulator stop --dir "$EMU_DIR" >/dev/null 2>&1 || true; }

HAVE_JS=0
if [ "${BENCH_SKIP_JS:-0}" != 1 ] && command -v node >/dev/null &&
   [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] &&
   [ -d "$HERE/node_modules/@azure/communication-call-automation" ]; then HAVE_JS=1
else say "JS SDK rows skipped (needs node >= 20 and bench/node_modules: make bench-deps)"; fi

# one client run: run_client LABEL SCHEME(http|https) ENDPOINT CA N WARM  -> appends to RAW
declare -A WALL CPU
run_client() {
  local label=$1 scheme=$2 ep=$3 ca=$4 n=$5 warm=$6 line url
  url="${ep}calling/callConnections/$ID?api-version=2026-03-12"
  case $label in
    floor)   line=$("$FLOOR" "$url" "${ca:--}" "$n" "$warm") ;;
    acscall-bearer|acscall-hmac|diy) line=$("$LUA" "$HERE/clients.lua" "$label" "$ep" "$ID" "$n" "$warm" "${ca:--}") ;;
    js)      line=$(cd "$HERE" && NODE_EXTRA_CA_CERTS=${ca:-} node js-sdk.mjs "$ep" "$ID" "$n" "$warm") ;;
  esac
  echo "$SECTION $label $scheme $line" >> "$RAW"
  WALL[$SECTION/$scheme/$label]+=" $(field wall_us "$line")"
  CPU[$SECTION/$scheme/$label]+=" $(field cpu_us "$line")"
}

# ---- 1. sequential per call, static nginx: floor and peers -------------------
# rows: label n_http n_https (lua-sec reconnects and handshakes per call: few)
SEQ_ROWS=("floor 5000 4000" "acscall-bearer 5000 4000" "acscall-hmac 5000 4000" "diy 3000 40" "js 2000 2000")
SECTION=static
say "1/6 sequential get, static nginx, HTTP and HTTPS, $ROUNDS interleaved rounds"
for r in $(seq 1 "$ROUNDS"); do
  # rotate the order each round so no client always runs first/last
  for k in $(seq 0 $(( ${#SEQ_ROWS[@]} - 1 ))); do
    row=(${SEQ_ROWS[$(( (k + r) % ${#SEQ_ROWS[@]} ))]})
    [ "${row[0]}" = js ] && [ "$HAVE_JS" = 0 ] && continue
    run_client "${row[0]}" http "$BENCH_HTTP" "" "$(n_of "${row[1]}")" 20
    run_client "${row[0]}" https "$BENCH_HTTPS" "$BENCH_CA_FILE" "$(n_of "${row[2]}")" 20
  done
done

# ---- 2. the same against the emulator over HTTPS (real HMAC checks, log) -----
SECTION=emu
say "2/6 sequential get, the emulator over HTTPS (HMAC verified), 3 rounds"
emu --tls
for r in 1 2 3; do
  for label in floor acscall-hmac diy js; do
    [ "$label" = js ] && [ "$HAVE_JS" = 0 ] && continue
    case $label in diy) n=40 ;; *) n=2000 ;; esac
    run_client "$label" https "$EMU_ENDPOINT" "$EMU_CA" "$(n_of $n)" 20
    : > "$EMU_LOG"
  done
done
emu_stop

# ---- 3. instructions per call (callgrind): floor vs acscall ------------------
say "3/6 callgrind: client instructions per call"
cg_total() { # callgrind out file -> total Ir
  sed -n 's/^summary: *\([0-9]*\).*/\1/p; s/^totals: *\([0-9]*\).*/\1/p' "$1" | head -1
}
cg_run() { # out-file command... (prints total Ir)
  local f=$1; shift
  valgrind --tool=callgrind --callgrind-out-file="$f" "$@" >/dev/null 2>"$f.log" || { say "valgrind failed: $*"; cat "$f.log" >&2; return 1; }
  cg_total "$f"
}
declare -A IR
K=$(n_of 400)
for scheme in http https; do
  if [ $scheme = http ]; then ep=$BENCH_HTTP; ca=-; else ep=$BENCH_HTTPS; ca=$BENCH_CA_FILE; fi
  url="${ep}calling/callConnections/$ID?api-version=2026-03-12"
  for label in floor acscall-bearer acscall-hmac; do
    if [ $label = floor ]; then cmd=("$FLOOR" "$url" "$ca"); else cmd=("$LUA" "$HERE/clients.lua" "$label" "$ep" "$ID"); fi
    if [ $label = floor ]; then
      a=$(cg_run "$OUT/cg.$label.$scheme.0" "${cmd[@]}" 0 5)
      b=$(cg_run "$OUT/cg.$label.$scheme.K" "${cmd[@]}" "$K" 5)
    else
      a=$(cg_run "$OUT/cg.$label.$scheme.0" "${cmd[@]}" 0 5 "$ca")
      b=$(cg_run "$OUT/cg.$label.$scheme.K" "${cmd[@]}" "$K" 5 "$ca")
    fi
    IR[$scheme/$label]=$(awk -v a="$a" -v b="$b" -v k="$K" 'BEGIN { printf "%.0f", (b - a) / k }')
    echo "callgrind $label $scheme K=$K base=$a total=$b per_call=${IR[$scheme/$label]}" >> "$RAW"
  done
done
# where acscall's instructions go: only inside l_get_call (acscall) and curl_easy_perform
# (floor), K calls + 5 warm-up, HTTP; inclusive and self listings in results/
cg_only() { # name toggle-function command...
  local name=$1 fn=$2; shift 2
  valgrind --tool=callgrind --collect-atstart=no --toggle-collect="$fn" --callgrind-out-file="$OUT/cg.only.$name" "$@" >/dev/null 2>&1 || return 0
  callgrind_annotate --inclusive=yes --threshold=99 "$OUT/cg.only.$name" > "$OUT/annotate-$name-inclusive.txt" 2>/dev/null || true
  callgrind_annotate --threshold=99 "$OUT/cg.only.$name" > "$OUT/annotate-$name-self.txt" 2>/dev/null || true
}
url="${BENCH_HTTP}calling/callConnections/$ID?api-version=2026-03-12"
cg_only floor-http curl_easy_perform "$FLOOR" "$url" - "$K" 5
cg_only acscall-hmac-http l_get_call "$LUA" "$HERE/clients.lua" acscall-hmac "$BENCH_HTTP" "$ID" "$K" 5
cg_only acscall-bearer-http l_get_call "$LUA" "$HERE/clients.lua" acscall-bearer "$BENCH_HTTP" "$ID" "$K" 5

# ---- 4. decode alone ----------------------------------------------------------
say "4/6 decode alone: acscall.decode vs cjson.decode (wall, then callgrind)"
LARGE=emulator/fixtures/large-200-targets.json
if [ ! -f "$LARGE" ]; then
  LARGE=$OUT/large-200-targets.json
  "$LUA" -e '
    local t = {}
    for i = 1, 200 do
      t[i] = i % 2 == 1 and string.format([[{"kind":"communicationUser","rawId":"8:acs:x_%d","communicationUser":{"id":"8:acs:x_%d"}}]], i, i)
        or string.format([[{"kind":"phoneNumber","rawId":"4:+1425555%04d","phoneNumber":{"value":"+1425555%04d"}}]], i, i)
    end
    io.write([[{"callConnectionId":"large","callConnectionState":"connected","targets":[]], table.concat(t, ","), "]}")' > "$LARGE"
fi
declare -A DW DIR
while read -r line; do
  echo "decode $line" >> "$RAW"
  f=$(field file "$line"); fn=$(field fn "$line")
  case $f in large*) b=large ;; *) b=seed ;; esac
  DW[$b/$fn]=$(field wall_us "$line")
done < <("$LUA" "$HERE/decode.lua" wall "$ROUNDS" "$SEED" "$LARGE" | grep '^RESULT')
for b in seed large; do
  if [ $b = seed ]; then file=$SEED; k=$(n_of 3000); else file=$LARGE; k=$(n_of 60); fi
  for fn in acscall cjson; do
    a=$(cg_run "$OUT/cg.decode.$fn.$b.0" "$LUA" "$HERE/decode.lua" count $fn "$file" 0)
    c=$(cg_run "$OUT/cg.decode.$fn.$b.K" "$LUA" "$HERE/decode.lua" count $fn "$file" "$k")
    DIR[$b/$fn]=$(awk -v a="$a" -v c="$c" -v k="$k" 'BEGIN { printf "%.0f", (c - a) / k }')
    echo "callgrind decode $fn $b K=$k base=$a total=$c per_op=${DIR[$b/$fn]}" >> "$RAW"
  done
done
for b in seed large; do
  callgrind_annotate --threshold=99 "$OUT/cg.decode.acscall.$b.K" > "$OUT/annotate-decode-acscall-$b-self.txt" 2>/dev/null || true
  callgrind_annotate --inclusive=yes --threshold=99 "$OUT/cg.decode.acscall.$b.K" > "$OUT/annotate-decode-acscall-$b-inclusive.txt" 2>/dev/null || true
done

# ---- 5. batch: 1,000 ids, emulator latency 20 ms -----------------------------
BATCH_N=1000; CONC=32; LAT=20
say "5/6 batch: $BATCH_N ids, ${LAT} ms latency, get_calls concurrency $CONC vs sequential"
emu --latency "$LAT"
BATCH_LINES=()
for r in 1 2 3; do
  line=$("$LUA" "$HERE/batch.lua" batch "$EMU_ENDPOINT" "$BATCH_N" "$CONC" "$ID")
  echo "batch $line" >> "$RAW"; BATCH_LINES+=("$line"); : > "$EMU_LOG"
  case $line in SKIP*) break ;; esac
done
SEQ_LINE=$("$LUA" "$HERE/batch.lua" seq "$EMU_ENDPOINT" "$BATCH_N" "$CONC" "$ID")
echo "batch $SEQ_LINE" >> "$RAW"
emu_stop

# ---- 6. table -------------------------------------------------------------------
say "6/6 table ($TABLE)"
{
echo "## Sequential get_call, per call, static nginx (median of $ROUNDS interleaved rounds)"
echo
echo "| transport | client | wall µs/call | × floor | client CPU µs/call | × floor CPU | callgrind Ir/call |"
echo "|---|---|---:|---:|---:|---:|---:|"
for scheme in http https; do
  fw=$(echo ${WALL[static/$scheme/floor]} | median); fc=$(echo ${CPU[static/$scheme/floor]} | median)
  for label in floor acscall-bearer acscall-hmac diy js; do
    [ -n "${WALL[static/$scheme/$label]:-}" ] || continue
    w=$(echo ${WALL[static/$scheme/$label]} | median); c=$(echo ${CPU[static/$scheme/$label]} | median)
    case $label in
      diy) name=$([ $scheme = http ] && echo "luasocket socket.http + cjson" || echo "lua-sec ssl.https + cjson") ;;
      js) name="JS SDK @azure/communication-call-automation (HMAC)" ;;
      floor) name="floor (bench/floor.c, libcurl)" ;;
      *) name=$label ;;
    esac
    echo "| $scheme | $name | $w | $(ratio "$w" "$fw") | $c | $(ratio "$c" "$fc") | ${IR[$scheme/$label]:--} |"
  done
done
echo
echo "## Against the emulator over HTTPS (HMAC verified server-side; median of 3 rounds)"
echo
echo "| client | wall µs/call | × floor | client CPU µs/call |"
echo "|---|---:|---:|---:|"
fw=$(echo ${WALL[emu/https/floor]} | median)
for label in floor acscall-hmac diy js; do
  [ -n "${WALL[emu/https/$label]:-}" ] || continue
  w=$(echo ${WALL[emu/https/$label]} | median); c=$(echo ${CPU[emu/https/$label]} | median)
  echo "| $label | $w | $(ratio "$w" "$fw") | $c |"
done
echo
echo "## Decode alone (wall: median of $ROUNDS rounds; Ir: callgrind, baseline subtracted)"
echo
echo "| body | acscall.decode µs | cjson.decode µs | wall × | acscall.decode Ir | cjson.decode Ir | Ir × |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for b in seed large; do
  echo "| $b | ${DW[$b/acscall]} | ${DW[$b/cjson]} | $(ratio "${DW[$b/acscall]}" "${DW[$b/cjson]}") | ${DIR[$b/acscall]} | ${DIR[$b/cjson]} | $(ratio "${DIR[$b/acscall]}" "${DIR[$b/cjson]}") |"
done
echo
echo "## Batch: $BATCH_N ids, emulator latency $LAT ms, HMAC"
echo
ideal=$(awk -v n=$BATCH_N -v c=$CONC -v l=$LAT 'BEGIN { printf "%.3f", n / c * l / 1000 }')
case ${BATCH_LINES[0]} in
  SKIP*) echo "get_calls: ${BATCH_LINES[0]}" ;;
  *)
    bw=$(for l in "${BATCH_LINES[@]}"; do field wall_s "$l"; done | median)
    hwm=$(for l in "${BATCH_LINES[@]}"; do field hwm_kb "$l"; done | sort -g | tail -1)
    hwm0=$(field hwm0_kb "${BATCH_LINES[0]}")
    bok=$(field ok "${BATCH_LINES[0]}")
    echo "| run | wall s | × ideal | ok | peak RSS (VmHWM) |"
    echo "|---|---:|---:|---:|---:|"
    echo "| ideal ($BATCH_N / $CONC × $LAT ms) | $ideal | 1.00 | | |"
    echo "| get_calls, concurrency $CONC (median of ${#BATCH_LINES[@]}) | $bw | $(ratio "$bw" "$ideal") | $bok/$BATCH_N | $hwm KiB (before the batch: $hwm0 KiB) |"
    ;;
esac
sw=$(field wall_s "$SEQ_LINE")
echo "| sequential get_call | $sw | $(ratio "$sw" "$ideal") | $(field ok "$SEQ_LINE")/$BATCH_N | $(field hwm_kb "$SEQ_LINE") KiB |"
echo
echo "## Issue 5 targets (this run)"
echo
med() { echo ${WALL[static/$1/$2]:-} | median; }
medc() { echo ${CPU[static/$1/$2]:-} | median; }
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { if (v == "-" || v == "") print "n/a"; else if ((op == "<=" && v + 0 <= t) || (op == ">=" && v + 0 >= t)) print "met"; else print "MISSED" }'; }
echo "| target | measured | verdict |"
echo "|---|---:|---|"
for scheme in http https; do
  for label in acscall-bearer acscall-hmac; do
    v=$(ratio "$(med $scheme $label)" "$(med $scheme floor)")
    echo "| $scheme $label wall ≤ 1.10× floor | ${v}× | $(verdict "$v" "<=" 1.10) |"
  done
done
if [ "$HAVE_JS" = 1 ]; then
  for scheme in http https; do
    v=$(ratio "$(med $scheme js)" "$(med $scheme acscall-hmac)")
    echo "| $scheme JS SDK wall ≥ 4× acscall-hmac | ${v}× | $(verdict "$v" ">=" 4) |"
    v=$(ratio "$(medc $scheme js)" "$(medc $scheme acscall-hmac)")
    echo "| $scheme JS SDK client CPU ≥ 15× acscall-hmac | ${v}× | $(verdict "$v" ">=" 15) |"
  done
fi
v=$(ratio "$(med https diy)" "$(med https acscall-bearer)")
echo "| https lua-sec+cjson wall ≥ 3× acscall-bearer | ${v}× | $(verdict "$v" ">=" 3) |"
v=$(ratio "$(medc https diy)" "$(medc https acscall-bearer)")
echo "| (https lua-sec+cjson client CPU / acscall-bearer, no target) | ${v}× | |"
v=$(ratio "$(med http diy)" "$(med http floor)")
echo "| (http luasocket+cjson wall / floor, no target) | ${v}× | |"
for b in seed large; do
  v=$(ratio "${DIR[$b/acscall]}" "${DIR[$b/cjson]}")
  echo "| acscall.decode ≤ 1.3× cjson.decode Ir ($b) | ${v}× | $(verdict "$v" "<=" 1.3) |"
done
case ${BATCH_LINES[0]} in
  SKIP*) echo "| batch within 1.5× ideal | skipped | n/a |" ;;
  *) v=$(ratio "$bw" "$ideal"); echo "| batch within 1.5× ideal | ${v}× | $(verdict "$v" "<=" 1.5) |" ;;
esac
echo
echo "Machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), Linux $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ)"
} > "$TABLE"
cat "$TABLE"
