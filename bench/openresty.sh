#!/usr/bin/env bash
# bench/openresty.sh - `make bench-openresty`: the OpenResty gateway
# (examples/openresty, one worker) against a plain nginx `proxy_pass` location
# in the same nginx, to the same emulator, under wrk. Reports; asserts nothing.
#
#   bench/openresty.sh [CONNECTIONS...]          default: 32 64 128 256 512
#   env: DURATION (s per run, default 8), ROUNDS (default 3), LATENCY (emulator ms, default 50),
#        PATHS (default "first event thread proxy"; first = the proxy-first path),
#        EMU_WORKERS (default 1),
#        AUTH (token | hmac, default token: the baseline sends the same bearer),
#        PIN (1: the gateway worker on a core of its own, see below)
#
# Per connection count, ROUNDS rounds, each running every path in turn (so a
# path's row has its proxy_pass row next to it in time: this machine's speed
# moves by minutes); per row: wrk -t2 -c<N> -d<DURATION>s --latency after a
# 1 s warm-up; req/s (all answers), 2xx/s, p50, p99, non-2xx (+ socket errors), the gateway
# worker's CPU per request (utime+stime of /proc/<worker pid>/stat, all its
# threads, before/after, ÷ requests) and the emulator workers' CPU use (% of
# one core: near 100 % means the emulator is the bottleneck).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CONNS=("$@")
[ ${#CONNS[@]} -gt 0 ] || CONNS=(32 64 128 256 512)
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
LATENCY=${LATENCY:-50}
PATHS=${PATHS:-"first event thread proxy"}
EMU_WORKERS=${EMU_WORKERS:-1}
AUTH=${AUTH:-token}
CALL=18dea47f-b081-4107-9a5c-4300819d2c6c
HZ=$(getconf CLK_TCK)

command -v wrk >/dev/null || { echo "bench-openresty: wrk not found (apt-get install wrk)" >&2; exit 1; }

EMU_DIR="" EX_DIR="" WORK=$(mktemp -d "${TMPDIR:-/tmp}/acscall-bench-openresty.XXXXXX")
cleanup() {
  [ -n "$EX_DIR" ] && "$ROOT/examples/openresty/run" stop --dir "$EX_DIR" >/dev/null 2>&1 || true
  [ -n "$EMU_DIR" ] && "$ROOT/emulator/acs-emulator" stop --dir "$EMU_DIR" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

eval "$("$ROOT/emulator/acs-emulator" start --latency "$LATENCY")"
EMU_DIR=$ACS_EMULATOR_DIR
if [ "$EMU_WORKERS" != 1 ]; then # more emulator workers: rewrite its conf, reload
  sed -i "s/^worker_processes 1;/worker_processes $EMU_WORKERS;/" "$EMU_DIR/nginx.conf"
  kill -HUP "$(cat "$EMU_DIR/nginx.pid")"
  sleep 1
fi
# the request log grows ~600 bytes per request: keep it off the disk's way
: > "$ACS_EMULATOR_LOG"

# the baseline: nginx proxy_pass to the same upstream block, same bearer
# token, no Lua (the token is the emulator's public test token)
cat > "$WORK/baseline.conf" <<CONF
location /proxy/calls/ {
  rewrite ^/proxy/calls/(.*)\$ /calling/callConnections/\$1?api-version=2026-03-12 break;
  proxy_pass http://acscall;
  proxy_http_version 1.1;
  proxy_pass_request_headers off;
  proxy_set_header Host \$proxy_host;
  proxy_set_header Connection "";
  proxy_set_header Accept application/json;
  proxy_set_header Authorization "Bearer $ACS_TOKEN";
}
CONF

if [ "$AUTH" = hmac ]; then
  gw_env=(ACS_CONNECTION_STRING="$ACS_CONNECTION_STRING")
else
  gw_env=(ACS_CONNECTION_STRING= ACS_ENDPOINT="$ACS_ENDPOINT" ACS_TOKEN="$ACS_TOKEN")
fi
out=$(env "${gw_env[@]}" "$ROOT/examples/openresty/run" start --workers 1 --threads 32 --vm-pool 100 \
  --extra-conf "$WORK/baseline.conf" 2>"$WORK/start.err") || { cat "$WORK/start.err" >&2; exit 1; }
eval "$out"
EX_DIR=$ACSCALL_EXAMPLE_DIR
MASTER=$(cat "$EX_DIR/nginx.pid")
WORKER=$(pgrep -P "$MASTER" | head -n1)
EMU_WORKERS_PIDS=$(pgrep -P "$(cat "$EMU_DIR/nginx.pid")" | tr '\n' ' ')
# PIN=1: the gateway worker alone on the last core, the emulator and wrk on
# the others (the worker never shares its core with the load; its absolute
# CPU per request changes, the ratios stay comparable within a round)
WRK=(wrk)
if [ "${PIN:-0}" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  last=$(( $(nproc) - 1 ))
  taskset -pc "$last" "$WORKER" >/dev/null
  for p in $EMU_WORKERS_PIDS; do taskset -pc "0-$((last - 1))" "$p" >/dev/null; done
  WRK=(taskset -c "0-$((last - 1))" wrk)
fi

ticks() { # pid... -> utime+stime summed
  local t=0 p
  for p in "$@"; do
    t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$t"
}

url_for() {
  case $1 in
    event) echo "http://127.0.0.1:$ACSCALL_EXAMPLE_PORT/calls/$CALL" ;;
    first) echo "http://127.0.0.1:$ACSCALL_EXAMPLE_PORT/first/calls/$CALL" ;;
    thread) echo "http://127.0.0.1:$ACSCALL_EXAMPLE_PORT/thread/calls/$CALL" ;;
    proxy) echo "http://127.0.0.1:$ACSCALL_EXAMPLE_PORT/proxy/calls/$CALL" ;;
  esac
}

# wrk's latency "12.34ms" / "850.00us" / "1.20s" -> ms
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.1f", n }'; }

echo "# bench-openresty: $(date -u +%FT%TZ), $(nproc) cores, emulator latency ${LATENCY} ms," \
  "$EMU_WORKERS emulator worker(s), gateway: 1 worker, auth $AUTH, wrk -t2 ${DURATION}s per row"
echo "# nginx $(nginx -v 2>&1 | sed 's/.*\///'), lua-nginx-module $(dpkg-query -W -f='${Version}' libnginx-mod-http-lua 2>/dev/null)"
printf '%-5s %-5s %-7s %9s %9s %9s %9s %9s %8s %11s %9s\n' conns round path "req/s" "2xx/s" "p50 ms" "p99 ms" non2xx \
  sockerr "cpu us/req" "emu cpu%"
declare -A RPS CPU
for c in "${CONNS[@]}"; do
  for round in $(seq 1 "$ROUNDS"); do
  for path in $PATHS; do
    url=$(url_for "$path")
    "${WRK[@]}" -t2 -c"$c" -d1s "$url" >/dev/null 2>&1 || true # warm: pools, keep-alive
    sleep 0.5
    t0=$(ticks "$WORKER"); e0=$(ticks $EMU_WORKERS_PIDS); s0=$(date +%s.%N)
    res=$("${WRK[@]}" -t2 -c"$c" -d"${DURATION}s" --latency "$url" 2>&1)
    t1=$(ticks "$WORKER"); e1=$(ticks $EMU_WORKERS_PIDS); s1=$(date +%s.%N)
    : > "$ACS_EMULATOR_LOG"
    reqs=$(echo "$res" | awk '/requests in/ {print $1}')
    rps=$(echo "$res" | awk '/^Requests\/sec/ {printf "%.0f", $2}')
    p50=$(to_ms "$(echo "$res" | awk '$1 == "50%" {print $2}')")
    p99=$(to_ms "$(echo "$res" | awk '$1 == "99%" {print $2}')")
    non2xx=$(echo "$res" | awk '/Non-2xx/ {print $NF}'); non2xx=${non2xx:-0}
    sockerr=$(echo "$res" | awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}'); sockerr=${sockerr:-0}
    cpu=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="${reqs:-0}" 'BEGIN { if (n > 0) printf "%.1f", d / hz / n * 1e6; else print "-" }')
    emu=$(awk -v d=$((e1 - e0)) -v hz="$HZ" -v a="$s0" -v b="$s1" 'BEGIN { printf "%.0f", d / hz / (b - a) * 100 }')
    ok=$(awk -v n="${reqs:-0}" -v bad="$non2xx" -v r="$rps" \
      'BEGIN { if (r > 0 && n > 0) printf "%.0f", r * (n - bad) / n; else print 0 }')
    RPS[$c.$path.$round]=$ok CPU[$c.$path.$round]=$cpu
    printf '%-5s %-5s %-7s %9s %9s %9s %9s %9s %8s %11s %9s\n' "$c" "$round" "$path" "$rps" "$ok" "$p50" "$p99" \
      "$non2xx" "$sockerr" "$cpu" "$emu"
  done
  done
done

# the median of a list of numbers, then its min and max: "m [lo-hi]"
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END {
  m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f [%.2f-%.2f]", m, v[1], v[NR] }'; }

if [[ " $PATHS " == *" proxy "* ]]; then
  echo
  echo "# ratios to the proxy_pass baseline, each taken within a round, median [min-max] of $ROUNDS"
  echo "# (2xx/s: goal >= 0.9 at 256; cpu/req: goal <= 1.5; the thread path's cpu/req past its"
  echo "# capacity is mostly that of its fast 503s)"
  printf '%-5s %-7s %-20s %-20s\n' conns path "2xx/s x" "cpu/req x"
  for c in "${CONNS[@]}"; do
    for path in $PATHS; do
      [ "$path" = proxy ] && continue
      r2=() rc=()
      for round in $(seq 1 "$ROUNDS"); do
        r2+=("$(awk -v r="${RPS[$c.$path.$round]}" -v b="${RPS[$c.proxy.$round]}" \
          'BEGIN { if (b > 0) printf "%.4f", r / b }')")
        rc+=("$(awk -v u="${CPU[$c.$path.$round]}" -v b="${CPU[$c.proxy.$round]}" \
          'BEGIN { if (b > 0) printf "%.4f", u / b }')")
      done
      printf '%-5s %-7s %-20s %-20s\n' "$c" "$path" "$(echo "${r2[*]}" | median)" "$(echo "${rc[*]}" | median)"
    done
  done
fi
if grep -q "stack traceback" "$EX_DIR/error.log"; then
  echo "# error.log: $(grep -c 'stack traceback' "$EX_DIR/error.log") tracebacks"
fi
echo "# error.log: $(wc -c < "$EX_DIR/error.log") bytes"
