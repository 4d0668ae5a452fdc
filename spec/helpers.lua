-- spec/helpers.lua: shared test helpers for acscall specs (Lua 5.1-5.4, no globals).
--   local helpers = require "spec.helpers"
--   local e = helpers.start_emulator{ tls = true, latency = 20 }
--   ... e.endpoint, e.connection_string, e.access_key, e.token, e.ca_file, e.dir, e.log_path, e.port
--   e:log(), e:last_request(), e:clear_log(), e:stop()
--   identity side: e.imds_endpoint, e.identity_endpoint, e.identity_header, e.authority_host,
--   e.client_secret, e.token_ttl; e:token_requests{...}, e:calls{...}; helpers.fingerprint(s)
local cjson = require "cjson.safe"

-- The suite names real addresses (IMDS, a token authority, ACS hosts) to
-- prove they are refused: that proof holds only with the core's net on.
-- `make test*` sets it; a spec run any other way stops here, before a packet.
if os.getenv("ACSCALL_LOOPBACK_ONLY") ~= "1" then
  error("spec/helpers.lua: run the specs with ACSCALL_LOOPBACK_ONLY=1 (make test sets it; "
    .. "by hand: ACSCALL_LOOPBACK_ONLY=1 lua5.4 /usr/bin/busted ...)", 2)
end

local helpers = {}

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
helpers.shell_quote = shell_quote

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
helpers.read_file = read_file

-- the repository root: the directory above the one holding this file
function helpers.repo_root()
  local src = debug.getinfo(1, "S").source
  local dir = src:match("^@(.*)/spec/helpers%.lua$")
  local cwd = os.getenv("PWD")
  if not cwd then
    local p = io.popen("pwd")
    cwd = p:read("*l")
    p:close()
  end
  if not dir or dir == "" or dir == "." then return cwd end
  if dir:sub(1, 1) ~= "/" then dir = cwd .. "/" .. dir:gsub("^%./", "") end
  return dir
end

helpers.emulator_cmd = helpers.repo_root() .. "/emulator/acs-emulator"

-- run a command, returning its stdout and whether it exited 0 (works on Lua 5.1 too)
local function run(cmd)
  local p = assert(io.popen(cmd .. "; echo \"__rc=$?\""))
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  out = out:gsub("__rc=%d+%s*$", "")
  return out, rc == 0, rc
end
helpers.run = run

-- The command that runs Lua source in the interpreter running this suite,
-- and the script file it reads (remove it after).
local function lua_command(source)
  local lua = rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(source)
  f:close()
  return helpers.child_lua(lua) .. " " .. shell_quote(script), script
end

--- The command that runs the interpreter `lua` for a child script: under
-- `make test-asan` with the ASan runtime preloaded again (the suite's own
-- LD_PRELOAD is removed for child processes); under
-- `make test-valgrind-lifetime` inside valgrind (ACSCALL_CHILD_WRAPPER).
function helpers.child_lua(lua)
  local asan = os.getenv("ACSCALL_ASAN_PRELOAD")
  local env = asan and ("env LD_PRELOAD=" .. shell_quote(asan) .. " ") or ""
  local wrap = os.getenv("ACSCALL_CHILD_WRAPPER")
  return env .. (wrap and (wrap .. " ") or "") .. lua
end

--- How much slower child scripts run than natively (valgrind: several
-- times); specs that time a child scale their waits and bounds by it.
helpers.slow = tonumber(os.getenv("ACSCALL_SLOW") or "") or 1

--- Run Lua source in its own interpreter (the one running this suite), as a
-- user's script would run; `prefix` goes before the command (e.g. a timeout).
-- Under `make test-asan` the ASan runtime is preloaded again for it (the
-- suite's own LD_PRELOAD is removed for child processes).
-- Returns output (stdout and stderr), ok, exit code, wall seconds.
function helpers.run_lua(source, prefix)
  local cmd, script = lua_command(source)
  local t0 = require("socket").gettime()
  local out, ok, rc = run((prefix or "") .. " " .. cmd .. " 2>&1")
  local wall = require("socket").gettime() - t0
  os.remove(script)
  return out, ok, rc, wall
end

---------------------------------------------------------------------------------------------------
-- Background processes, for signal specs: the process is the command itself
-- (sh execs it), so a signal reaches it and nothing else. (`timeout -s INT`
-- would also signal its whole process group: lua.c resets its SIGINT handler
-- after the first one, and a second kills the interpreter.)

local Process = {}
Process.__index = Process

--- Start a shell command in the background, stdin /dev/null, stdout and
-- stderr to files. Returns a Process: pid, out/err paths, :kill(sig),
-- :wait(limit) -> exit code, :output() -> stdout, stderr, :waiting(), :cleanup().
function helpers.spawn(cmd)
  local p = setmetatable({out = os.tmpname(), err = os.tmpname(), script = os.tmpname(),
    pidfile = os.tmpname(), rcfile = os.tmpname()}, Process)
  os.remove(p.rcfile)
  local f = assert(io.open(p.script, "w"))
  f:write("echo $$ >", shell_quote(p.pidfile), "\nexec ", cmd, " </dev/null >", shell_quote(p.out),
    " 2>", shell_quote(p.err), "\n")
  f:close()
  os.execute("(sh " .. shell_quote(p.script) .. "; echo $? >" .. shell_quote(p.rcfile .. ".tmp")
    .. " && mv " .. shell_quote(p.rcfile .. ".tmp") .. " " .. shell_quote(p.rcfile) .. ") 2>/dev/null &")
  local t0 = helpers.now()
  while not p.pid do
    p.pid = tonumber((read_file(p.pidfile) or ""):match("%d+"))
    if not p.pid then
      if helpers.now() - t0 > 10 then error("spawn: no pid after 10 s: " .. cmd, 2) end
      helpers.sleep(0.01)
    end
  end
  return p
end

--- Run Lua source in the background, in its own interpreter (as run_lua).
function helpers.spawn_lua(source)
  local cmd, script = lua_command(source)
  local p = helpers.spawn(cmd)
  p.lua_script = script
  return p
end

--- Exactly one signal, to this process only.
function Process:kill(sig)
  assert(os.execute("kill -" .. (sig or "TERM") .. " " .. self.pid .. " 2>/dev/null"))
end

--- What the process is blocked in (the kernel's wchan), "" while it runs.
function Process:wchan()
  local w = read_file("/proc/" .. self.pid .. "/wchan") or ""
  return w == "0" and "" or w
end

--- True while the process sleeps in a timed wait: nanosleep (a retry wait,
-- a CLI interval) or poll (a transfer, libcurl multi's wait).
function Process:waiting()
  local w = self:wchan()
  return w:find("nanosleep", 1, true) ~= nil or w:find("poll", 1, true) ~= nil
end

--- Ctrl-C: one SIGINT to it, then wait for its end. Returns the exit code
-- (nil if still running after limit seconds) and the seconds it took.
function Process:interrupt(limit)
  local t0 = helpers.now()
  self:kill("INT")
  local rc = self:wait(limit)
  return rc, helpers.now() - t0
end

--- Exit code once the process ended (nil after limit seconds).
function Process:wait(limit)
  local t0 = helpers.now()
  while true do
    local rc = tonumber((read_file(self.rcfile) or ""):match("%d+"))
    if rc then return rc end
    if helpers.now() - t0 > (limit or 10) then return nil end
    helpers.sleep(0.01)
  end
end

function Process:output()
  return read_file(self.out) or "", read_file(self.err) or ""
end

--- Kill it if still running (KILL, to the process only) and remove its files.
function Process:cleanup()
  if not read_file(self.rcfile) then
    self:kill("KILL")
    self:wait(5)
  end
  for _, path in ipairs{self.out, self.err, self.script, self.pidfile, self.rcfile, self.lua_script} do
    os.remove(path)
  end
end

--- Poll fn every 10 ms until it returns true; false after limit seconds.
function helpers.wait_until(fn, limit)
  local t0 = helpers.now()
  while not fn() do
    if helpers.now() - t0 > (limit or 10) then return false end
    helpers.sleep(0.01)
  end
  return true
end

local Emulator = {}
Emulator.__index = Emulator

-- parse the KEY=value lines acs-emulator prints (values may be single-quoted)
function helpers.parse_env(out)
  local env = {}
  for k, v in out:gmatch("([A-Z_][A-Z0-9_]*)=([^\n]*)") do
    v = v:match("^'(.*)'$") or v
    env[k] = v
  end
  return env
end

--- Start an emulator. opts: tls, latency (ms), port, fixtures (dir), access_key, token, dir,
-- token_ttl (s), client_secret, identity_header, client_certificate (a PEM file);
-- scenarios (and rename): serve a private copy of the fixtures with these
-- fault calls added (helpers.fault_fixtures), removed again by :stop().
function helpers.start_emulator(opts)
  opts = opts or {}
  if opts.scenarios then
    local copy = {}
    for k, v in pairs(opts) do copy[k] = v end
    copy.scenarios = nil
    copy.fixtures = helpers.fault_fixtures(opts.scenarios, opts.rename)
    local ok, e = pcall(helpers.start_emulator, copy)
    if not ok then
      helpers.remove_dir(copy.fixtures)
      error(e, 2)
    end
    e.own_fixtures = copy.fixtures
    return e
  end
  local args = { shell_quote(helpers.emulator_cmd), "start" }
  if opts.tls then args[#args + 1] = "--tls" end
  if opts.latency then args[#args + 1] = "--latency " .. shell_quote(opts.latency) end
  if opts.port then args[#args + 1] = "--port " .. shell_quote(opts.port) end
  if opts.fixtures then args[#args + 1] = "--fixtures " .. shell_quote(opts.fixtures) end
  if opts.access_key then args[#args + 1] = "--access-key " .. shell_quote(opts.access_key) end
  if opts.token then args[#args + 1] = "--token " .. shell_quote(opts.token) end
  if opts.dir then args[#args + 1] = "--dir " .. shell_quote(opts.dir) end
  if opts.token_ttl then args[#args + 1] = "--token-ttl " .. shell_quote(opts.token_ttl) end
  if opts.client_secret then args[#args + 1] = "--client-secret " .. shell_quote(opts.client_secret) end
  if opts.identity_header then args[#args + 1] = "--identity-header " .. shell_quote(opts.identity_header) end
  if opts.client_certificate then args[#args + 1] = "--client-certificate " .. shell_quote(opts.client_certificate) end
  local errfile = os.tmpname()
  local out, ok, rc = run(table.concat(args, " ") .. " 2>" .. shell_quote(errfile))
  local err = read_file(errfile) or ""
  os.remove(errfile)
  local env = helpers.parse_env(out)
  if not ok or not env.ACS_ENDPOINT then
    error("acs-emulator start failed (exit " .. tostring(rc) .. "): " .. err .. out, 2)
  end
  local e = setmetatable({
    env = env,
    dir = env.ACS_EMULATOR_DIR,
    endpoint = env.ACS_ENDPOINT,
    connection_string = env.ACS_CONNECTION_STRING,
    access_key = env.ACS_ACCESS_KEY,
    token = env.ACS_TOKEN,
    log_path = env.ACS_EMULATOR_LOG,
    ca_file = env.ACS_CA_FILE,
    tls = env.ACS_CA_FILE ~= nil,
  }, Emulator)
  e.port = tonumber(e.endpoint:match(":(%d+)/$"))
  e.host = "127.0.0.1:" .. e.port
  -- the identity side, all on the same port (emulator/README.md "Identity")
  local base = e.endpoint:gsub("/$", "")
  e.imds_endpoint = base                    -- managed_identity{endpoint} / AZURE_POD_IDENTITY_AUTHORITY_HOST
  e.identity_endpoint = base .. "/msi/token" -- IDENTITY_ENDPOINT (App Service)
  e.identity_header = opts.identity_header or "emulator-identity-header" -- IDENTITY_HEADER
  e.authority_host = base                   -- AZURE_AUTHORITY_HOST: POST <it>/<tenant>/oauth2/v2.0/token
  e.client_secret = opts.client_secret or "emulator-client-secret"
  e.token_ttl = tonumber(opts.token_ttl) or 3600
  e.pid = tonumber((read_file(e.dir .. "/nginx.pid") or ""):match("%d+"))
  return e
end

--- Stop the emulator (idempotent). Returns true when the stop command succeeded.
function Emulator:stop()
  if self.stopped then return true end
  self.stopped = true
  local _, ok = run(shell_quote(helpers.emulator_cmd) .. " stop --dir " .. shell_quote(self.dir) .. " 2>&1")
  helpers.remove_dir(self.own_fixtures)
  return ok
end

--- Decoded request-log entries, oldest first.
function Emulator:log()
  local entries = {}
  local s = read_file(self.log_path) or ""
  for line in s:gmatch("[^\n]+") do
    local v = cjson.decode(line)
    if v then entries[#entries + 1] = v end
  end
  return entries
end

Emulator.log_entries = Emulator.log

local function matches(entry, filter)
  for k, v in pairs(filter) do
    if entry[k] ~= v then return false end
  end
  return true
end

--- The token requests in the log (entries with an `identity` object), oldest first.
-- filter (all optional): endpoint ("imds" | "app_service" | "oauth2"), path_prefix (e.g.
-- "/my-tenant/"), client_id, tenant, status, auth, fault.
function Emulator:token_requests(filter)
  filter = filter or {}
  local list = {}
  for _, r in ipairs(self:log()) do
    local id = r.identity
    if type(id) == "table"
      and (filter.endpoint == nil or id.endpoint == filter.endpoint)
      and (filter.client_id == nil or id.client_id == filter.client_id)
      and (filter.tenant == nil or id.tenant == filter.tenant)
      and (filter.path_prefix == nil or r.path:sub(1, #filter.path_prefix) == filter.path_prefix)
      and matches(r, { status = filter.status, auth = filter.auth, fault = filter.fault }) then
      list[#list + 1] = r
    end
  end
  return list
end

--- The Get Call requests in the log, oldest first. filter (all optional): id, status, auth
-- ("hmac" | "bearer" | "issued" | "fail:..."), token_fp (helpers.fingerprint of the bearer token).
function Emulator:calls(filter)
  local list = {}
  for _, r in ipairs(self:log()) do
    if r.route == "call" and matches(r, filter or {}) then list[#list + 1] = r end
  end
  return list
end

function Emulator:last_request()
  local l = self:log()
  return l[#l]
end

--- Truncate the request log (nginx appends with O_APPEND, so it keeps writing at the new end).
function Emulator:clear_log()
  local f = assert(io.open(self.log_path, "w"))
  f:close()
end

--- URL of a call (id is percent-encoded like JS encodeURIComponent).
function helpers.encode_id(id)
  return (tostring(id):gsub("[^%w%-_%.!~%*'%(%)]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

function Emulator:call_path(id, api_version)
  return "/calling/callConnections/" .. helpers.encode_id(id)
    .. (api_version == false and "" or ("?api-version=" .. (api_version or "2026-03-12")))
end

function Emulator:url(path_and_query)
  return self.endpoint:gsub("/$", "") .. path_and_query
end

---------------------------------------------------------------------------------------------------
-- signing, independent of the emulator's and the client's code (luaossl + luasocket's mime)
function helpers.b64encode(s) return (require("mime").b64(s)) or "" end
function helpers.b64decode(s) return (require("mime").unb64(s)) or "" end

function helpers.sha256_b64(body)
  return helpers.b64encode(require("openssl.digest").new("sha256"):final(body or ""))
end

function helpers.http_date(t)
  return os.date("!%a, %d %b %Y %H:%M:%S GMT", t or os.time())
end

--- HMAC headers for a request. opts: key (base64), method, path (path and query as sent),
--- host, date (string; default now), body, content_hash (override).
function helpers.hmac_headers(opts)
  local date = opts.date or helpers.http_date()
  local chash = opts.content_hash or helpers.sha256_b64(opts.body or "")
  local sts = (opts.method or "GET") .. "\n" .. opts.path .. "\n" .. date .. ";" .. opts.host .. ";" .. chash
  local sig = helpers.b64encode(require("openssl.hmac").new(helpers.b64decode(opts.key), "sha256"):final(sts))
  return {
    ["x-ms-date"] = date,
    ["x-ms-content-sha256"] = chash,
    ["authorization"] = "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=" .. sig,
  }
end

--- The request log's fingerprint of a secret value (token_fp, assertion_fp): the first 12 hex
-- digits of its SHA-256, computed here independently of the emulator.
function helpers.fingerprint(s)
  return (require("openssl.digest").new("sha256"):final(s):sub(1, 6):gsub(".", function(c)
    return string.format("%02x", c:byte())
  end))
end

function Emulator:signed_headers(path, extra)
  local h = helpers.hmac_headers({ key = self.access_key, path = path, host = self.host })
  for k, v in pairs(extra or {}) do h[k:lower()] = v end
  return h
end

function Emulator:bearer_headers(extra)
  local h = { authorization = "Bearer " .. self.token }
  for k, v in pairs(extra or {}) do h[k:lower()] = v end
  return h
end

---------------------------------------------------------------------------------------------------
-- plain HTTP

--- GET url with headers via luasocket. Returns status, body, headers (lowercased), or nil, err.
function helpers.http_get(url, headers, timeout)
  local http = require "socket.http"
  local ltn12 = require "ltn12"
  local chunks = {}
  local old = http.TIMEOUT
  http.TIMEOUT = timeout or 5
  local ok, status, rheaders = http.request({
    url = url, method = "GET", headers = headers or {}, sink = ltn12.sink.table(chunks), redirect = false,
  })
  http.TIMEOUT = old
  if not ok then return nil, status end
  return status, table.concat(chunks), rheaders
end

--- A JSON body decoded; an assertion error (quoting the body's start) when it is not JSON.
function helpers.decode_json(body)
  local v, err = cjson.decode(body)
  assert(v ~= nil, "invalid JSON: " .. tostring(err) .. ": " .. tostring(body):sub(1, 200))
  return v
end

--- x-www-form-urlencoded body of a table (keys sorted; values percent-encoded).
function helpers.form_encode(t)
  local keys, parts = {}, {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    parts[#parts + 1] = helpers.encode_id(k) .. "=" .. helpers.encode_id(t[k])
  end
  return table.concat(parts, "&")
end

--- POST url with a body (a table: sent form-encoded) via luasocket. Returns status, body,
-- headers (lowercased), or nil, err.
function helpers.http_post(url, body, headers, timeout)
  local http = require "socket.http"
  local ltn12 = require "ltn12"
  local h = { ["content-type"] = "application/x-www-form-urlencoded" }
  for k, v in pairs(headers or {}) do h[k:lower()] = v end
  if type(body) == "table" then body = helpers.form_encode(body) end
  h["content-length"] = tostring(#body)
  local chunks = {}
  local old = http.TIMEOUT
  http.TIMEOUT = timeout or 5
  local ok, status, rheaders = http.request({
    url = url, method = "POST", headers = h, source = ltn12.source.string(body),
    sink = ltn12.sink.table(chunks), redirect = false,
  })
  http.TIMEOUT = old
  if not ok then return nil, status end
  return status, table.concat(chunks), rheaders
end

function Emulator:post(path, body, headers, timeout)
  return helpers.http_post(self:url(path), body, headers, timeout)
end

function Emulator:get(path_and_query, headers, timeout)
  return helpers.http_get(self:url(path_and_query), headers, timeout)
end

--- Send a raw request over TCP; read until close/timeout. Returns data, err ("timeout", "closed").
function helpers.raw_request(port, request, timeout)
  local socket = require "socket"
  local c = assert(socket.tcp())
  c:settimeout(timeout or 5)
  local ok, err = c:connect("127.0.0.1", port)
  if not ok then return nil, err end
  c:send(request)
  local data, rerr, partial = c:receive("*a")
  c:close()
  if data then return data, "closed" end
  return partial, rerr
end

--- true when something accepts TCP connections on 127.0.0.1:port
function helpers.port_open(port)
  local socket = require "socket"
  local c = socket.tcp()
  c:settimeout(1)
  local ok = c:connect("127.0.0.1", port)
  c:close()
  return ok ~= nil
end

function helpers.pid_alive(pid)
  if not pid then return false end
  local s = read_file("/proc/" .. pid .. "/stat")
  if not s then return false end
  return not s:match("^%d+ %b() Z") -- a zombie is gone for our purposes
end

function helpers.fixtures_dir()
  return helpers.repo_root() .. "/emulator/fixtures"
end

--- A private fixtures directory (remove it with helpers.remove_dir): a copy of
-- every fixture, plus one call per scenario, `scenarios[id] = sidecar`, each
-- a copy of the REST page's sample call 18dea47f-... (its callConnectionId changed to id when rename).
function helpers.fault_fixtures(scenarios, rename)
  local seed_id = "18dea47f-b081-4107-9a5c-4300819d2c6c"
  local dir = os.tmpname()
  os.remove(dir)
  assert(run("mkdir -p " .. shell_quote(dir) .. " && cp " .. shell_quote(helpers.fixtures_dir()) .. "/*.json "
    .. shell_quote(dir) .. "/"))
  local seed = read_file(helpers.fixtures_dir() .. "/" .. seed_id .. ".json")
  local function write(path, s)
    local f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
  end
  for id, meta in pairs(scenarios) do
    write(dir .. "/" .. id .. ".json", rename and (seed:gsub(seed_id:gsub("%-", "%%-"), id)) or seed)
    write(dir .. "/" .. id .. ".meta.json", cjson.encode(meta))
  end
  return dir
end

function helpers.remove_dir(dir)
  if dir then run("rm -rf " .. shell_quote(dir)) end
end

--- fixture ids (file names without .json, excluding .meta.json sidecars), sorted
function helpers.fixture_ids(dir)
  dir = dir or helpers.fixtures_dir()
  local out = run("ls -1 " .. shell_quote(dir))
  local ids = {}
  for name in out:gmatch("[^\n]+") do
    if name:match("%.json$") and not name:match("%.meta%.json$") then
      ids[#ids + 1] = name:gsub("%.json$", "")
    end
  end
  table.sort(ids)
  return ids
end

function helpers.now()
  local ok, socket = pcall(require, "socket")
  if ok then return socket.gettime() end
  return os.time()
end

function helpers.sleep(s)
  require("socket").sleep(s)
end

---------------------------------------------------------------------------------------------------
-- Entra ID credentials in specs: every credential a spec builds points at loopback (the
-- emulator), never at IMDS (169.254.169.254) or a public authority.

--- Build `acscall.credential[kind](opts)` for a spec, and FAIL LOUDLY (error) when any URL it
-- would contact (cred:targets(), every link of a chain) is not a loopback address, or when it
-- would run the real Azure CLI (an azure_cli without a command of the spec's own).
-- `opts.env` defaults to an empty environment, so the runner's own AZURE_* variables never
-- leak in; pass `env = helpers.identity_env(e, {...})` to aim the SDK variables at the emulator.
function helpers.credential(kind, opts)
  local credential = require "acscall.credential"
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  if o.env == nil then o.env = {} end
  local build = credential[kind]
  if type(build) ~= "function" then error("helpers.credential: no credential kind " .. tostring(kind), 2) end
  local cred = build(o)
  helpers.assert_loopback_credential(cred, 2)
  return cred
end

--- Raise unless every target of a credential is loopback and no real az would run.
function helpers.assert_loopback_credential(cred, level)
  local credential = require "acscall.credential"
  for _, url in ipairs(cred:targets()) do
    if not credential.is_loopback(url) then
      error("spec credential " .. tostring(cred.kind) .. " would contact " .. tostring(url)
        .. ", which is not a loopback address: point it at the emulator", (level or 1) + 1)
    end
  end
  local clis = { cred }
  for _, l in ipairs(cred.links or {}) do clis[#clis + 1] = l.cred end
  for _, c in ipairs(clis) do
    if c.kind == "azure_cli" and (c.command == "az" or not c.command:find("/", 1, true)) then
      error("spec credential would run the Azure CLI found on PATH (" .. tostring(c.command)
        .. "): give command = helpers.fake_az(...)", (level or 1) + 1)
    end
  end
  return cred
end

--- The SDK environment variables aimed at emulator e (IMDS, App Service, authority), plus extra.
function helpers.identity_env(e, extra)
  local env = {
    AZURE_POD_IDENTITY_AUTHORITY_HOST = e.imds_endpoint,
    AZURE_AUTHORITY_HOST = e.authority_host,
  }
  for k, v in pairs(extra or {}) do env[k] = v end
  return env
end

--- A fake `az` (a shell script) printing a token for `az account get-access-token`. opts:
-- token (default "fake-az-token"), ttl (seconds, default 3600), exit (code, default 0),
-- stderr (text), legacy (print expiresOn as local time instead of expires_on), sleep (seconds).
-- Each run appends its arguments (one line) to fake.calls. Returns the script's path and a
-- fake table: {path, calls_file, calls() -> list of argument lines, remove()}.
function helpers.fake_az(opts)
  opts = opts or {}
  local dir = os.tmpname()
  os.remove(dir)
  assert(run("mkdir -p " .. shell_quote(dir)))
  local path, calls = dir .. "/az", dir .. "/calls"
  local expiry = opts.legacy
    and [[printf '{"accessToken":"%s","expiresOn":"%s","tokenType":"Bearer"}\n' "$TOKEN" ]]
      .. [["$(date -d "@$(( $(date +%s) + TTL ))" '+%Y-%m-%d %H:%M:%S.000000')"]]
    or [[printf '{"accessToken":"%s","expiresOn":"ignored","expires_on":%d,"tokenType":"Bearer"}\n' ]]
      .. [["$TOKEN" "$(( $(date +%s) + TTL ))"]]
  local script = table.concat({
    "#!/bin/sh",
    "TOKEN=" .. shell_quote(opts.token or "fake-az-token"),
    "TTL=" .. tostring(math.floor(opts.ttl or 3600)),
    "echo \"$*\" >> " .. shell_quote(calls),
    opts.sleep and ("sleep " .. tostring(opts.sleep)) or "",
    opts.stderr and ("printf '%s\\n' " .. shell_quote(opts.stderr) .. " >&2") or "",
    (opts.exit or 0) ~= 0 and ("exit " .. tostring(opts.exit)) or expiry:gsub("TTL", "$TTL"),
    "",
  }, "\n")
  local f = assert(io.open(path, "w"))
  f:write(script)
  f:close()
  assert(run("chmod +x " .. shell_quote(path)))
  return path, {
    path = path,
    calls_file = calls,
    calls = function()
      local out = {}
      for line in (read_file(calls) or ""):gmatch("[^\n]+") do out[#out + 1] = line end
      return out
    end,
    remove = function() helpers.remove_dir(dir) end,
  }
end



---------------------------------------------------------------------------------------------------
-- Code blocks of a Markdown page (the docs' examples; spec/95 runs them).

--- The fenced code blocks of a Markdown file, in order: a list of
-- `{lang =, line =, source =, not_runnable = reason, spec = name}`. The markers are the
-- line right before the fence: `<!-- not runnable: reason -->` (the block is not run),
-- `<!-- spec: name -->` (a spec extracts the block by that name, e.g. the nginx.conf of
-- docs/openresty.md: `helpers.doc_block("docs/openresty.md", "nginx-minimal")`). A marker not
-- followed by a fence gives an entry `{stale = true, line =}`.
function helpers.doc_blocks(path)
  local text = assert(read_file(path), "cannot read " .. tostring(path))
  local lines = {}
  for l in (text .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  local blocks, i, marker = {}, 1, nil
  while i <= #lines do
    local l = lines[i]
    local lang = l:match("^```(%S*)%s*$")
    if lang and lang ~= "" then
      local j, body = i + 1, {}
      while j <= #lines and not lines[j]:match("^```%s*$") do
        body[#body + 1] = lines[j]
        j = j + 1
      end
      local b = { lang = lang, line = i, source = table.concat(body, "\n") .. "\n" }
      if marker then b.not_runnable, b.spec = marker.not_runnable, marker.spec end
      blocks[#blocks + 1] = b
      marker, i = nil, j + 1
    else
      if marker then blocks[#blocks + 1] = { stale = true, line = marker.line } end
      marker = nil
      local reason = l:match("^<!%-%- not runnable:(.-)%-%->%s*$")
      local name = l:match("^<!%-%- spec:%s*(%S+)%s*%-%->%s*$")
      if reason then marker = { not_runnable = reason:match("^%s*(.-)%s*$"), line = i }
      elseif name then marker = { spec = name, line = i } end
      i = i + 1
    end
  end
  if marker then blocks[#blocks + 1] = { stale = true, line = marker.line } end
  return blocks
end

--- The source of the block marked `<!-- spec: name -->` in a Markdown file (a path from the
-- repository root); raises when there is none.
function helpers.doc_block(path, name)
  for _, b in ipairs(helpers.doc_blocks(helpers.repo_root() .. "/" .. path)) do
    if b.spec == name then return b.source end
  end
  error("no block marked <!-- spec: " .. name .. " --> in " .. path, 2)
end

---------------------------------------------------------------------------------------------------
-- The command line (bin/acscall) as a user runs it: a clean environment (none of the runner's
-- ACS_*/AZURE_*/IDENTITY_* variables), ACSCALL_LOOPBACK_ONLY=1 unless env sets it.

helpers.CLI = helpers.repo_root() .. "/bin/acscall"
helpers.CLEAN_ENV = "env -u ACS_CONNECTION_STRING -u ACS_ENDPOINT -u ACS_TOKEN"
  .. " -u ACS_ACCESS_KEY -u ACS_CA_FILE -u ACSCALL_AUTH -u ACSCALL_AZURE_CLI -u AZURE_TENANT_ID"
  .. " -u AZURE_CLIENT_ID -u AZURE_CLIENT_SECRET -u AZURE_AUTHORITY_HOST -u AZURE_FEDERATED_TOKEN_FILE"
  .. " -u AZURE_POD_IDENTITY_AUTHORITY_HOST -u IDENTITY_ENDPOINT -u IDENTITY_HEADER -u IDENTITY_SERVER_THUMBPRINT"
  .. " -u IMDS_ENDPOINT"

--- Run bin/acscall: env a table of variables, args a shell-quoted string; opts: cd (a
-- directory), prefix (before the command, e.g. "timeout 1 "), env_extra, stdin (a file path,
-- else /dev/null). Returns stdout, stderr, exit code.
function helpers.cli(env, args, opts)
  opts = opts or {}
  local out, err = os.tmpname(), os.tmpname()
  local vars = {}
  for k, v in pairs(env or {}) do vars[#vars + 1] = k .. "=" .. shell_quote(v) end
  if not (env or {}).ACSCALL_LOOPBACK_ONLY then vars[#vars + 1] = "ACSCALL_LOOPBACK_ONLY=1" end
  table.sort(vars)
  local cmd = (opts.cd and ("cd " .. shell_quote(opts.cd) .. " && ") or "") .. (opts.prefix or "")
    .. helpers.CLEAN_ENV .. (opts.env_extra or "") .. " " .. table.concat(vars, " ") .. " "
    .. shell_quote(helpers.CLI) .. " " .. args
    .. (opts.stdin and (" <" .. shell_quote(opts.stdin)) or " </dev/null")
    .. " >" .. shell_quote(out) .. " 2>" .. shell_quote(err)
  local _, _, rc = run(cmd)
  local o, e = read_file(out) or "", read_file(err) or ""
  os.remove(out)
  os.remove(err)
  return o, e, rc
end


---------------------------------------------------------------------------------------------------
-- The emulator's fleet calls (emulator/README.md "Fleet and throttle"), written here
-- independently of the emulator: the oracle of the watch specs.

--- The states of `fleet-<n>-<period_ms>`, in order, one period each.
function helpers.fleet_schedule(n)
  local s = {"connecting", "connected"}
  for _ = 1, n % 3 do
    s[#s + 1] = "transferring"
    s[#s + 1] = "connected"
  end
  s[#s + 1] = "disconnecting"
  s[#s + 1] = "disconnected"
  return s
end

local fleet_run = tostring(os.time()) .. "-" .. tostring(math.random(1e6))
--- count fleet ids `fleet-<i>-<period_ms>-<tag>-<run>` (i = 1..count), new to the emulator in
-- each run of the suite (the emulator keeps a call's start for an hour).
function helpers.fleet_ids(count, period_ms, tag)
  local ids = {}
  for i = 1, count do ids[i] = ("fleet-%d-%d-%s-%s"):format(i, period_ms, tag, fleet_run) end
  return ids
end

--- The lines of s (each ended by "\n"), as a list.
function helpers.lines(s)
  local t = {}
  for l in s:gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end


--- A new temporary file holding text (e.g. a command's stdin); its path. Remove it after.
function helpers.temp_file(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

--- A credential transport answering from a script (`answer(req, n)` for the n-th request),
--- keeping every request in `t.requests` (the credentials' `transport =` option).
function helpers.fake_transport(answer)
  local t = { requests = {} }
  function t.fetch(_, req)
    t.requests[#t.requests + 1] = req
    return answer(req, #t.requests)
  end
  return t
end

--- Everything a user could see of a failure (message, info fields), as one string: what
--- the secrets checks search.
function helpers.visible(...)
  local parts = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) == "table" then
      for k, x in pairs(v) do parts[#parts + 1] = tostring(k) .. "=" .. tostring(x) end
    else
      parts[#parts + 1] = tostring(v)
    end
  end
  return table.concat(parts, "\n")
end

return helpers
