-- interleave.lua - the sequential comparison of `make bench`, measured like for like:
-- every client is one long-lived process (started once, warmed once), and the
-- driver asks each in turn for a short burst of calls, round after round, in an
-- order rotated per round. Ratios are taken within a round (both sides measured
-- seconds apart, on the same machine state) and reported as the median of the
-- per-round ratios with their min and max.
--   lua5.4 bench/interleave.lua run SCHEME ENDPOINT CA|- ROUNDS SCALE OUTDIR HAVE_JS
--       -> OUTDIR/seq-SCHEME.md (tables), OUTDIR/seq-SCHEME.tsv (ratios), raw lines
--          appended to OUTDIR/raw.txt. Reads OUTDIR/ir.txt ("Ir LABEL SCHEME PER_CALL").
-- Env: FLOOR (the built bench/floor.c), LUA (interpreter for the Lua clients).
local cmd = arg[1]
assert(cmd == "run", "usage: interleave.lua run SCHEME ENDPOINT CA|- ROUNDS SCALE OUTDIR HAVE_JS")
local scheme, ep, ca, rounds, scale, out, have_js =
  arg[2], arg[3], arg[4], tonumber(arg[5]), tonumber(arg[6]), arg[7], arg[8] == "1"
local FLOOR, LUA = assert(os.getenv("FLOOR"), "FLOOR="), os.getenv("LUA") or "lua5.4"
local ID = "18dea47f-b081-4107-9a5c-4300819d2c6c"
local here = arg[0]:match("^(.*)/[^/]*$") or "."
local https = scheme == "https"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function n_of(v) return math.max(1, math.floor(v * scale)) end

-- name, what the table calls it, command, calls per burst
local clients = {
  { "floor-raw", "floor, raw (libcurl: 2 headers, body discarded)",
    ("%s raw %s %s serve 20"):format(q(FLOOR), q(ep), q(ca)), 500 },
  { "fair-bearer", "fair floor, bearer (libcurl + request id + cjson.decode)",
    ("%s fair-bearer %s %s serve 20"):format(q(FLOOR), q(ep), q(ca)), 500 },
  { "fair-hmac", "fair floor, HMAC (libcurl + request id + HMAC signing + cjson.decode)",
    ("%s fair-hmac %s %s serve 20"):format(q(FLOOR), q(ep), q(ca)), 500 },
  { "acscall-bearer", "acscall get_call, bearer",
    ("%s %s/clients.lua acscall-bearer %s %s serve 20 %s"):format(LUA, q(here), q(ep), ID, q(ca)), 500 },
  { "acscall-hmac", "acscall get_call, HMAC",
    ("%s %s/clients.lua acscall-hmac %s %s serve 20 %s"):format(LUA, q(here), q(ep), ID, q(ca)), 500 },
  { "lua-keepalive", "Lua keep-alive (luasocket" .. (https and "+lua-sec" or "") .. ", by hand, cjson)",
    ("%s %s/clients.lua lua-keepalive %s %s serve 20 %s"):format(LUA, q(here), q(ep), ID, q(ca)), 500 },
  { "diy", https and "lua-sec ssl.https + cjson (connect per call)" or "luasocket socket.http + cjson (connect per call)",
    ("%s %s/clients.lua diy %s %s serve %d %s"):format(LUA, q(here), q(ep), ID, https and 2 or 20, q(ca)),
    https and 2 or 150 },
}
if have_js then
  clients[#clients + 1] = { "js", "JS SDK @azure/communication-call-automation (HMAC), warm",
    ("cd %s && NODE_EXTRA_CA_CERTS=%s node js-sdk.mjs %s %s serve %d"):format(q(here),
      q(ca == "-" and "" or ca), q(ep), ID, n_of(10000)), 200 }
end

-- start every client: FIFOs in, out; stderr to a file
local dir = out .. "/fifo-" .. scheme
os.execute("rm -rf " .. q(dir) .. " && mkdir -p " .. q(dir))
for _, c in ipairs(clients) do
  local base = dir .. "/" .. c[1]
  assert(os.execute(("mkfifo %s %s"):format(q(base .. ".in"), q(base .. ".out"))))
  assert(os.execute(("( %s ) <%s >%s 2>%s &"):format(c[3], q(base .. ".in"), q(base .. ".out"), q(base .. ".err"))))
  c.w = assert(io.open(base .. ".in", "w"))
  c.r = assert(io.open(base .. ".out", "r"))
  c.wall, c.cpu = {}, {}
end

local raw = assert(io.open(out .. "/raw.txt", "a"))
local function field(line, name) return tonumber(line:match(" " .. name .. "=([%d%.]+)")) end
for r = 1, rounds do
  for k = 0, #clients - 1 do
    local c = clients[(k + r) % #clients + 1]
    c.w:write(n_of(c[4]), "\n")
    c.w:flush()
    local line = c.r:read("l")
    if not line or not line:find("^RESULT") then
      local e = io.open(dir .. "/" .. c[1] .. ".err")
      error(("client %s (%s) failed: %s\n%s"):format(c[1], scheme, tostring(line), e and e:read("a") or ""))
    end
    raw:write(("seq %s %s round=%d %s\n"):format(scheme, c[1], r, line))
    c.wall[r], c.cpu[r] = field(line, "wall_us"), field(line, "cpu_us")
  end
end
raw:close()
for _, c in ipairs(clients) do c.w:close(); c.r:close() end
local byname = {}
for _, c in ipairs(clients) do byname[c[1]] = c end
local function err_of(name) local f = io.open(dir .. "/" .. name .. ".err"); local s = f and f:read("a") or ""; if f then f:close() end; return s end

-- statistics
local function sorted(t) local s = {} for i, v in ipairs(t) do s[i] = v end table.sort(s) return s end
local function median(t) local s = sorted(t) return s[(#s + 1) // 2] end
local function ratios(a, b, what) -- per-round a/b
  local t = {}
  for r = 1, rounds do t[r] = byname[a][what][r] / byname[b][what][r] end
  local s = sorted(t)
  return median(t), s[1], s[#s]
end
local ir = {}
do
  local f = io.open(out .. "/ir.txt")
  if f then
    for line in f:lines() do
      local label, sch, v = line:match("^Ir (%S+) (%S+) (%d+)")
      if label and sch == scheme then ir[label] = tonumber(v) end
    end
    f:close()
  end
end
local function fmt(v) return v and string.format("%.2f", v) or "-" end
local function commas(v)
  if not v then return "-" end
  local s = tostring(math.floor(v + 0.5))
  return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end

local md = {}
local function p(...) md[#md + 1] = table.concat({ ... }) end
p(("### %s, static nginx: %d interleaved rounds (median per client; ratios: median of per-round ratios [min–max])"):format(scheme, rounds))
p("")
p("| client | calls/burst | wall µs/call | CPU µs/call | Ir/call (callgrind) | wall × fair floor | CPU × fair floor |")
p("|---|---:|---:|---:|---:|---:|---:|")
local function ref_of(name)
  if name:find("hmac") or name == "js" then return "fair-hmac" end
  return "fair-bearer"
end
for _, c in ipairs(clients) do
  local ref = ref_of(c[1])
  local wm, wl, wh = ratios(c[1], ref, "wall")
  local cm, cl, ch = ratios(c[1], ref, "cpu")
  p(("| %s | %d | %s | %s | %s | %s [%s–%s] | %s [%s–%s] |"):format(c[2], n_of(c[4]), fmt(median(c.wall)), fmt(median(c.cpu)),
    commas(ir[c[1]]), fmt(wm), fmt(wl), fmt(wh), fmt(cm), fmt(cl), fmt(ch)))
end
p("")
p("(× fair floor: against fair-hmac for HMAC clients and the JS SDK, fair-bearer for the rest.)")
if have_js then
  local w = err_of("js"):match("WARM [^\n]*")
  if w then p("JS SDK warm-up (stderr of the process): `" .. w .. "`") end
end
p("")

local tsv = assert(io.open(out .. "/seq-" .. scheme .. ".tsv", "w"))
local pairs_ = {
  { "acscall-hmac", "fair-hmac" }, { "acscall-bearer", "fair-bearer" },
  { "fair-hmac", "floor-raw" }, { "fair-bearer", "floor-raw" },
  { "acscall-hmac", "lua-keepalive" }, { "acscall-bearer", "lua-keepalive" },
  { "diy", "acscall-bearer" }, { "js", "acscall-hmac" },
}
p(("| %s: ratio | wall: median [min–max] | CPU: median [min–max] | Ir |"):format(scheme))
p("|---|---:|---:|---:|")
for _, pr in ipairs(pairs_) do
  local a, b = pr[1], pr[2]
  if byname[a] and byname[b] then
    local wm, wl, wh = ratios(a, b, "wall")
    local cm, cl, ch = ratios(a, b, "cpu")
    local irr = ir[a] and ir[b] and ir[a] / ir[b] or nil
    p(("| %s / %s | %s [%s–%s] | %s [%s–%s] | %s |"):format(a, b, fmt(wm), fmt(wl), fmt(wh), fmt(cm), fmt(cl), fmt(ch), fmt(irr)))
    tsv:write(("%s\t%s\t%s\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t%s\n"):format(scheme, a, b, wm, wl, wh, cm, cl, ch,
      irr and ("%.4f"):format(irr) or "-"))
  end
end
tsv:close()
p("")
local f = assert(io.open(out .. "/seq-" .. scheme .. ".md", "w"))
f:write(table.concat(md, "\n"), "\n")
f:close()
os.execute("rm -rf " .. q(dir))
