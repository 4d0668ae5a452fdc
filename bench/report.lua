-- report.lua - the table of `make bench` from the files run.sh left in OUT:
--   lua5.4 bench/report.lua OUT LATENCY_MS  > OUT/table.md
-- seq-{http,https}.md/.tsv (interleave.lua), ir.txt, decode.txt, batch.txt.
local out, lat = arg[1], tonumber(arg[2])
local function slurp(f) local h = io.open(f); if not h then return nil end; local s = h:read("a"); h:close(); return s end
local function lines(f) local s = slurp(f) or ""; local t = {}; for l in s:gmatch("[^\n]+") do t[#t + 1] = l end; return t end
local function field(line, name) return tonumber(line:match("[ ]" .. name .. "=([%d%.]+)")) end
local function sorted(t) local s = {}; for i, v in ipairs(t) do s[i] = v end; table.sort(s); return s end
local function med(t) local s = sorted(t); return s[(#s + 1) // 2], s[1], s[#s] end
local function f2(v) return v and string.format("%.2f", v) or "-" end
local function commas(v)
  if not v then return "-" end
  local s = tostring(math.floor(v + 0.5))
  return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end
local function verdict(v, op, t)
  if not v then return "n/a" end
  if (op == "<=" and v <= t) or (op == ">=" and v >= t) then return "met" end
  return "**missed**"
end

print("## Sequential get_call (static nginx)")
print("")
for _, scheme in ipairs { "http", "https" } do
  print(slurp(out .. "/seq-" .. scheme .. ".md") or ("(no " .. scheme .. " results)\n"))
end

-- ratios from the interleaved runs: R[scheme][a.."/"..b] = {wall = {m, lo, hi}, cpu = {...}, ir = x}
local R = {}
for _, scheme in ipairs { "http", "https" } do
  R[scheme] = {}
  for _, l in ipairs(lines(out .. "/seq-" .. scheme .. ".tsv")) do
    local t = {}
    for v in l:gmatch("[^\t]+") do t[#t + 1] = v end
    R[scheme][t[2] .. "/" .. t[3]] = { wall = { tonumber(t[4]), tonumber(t[5]), tonumber(t[6]) },
      cpu = { tonumber(t[7]), tonumber(t[8]), tonumber(t[9]) }, ir = tonumber(t[10]) }
  end
end
local IR = {}
for _, l in ipairs(lines(out .. "/ir.txt")) do
  local label, scheme, v = l:match("^Ir (%S+) (%S+) (%d+)")
  if label then IR[scheme .. "/" .. label] = tonumber(v) end
end

-- decode
print("## Decode alone: acscall.decode(200, body) vs cjson.decode(body)")
print("")
print("| body | acscall.decode µs | cjson.decode µs | wall ×: median [min–max] of per-round ratios | acscall Ir | cjson Ir | Ir × |")
print("|---|---:|---:|---:|---:|---:|---:|")
local D, DIR = {}, {}
for _, l in ipairs(lines(out .. "/decode.txt")) do
  local file = l:match("file=(%S+)")
  if file then
    local b = file:find("^large") and "large" or file:find("no%-rawid") and "noraw" or "seed"
    D[b] = l
  end
  local fn, b, v = l:match("^Ir decode (%S+) (%S+) (%d+)")
  if fn then DIR[b .. "/" .. fn] = tonumber(v) end
end
local names = { seed = "seed (761 B)", noraw = "identifiers without rawId/kind", large = "200 targets (34 KB)" }
local DR = {}
for _, b in ipairs { "seed", "noraw", "large" } do
  local l = D[b] or ""
  local a, c = DIR[b .. "/acscall"], DIR[b .. "/cjson"]
  DR[b] = a and c and a / c or nil
  print(("| %s | %s | %s | %s [%s–%s] | %s | %s | %s |"):format(names[b], f2(field(l, "acscall_us")), f2(field(l, "cjson_us")),
    f2(field(l, "ratio")), f2(field(l, "min")), f2(field(l, "max")), commas(a), commas(c), f2(DR[b])))
end
print("")

-- batch
print(("## Batch: get_calls against the fair floor (C, libcurl multi, same headers, HMAC, cjson), emulator latency %d ms"):format(lat))
print("")
print("| concurrency | client | rounds | wall s (median) | × ideal | CPU µs/id (median) | ok |")
print("|---:|---|---:|---:|---:|---:|---:|")
local B = {}
local n
for _, l in ipairs(lines(out .. "/batch.txt")) do
  local who, round = l:match("who=(%S+) round=(%d+)")
  local conc = field(l, "conc")
  if who and conc then
    n = field(l, "n")
    local k = conc .. "/" .. who
    B[k] = B[k] or { wall = {}, cpu = {}, ok = {} }
    B[k].wall[tonumber(round)] = field(l, "wall_s")
    B[k].cpu[tonumber(round)] = field(l, "cpu_us_per_id")
    B[k].ok[#B[k].ok + 1] = field(l, "ok")
  end
end
local BX = {}
for _, conc in ipairs { 64, 256 } do
  local ideal = n and n / conc * lat / 1000
  for _, who in ipairs { "acscall", "floor" } do
    local b = B[conc .. "/" .. who]
    if b then
      local w, c = med(b.wall), med(b.cpu)
      BX[conc .. "/" .. who] = { x = ideal and w / ideal, cpu = c }
      print(("| %d | %s | %d | %.3f | %s | %s | %s/%d each |"):format(conc,
        who == "acscall" and "acscall get_calls" or "fair floor (floor.c batch)", #b.wall, w, f2(ideal and w / ideal),
        f2(c), table.concat(b.ok, ","), n))
    end
  end
  local a, f = B[conc .. "/acscall"], B[conc .. "/floor"]
  if a and f then
    local rw, rc = {}, {}
    for r = 1, #a.wall do
      if f.wall[r] then rw[#rw + 1] = a.wall[r] / f.wall[r]; rc[#rc + 1] = a.cpu[r] / f.cpu[r] end
    end
    local wm, wl, wh = med(rw)
    local cm, cl, ch = med(rc)
    BX[conc .. "/ratio"] = { wall = wm, cpu = cm }
    print(("| %d | acscall / fair floor, per round | | wall %s [%s–%s] | | CPU %s [%s–%s] | |"):format(conc,
      f2(wm), f2(wl), f2(wh), f2(cm), f2(cl), f2(ch)))
  end
end
print(("\n(ideal = ids / concurrency × %d ms)\n"):format(lat))

-- goals
print("## Targets (this run)")
print("")
print("| target | measured | verdict |")
print("|---|---:|---|")
for _, scheme in ipairs { "http", "https" } do
  for _, p in ipairs { { "acscall-hmac", "fair-hmac" }, { "acscall-bearer", "fair-bearer" } } do
    local r = R[scheme][p[1] .. "/" .. p[2]]
    if r then
      print(("| %s %s / %s ≤ 1.03 in instructions | %s | %s |"):format(scheme, p[1], p[2], f2(r.ir), verdict(r.ir, "<=", 1.03)))
      print(("| %s %s / %s ≤ 1.05 in wall (median [min–max]) | %s [%s–%s] | %s |"):format(scheme, p[1], p[2],
        f2(r.wall[1]), f2(r.wall[2]), f2(r.wall[3]), verdict(r.wall[1], "<=", 1.05)))
    end
  end
end
local hir = IR["http/acscall-hmac"]
print(("| instructions per HMAC get_call ≤ 170k (http) | %s | %s |"):format(commas(hir), verdict(hir, "<=", 170000)))
for _, scheme in ipairs { "http", "https" } do
  local r = R[scheme]["acscall-hmac/lua-keepalive"]
  if r then
    print(("| %s acscall-hmac wall ≤ 1.3 × Lua keep-alive's | %s [%s–%s] | %s |"):format(scheme, f2(r.wall[1]), f2(r.wall[2]),
      f2(r.wall[3]), verdict(r.wall[1], "<=", 1.3)))
  end
end
for _, t in ipairs { { "seed", 1.15 }, { "noraw", 1.15 }, { "large", 1.10 } } do
  print(("| acscall.decode / cjson.decode ≤ %.2f in instructions (%s) | %s | %s |"):format(t[2], names[t[1]], f2(DR[t[1]]),
    verdict(DR[t[1]], "<=", t[2])))
end
for _, scheme in ipairs { "http", "https" } do
  local r = R[scheme]["js/acscall-hmac"]
  if r then
    print(("| %s warm JS SDK / acscall-hmac ≥ 3.0 in wall | %s [%s–%s] | %s |"):format(scheme, f2(r.wall[1]), f2(r.wall[2]),
      f2(r.wall[3]), verdict(r.wall[1], ">=", 3.0)))
    print(("| %s warm JS SDK / acscall-hmac ≥ 5 in CPU | %s [%s–%s] | %s |"):format(scheme, f2(r.cpu[1]), f2(r.cpu[2]),
      f2(r.cpu[3]), verdict(r.cpu[1], ">=", 5)))
  end
end
for _, t in ipairs { { 64, 1.3 }, { 256, 1.6 } } do
  local a, f = BX[t[1] .. "/acscall"], BX[t[1] .. "/floor"]
  if a then
    print(("| batch %d in flight ≤ %.1f× ideal | %.3f (fair floor %s) | %s |"):format(t[1], t[2], a.x,
      f and ("%.3f"):format(f.x) or "-", verdict(a.x, "<=", t[2])))
    print(("| batch %d in flight: CPU per id ≤ 30 µs | %s (fair floor %s; acscall/floor %s) | %s |"):format(t[1], f2(a.cpu),
      f2(f and f.cpu), f2(BX[t[1] .. "/ratio"] and BX[t[1] .. "/ratio"].cpu), verdict(a.cpu, "<=", 30)))
  end
end
print("")
local h = io.popen("nproc; sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1; uname -r; date -u +%Y-%m-%dT%H:%MZ")
local m = {}
for l in h:lines() do m[#m + 1] = l end
h:close()
print(("Machine: %s cores, %s, Linux %s; %s"):format(m[1], m[2], m[3], m[4]))
