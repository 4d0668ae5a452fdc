--- acscall.cli: the command line `acscall` as a library.
--   acscall get ID... [--json | --field NAME]      acscall watch ID... [--json]
-- `bin/acscall` only finds the module and calls `cli.main(arg)`; specs call
-- `cli.main(argv, {stdout = f, stderr = f, stdin = f, getenv = fn})` in
-- process. Plain Lua 5.1-5.4 and LuaJIT; arguments by lua-argparse.
-- Exit codes of get: 0 all found, 1 some call failed (HTTP/service/decode),
-- 2 usage or configuration, 3 transport failure or credential refused
-- (401/403, token provider; wins over 1), 70 internal error, 130 interrupted.
-- Of watch (any number of ids): 0 every call ended, 1 some call failed for
-- good (404 never seen, another 4xx), 2, 3 identity or credential refused
-- (the watch ends at once), 70, 130 (docs/cli.md).
-- @module acscall.cli

local M = {}

local EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENV = 0, 1, 2, 3
local EXIT_INTERNAL, EXIT_INTERRUPTED = 70, 130
M.EXIT = {ok = EXIT_OK, failed = EXIT_FAILED, usage = EXIT_USAGE, transport = EXIT_ENV,
  internal = EXIT_INTERNAL, interrupted = EXIT_INTERRUPTED}

local PROG = "acscall"
M.NOT_FOUND = "the acscall module was not found (run make in the checkout, or install the rock)"

-- A failure the user caused or can fix: one line on stderr, then this code.
local Failure = {}
Failure.__index = Failure
local function fail(code, msg)
  error(setmetatable({code = code, msg = msg}, Failure), 0)
end

---------------------------------------------------------------------------
-- Text from the server or the user, made safe for a terminal or for JSON.
-- One linear pass: ASCII text without control characters is returned as is.

-- bytes that need a look: C0 controls, DEL and everything non-ASCII
-- (Lua 5.1's patterns cannot hold "\0": "%z" there)
local SPECIAL = _VERSION == "Lua 5.1" and "[%z\1-\31\127-\255]" or "[\0-\31\127-\255]"

-- Length of the valid UTF-8 sequence at byte i of s (strict: no overlong
-- forms, no surrogates, nothing above U+10FFFF) and its code point, or nil.
local function utf8_at(s, i)
  local c = s:byte(i)
  local n, min, cp
  if c >= 0xC2 and c <= 0xDF then n, min, cp = 2, 0x80, c - 0xC0
  elseif c >= 0xE0 and c <= 0xEF then n, min, cp = 3, 0x800, c - 0xE0
  elseif c >= 0xF0 and c <= 0xF4 then n, min, cp = 4, 0x10000, c - 0xF0
  else return nil end
  for k = 1, n - 1 do
    local b = s:byte(i + k)
    if not b or b < 0x80 or b > 0xBF then return nil end
    cp = cp * 64 + (b - 0x80)
  end
  if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return nil end
  return n, cp
end

-- Walk s: keep(text) for text kept as is, bad(byte) for a C0/DEL byte or a
-- byte that starts no valid UTF-8 sequence, c1(code point) for U+0080-U+009F.
local function sanitize(s, control, invalid, c1)
  s = tostring(s)
  if not s:find(SPECIAL) then return s end
  local out, i = {}, 1
  while true do
    local j = s:find(SPECIAL, i)
    if not j then
      out[#out + 1] = s:sub(i)
      break
    end
    if j > i then out[#out + 1] = s:sub(i, j - 1) end
    local b = s:byte(j)
    if b < 0x80 then
      out[#out + 1] = control(b)
      i = j + 1
    else
      local n, cp = utf8_at(s, j)
      if not n then
        out[#out + 1] = invalid(b)
        i = j + 1
      else
        out[#out + 1] = cp <= 0x9F and c1(cp) or s:sub(j, j + n - 1)
        i = j + n
      end
    end
  end
  return table.concat(out)
end

local function hex_byte(b) return ("\\x%02X"):format(b) end
local function c1_escape(cp) return ("\\u%04X"):format(cp) end
local function as_is(b) return string.char(b) end
local function c1_as_is(cp) return string.char(0xC2, cp) end
local REPLACEMENT = "\239\191\189" -- U+FFFD
local function replacement() return REPLACEMENT end

--- Text for a human view (terminal): control characters (C0, DEL) and bytes
-- that are not valid UTF-8 as `\xNN`, C1 controls (U+0080-U+009F) as
-- `\u0080`-`\u009F`; everything else, non-ASCII text included, unchanged.
function M.printable(s)
  return sanitize(s, hex_byte, hex_byte, c1_escape)
end
local printable = M.printable

--- Valid UTF-8: each byte that starts no valid sequence becomes U+FFFD
-- (control characters are left to the JSON encoder, which escapes them).
function M.valid_utf8(s)
  return sanitize(s, as_is, replacement, c1_as_is)
end
local valid_utf8 = M.valid_utf8

-- Strip a "file:line: " position prefix from a Lua error message.
local function clean(msg)
  msg = tostring(msg)
  return (msg:gsub("^[^\n:]*:%d+: ", ""):gsub("[\r\n]+", " "))
end

--- Leading and trailing whitespace removed, in time linear in the length
-- (a pattern anchored at the end, `%s+$`, retries from every position).
function M.trim(s)
  local i = s:find("%S")
  if not i then return "" end
  local j = #s
  local byte = string.byte
  while true do
    local b = byte(s, j)
    -- %s in the C locale: space, \t \n \v \f \r
    if b == 32 or (b >= 9 and b <= 13) then j = j - 1 else break end
  end
  return s:sub(i, j)
end

---------------------------------------------------------------------------
-- JSON with a stable key order (sorted at every depth); cjson does the
-- string escaping. Always valid JSON: strings as valid UTF-8 (U+FFFD for
-- bad bytes), numbers that are not finite (1e400 in a response reads as
-- infinity) as null.

local cjson = require("cjson").new() -- private: our settings stay ours
-- 17 digits where the cjson allows it (Debian's 2.1.0 stops at 14); numbers
-- are formatted by number_text below anyway, cjson does the rest
pcall(cjson.encode_number_precision, 17)

local function finite(v)
  return v == v and v > -math.huge and v < math.huge
end

-- Numbers as text: an integral value within +-2^53 (exact in a double) as an
-- integer ("42", not "42.0"); others with the fewest digits (at most 17)
-- that read back as the same double, so no digit is lost. Not finite:
-- "inf", "-inf", "nan".
local function number_text(v)
  if not finite(v) then
    if v ~= v then return "nan" end
    return v > 0 and "inf" or "-inf"
  end
  if v == math.floor(v) and v >= -2^53 and v <= 2^53 then return ("%d"):format(v) end
  for prec = 15, 16 do
    local s = ("%." .. prec .. "g"):format(v)
    if tonumber(s) == v then return s end
  end
  return ("%.17g"):format(v)
end

local ARRAY_FIELDS = {} -- the model's array fields, from the library (main)
-- acscall.core (main loads it with the module): redaction, the limits and
-- the connection-string parser are its, not copies
local core

local function is_array(t, key)
  local mt = getmetatable(t)
  if mt ~= nil and (mt == cjson.array_mt or mt == cjson.empty_array_mt) then
    return true
  end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  if n == 0 then return ARRAY_FIELDS[key] == true end
  for i = 1, n do
    if t[i] == nil then return false end
  end
  return true
end

-- cjson escapes "/" as "\/"; undo it (only an escaping backslash can
-- precede a "/" in cjson's output, other backslashes come in pairs before it)
local function encode_scalar(v)
  if type(v) == "number" then
    return finite(v) and number_text(v) or "null"
  end
  if type(v) == "string" then
    return (cjson.encode(valid_utf8(v)):gsub("\\/", "/"))
  end
  if type(v) == "boolean" then return tostring(v) end
  return cjson.encode(valid_utf8(tostring(v)))
end

local function encode_json(v, key, depth)
  depth = depth or 0
  if depth > 100 then error("json: too deep", 0) end
  if type(v) ~= "table" then return encode_scalar(v) end
  local out = {}
  if is_array(v, key) then
    for i = 1, #v do out[i] = encode_json(v[i], key, depth + 1) end
    return "[" .. table.concat(out, ",") .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for i, k in ipairs(keys) do
    local val = v[k]
    if val == nil then val = v[tonumber(k)] end
    out[i] = encode_scalar(k) .. ":" .. encode_json(val, k, depth + 1)
  end
  return "{" .. table.concat(out, ",") .. "}"
end
M.encode_json = encode_json

---------------------------------------------------------------------------
-- Field paths: "source.rawId", "targets.1.rawId", "targets[1].rawId".

local function get_field(call, path)
  local v = call
  for seg in path:gsub("%[(%d+)%]", ".%1"):gmatch("[^.]+") do
    if type(v) ~= "table" then return nil end
    local n = tonumber(seg)
    if n and v[n] ~= nil then v = v[n] else v = v[seg] end
  end
  return v
end

-- a value as (unescaped) text: absent "", a table as JSON
local function field_text(v, key)
  if v == nil then return "" end
  if type(v) == "table" then return encode_json(v, key) end
  if type(v) == "number" then return number_text(v) end
  return tostring(v)
end

---------------------------------------------------------------------------
-- Platform: terminals and sleeping, through Debian-packaged modules
-- (lua-posix where it exists for this Lua, else lua-term / luasystem /
-- luasocket), never a shell.

local function try(name)
  local ok, m = pcall(require, name)
  if ok and type(m) == "table" then return m end
  return nil
end

--- True when file (an io file, e.g. io.stderr) is a terminal.
function M.isatty(file)
  if io.type(file) ~= "file" then return false end
  local unistd, stdio = try("posix.unistd"), try("posix.stdio")
  if unistd and stdio and unistd.isatty and stdio.fileno then
    local fd = stdio.fileno(file)
    return fd ~= nil and unistd.isatty(fd) == 1
  end
  local term = try("term")
  if term and term.isatty then return term.isatty(file) == true end
  return false
end

-- One nap of at most s seconds. posix.time.nanosleep returns early on a
-- signal (so Ctrl-C is seen at once); luasystem's and luasocket's sleeps
-- resume after one, hence the short slices below.
local function nap_function()
  local ptime = try("posix.time")
  if ptime and ptime.nanosleep then
    return function(s)
      local sec = math.floor(s)
      ptime.nanosleep({tv_sec = sec, tv_nsec = math.floor((s - sec) * 1e9)})
    end
  end
  local system = try("system")
  if system and system.sleep then return system.sleep end
  local socket = try("socket")
  if socket and socket.sleep then return socket.sleep end
  error("no sleep function: install lua-posix, lua-system or lua-socket", 0)
end

-- Sleeps in slices of at most 0.2 s: lua.c turns Ctrl-C into an
-- "interrupted!" error only when Lua code runs again.
local SLEEP_SLICE = 0.2
local nap
local function sleep(seconds)
  nap = nap or nap_function()
  while seconds > 0 do
    local s = math.min(seconds, SLEEP_SLICE)
    nap(s)
    seconds = seconds - s
  end
end

---------------------------------------------------------------------------
-- One run of the program: its streams, environment and library.

local Run = {}
Run.__index = Run

function Run:warn(msg)
  -- the core's one redaction rule (core.redact): every secret this run holds
  -- in any spelling, and whatever follows Bearer / Signature=
  self.stderr:write(PROG, ": ", printable(core.redact(tostring(msg), self.secrets)), "\n")
end

function Run:env(name)
  local v = self.getenv(name)
  if v == "" then return nil end
  return v
end

local function pad(s, n) return s .. string.rep(" ", n - #s) end

function Run:describe(ident)
  if type(ident) ~= "table" then return tostring(ident) end
  local ok, d = pcall(self.acscall.describe, ident)
  return ok and d or tostring(ident.rawId)
end

local function subscription_text(s, types_key)
  if type(s) ~= "table" then return nil end
  local parts = {tostring(s.state or "?")}
  local extra = {}
  if type(s[types_key]) == "table" and #s[types_key] > 0 then
    local types = {}
    for i, t in ipairs(s[types_key]) do types[i] = field_text(t) end
    extra[#extra + 1] = table.concat(types, ", ")
  end
  if s.locale then extra[#extra + 1] = field_text(s.locale) end
  if #extra > 0 then parts[#parts + 1] = "(" .. table.concat(extra, "; ") .. ")" end
  if s.id then parts[#parts + 1] = "id " .. field_text(s.id) end
  return table.concat(parts, " ")
end

-- One call, one field per line (targets one per line). Every name and
-- value goes through printable().
function Run:print_detail(call)
  local rows = {}
  local function row(k, v)
    if v ~= nil then rows[#rows + 1] = {printable(k), printable(field_text(v, k))} end
  end
  local function ident_line(ident)
    local raw = type(ident) == "table" and ident.rawId
    local d = self:describe(ident)
    if raw and raw ~= d and not d:find(tostring(raw), 1, true) then d = d .. "  (" .. field_text(raw) .. ")" end
    return d
  end
  row("callConnectionId", call.callConnectionId)
  row("callConnectionState", call.callConnectionState)
  row("serverCallId", call.serverCallId)
  row("correlationId", call.correlationId)
  row("callbackUri", call.callbackUri)
  if call.source then row("source", ident_line(call.source)) end
  row("sourceCallerIdNumber", type(call.sourceCallerIdNumber) == "table"
    and call.sourceCallerIdNumber.value or nil)
  row("sourceDisplayName", call.sourceDisplayName)
  local ntargets = 0
  if type(call.targets) == "table" then
    for i, t in self.acscall.targets(call) do
      ntargets = i
      row(i == 1 and "targets" or "", ("%d. %s"):format(i, ident_line(t)))
    end
  end
  if ntargets == 0 and call.targets then row("targets", "(none)") end
  row("answeredBy", type(call.answeredBy) == "table" and call.answeredBy.id or nil)
  row("answeredFor", type(call.answeredFor) == "table" and call.answeredFor.value or nil)
  row("mediaStreaming", subscription_text(call.mediaStreamingSubscription, "subscribedContentTypes"))
  row("transcription", subscription_text(call.transcriptionSubscription, "subscribedResultTypes"))
  -- fields this version does not know, as JSON
  local known, others = {}, {}
  for _, k in ipairs(self.acscall.CALL_FIELDS) do known[k] = true end
  for k in pairs(call) do
    if not known[k] then others[#others + 1] = tostring(k) end
  end
  table.sort(others)
  for _, k in ipairs(others) do row(k, call[k]) end
  local w = 0
  for _, r in ipairs(rows) do if #r[1] > w then w = #r[1] end end
  for _, r in ipairs(rows) do
    self.stdout:write(pad(r[1], w), "  ", r[2], "\n")
  end
end

function Run:targets_summary(call)
  local list = {}
  if type(call.targets) == "table" then
    for _, t in self.acscall.targets(call) do list[#list + 1] = self:describe(t) end
  end
  if #list > 2 then
    return list[1] .. ", " .. list[2] .. (" (+%d more)"):format(#list - 2)
  end
  return table.concat(list, ", ")
end

-- Many calls, one row each.
function Run:print_table(results)
  local rows = {{"CALL CONNECTION ID", "STATE", "SOURCE", "TARGETS"}}
  for _, r in ipairs(results) do
    local c = r.call
    if c then
      rows[#rows + 1] = {printable(field_text(c.callConnectionId or r.id)),
        printable(c.callConnectionState ~= nil and field_text(c.callConnectionState) or "-"),
        printable(c.source and self:describe(c.source) or "-"), printable(self:targets_summary(c))}
    end
  end
  if #rows == 1 then return end
  local w = {0, 0, 0}
  for _, r in ipairs(rows) do
    for i = 1, 3 do if #r[i] > w[i] then w[i] = #r[i] end end
  end
  for _, r in ipairs(rows) do
    self.stdout:write(pad(r[1], w[1]), "  ", pad(r[2], w[2]), "  ",
      pad(r[3], w[3]), "  ", r[4], "\n")
  end
end

---------------------------------------------------------------------------
-- Configuration.

-- Client options from flags and the environment. Precedence:
-- --connection-string; --endpoint/--token (each falling back to its env
-- variable); ACS_CONNECTION_STRING; ACS_ENDPOINT + ACS_TOKEN (or ACS_ACCESS_KEY).
local AUTH_MODES = { default = true, ["managed-identity"] = true, cli = true, ["client-secret"] = true,
  ["workload-identity"] = true }

function Run:client_options(args)
  local o = {}
  -- --auth (or ACSCALL_AUTH unless a key or token is given on the command
  -- line): an Entra ID credential, configured by the Azure SDKs' variables
  local auth = args.auth
  if not auth and not (args.connection_string or args.token) then auth = self:env("ACSCALL_AUTH") end
  if auth then return self:credential_options(args, auth) end
  if args.connection_string then
    o.connection_string = args.connection_string
  elseif args.endpoint or args.token then
    o.endpoint = args.endpoint or self:env("ACS_ENDPOINT")
    o.token = args.token or self:env("ACS_TOKEN")
    if not o.token then o.access_key = self:env("ACS_ACCESS_KEY") end
  elseif self:env("ACS_CONNECTION_STRING") then
    o.connection_string = self:env("ACS_CONNECTION_STRING")
  elseif self:env("ACS_ENDPOINT") then
    o.endpoint, o.token = self:env("ACS_ENDPOINT"), self:env("ACS_TOKEN")
    if not o.token then o.access_key = self:env("ACS_ACCESS_KEY") end
  end
  if not (o.connection_string or (o.endpoint and (o.token or o.access_key))) then
    if o.endpoint or o.token or o.access_key then
      fail(EXIT_USAGE, "incomplete configuration: " .. (o.endpoint
        and "no credential (set ACS_TOKEN, or use --token or --connection-string)"
        or "no endpoint (set ACS_ENDPOINT, or use --endpoint)"))
    end
    fail(EXIT_USAGE, "no ACS resource configured: set ACS_CONNECTION_STRING, "
      .. "or ACS_ENDPOINT and ACS_TOKEN or ACS_ACCESS_KEY, or ACS_ENDPOINT and --auth "
      .. "(or use --connection-string, or --endpoint and --token)")
  end
  -- never printed, whatever a server quotes back
  local cs = o.connection_string and core.parse_connection_string(o.connection_string)
  for _, secret in pairs{o.token, o.access_key, cs and cs.access_key} do
    self.secrets[#self.secrets + 1] = secret
  end
  return self:common_client_options(args, o)
end

-- the endpoint (--endpoint, ACS_ENDPOINT, else the endpoint of
-- ACS_CONNECTION_STRING) and an acscall.credential for `--auth mode`
function Run:credential_options(args, mode)
  if not AUTH_MODES[mode] then
    fail(EXIT_USAGE, "--auth: one of default, managed-identity, cli, client-secret, workload-identity expected, got '"
      .. tostring(mode) .. "'" .. (args.auth and "" or " (from ACSCALL_AUTH)"))
  end
  local o = {}
  o.endpoint = args.endpoint or self:env("ACS_ENDPOINT")
  if not o.endpoint and self:env("ACS_CONNECTION_STRING") then
    local cs = core.parse_connection_string(self:env("ACS_CONNECTION_STRING"))
    o.endpoint = cs and cs.endpoint
  end
  if not o.endpoint then
    fail(EXIT_USAGE, "incomplete configuration: --auth " .. mode
      .. " needs an endpoint (set ACS_ENDPOINT, or use --endpoint)")
  end
  -- never printed, whatever a server quotes back
  for _, name in ipairs{ "AZURE_CLIENT_SECRET", "IDENTITY_HEADER" } do
    self.secrets[#self.secrets + 1] = self:env(name)
  end
  o = self:common_client_options(args, o)
  local credential = self.credential or require("acscall.credential")
  local ok, cred = pcall(credential.by_name, mode, {
    env = function(name) return self:env(name) end,
    ca_file = o.ca_file,
  })
  if not ok then
    fail(EXIT_USAGE, (clean(cred):gsub("^[^:]*acscall%.credential%.[%w_]+: ", "invalid configuration: --auth "
      .. mode .. ": ")))
  end
  o.credential = cred
  return o
end

function Run:common_client_options(args, o)
  o.api_version = args.api_version
  o.ca_file = args.ca_file or self:env("ACS_CA_FILE")
  if o.ca_file then
    -- configuration, not transport: say so before any request (exit 2)
    local f, err = io.open(o.ca_file, "rb")
    local _, rerr
    if f then _, rerr = f:read(1); f:close() end
    if err or rerr then
      fail(EXIT_USAGE, ("%s: cannot read the CA file: %s"):format(
        args.ca_file and "--ca-file" or "ACS_CA_FILE",
        rerr and (o.ca_file .. ": " .. rerr) or err))
    end
  end
  if args.timeout then
    o.timeout = args.timeout
    o.deadline = args.timeout
    o.connect_timeout = math.min(args.timeout, 10)
  end
  if args.retries then
    o.retries = args.retries > 0 and {max = args.retries} or false
  end
  if args.verbose then
    o.on_attempt = function(rec) self:attempt_line(rec) end
  end
  return o
end

-- The fields of an attempt record, in this order, as `name=value`.
local ATTEMPT_FIELDS = {"id", "attempt", "status", "kind", "duration", "wait", "reason",
  "request_id", "client_request_id", "host"}

--- One line on stderr for an attempt record (`on_attempt`, -v): the
-- operation, then each field present as name=value (durations in seconds).
function Run:attempt_line(rec)
  if type(rec) ~= "table" then return end
  local parts = {"attempt", tostring(rec.operation or "?")}
  for _, k in ipairs(ATTEMPT_FIELDS) do
    local v = rec[k]
    if v ~= nil then
      if type(v) == "number" and (k == "duration" or k == "wait") then v = ("%.3fs"):format(v) end
      parts[#parts + 1] = k .. "=" .. field_text(v)
    end
  end
  self:warn(table.concat(parts, " "))
end

function Run:new_client(args)
  local ok, client = pcall(self.acscall.new, self:client_options(args))
  if not ok then
    -- acscall.new's messages never contain the key or the token
    fail(EXIT_USAGE, (clean(client):gsub("^acscall%.new: ", "invalid configuration: ")))
  end
  return client
end

-- The service refused the credential (401, 403): every call will fail the
-- same way; the environment's problem, not the call's.
local function credential_refused(info)
  return type(info) == "table" and info.kind == "http"
    and (tonumber(info.status) == 401 or tonumber(info.status) == 403)
end

-- Exit code of one failure: transport/auth and a refused credential 3,
-- anything else 1.
local function failure_code(info)
  local kind = type(info) == "table" and info.kind
  if kind == "transport" or kind == "auth" or credential_refused(info) then return EXIT_ENV end
  return EXIT_FAILED
end

---------------------------------------------------------------------------
-- acscall get

function Run:read_ids(list)
  local ids = {}
  for _, id in ipairs(list) do
    if id == "-" then
      for line in self.stdin:lines() do
        line = M.trim(line)
        if line ~= "" then ids[#ids + 1] = line end
      end
    elseif id == "" then
      fail(EXIT_USAGE, "empty call id")
    else
      ids[#ids + 1] = id
    end
  end
  if #ids == 0 then fail(EXIT_USAGE, "no call ids") end
  return ids
end

-- The library takes ids of 1 to LIMITS.id_max bytes (more raises: a programmer
-- mistake there, user input here). Returns nil or why the id is refused.
function Run:bad_id(id)
  local max = core.LIMITS.id_max
  if #id == 0 then return "empty call id" end
  if #id > max then
    return ("call id too long: %d bytes (at most %d)"):format(#id, max)
  end
end

-- An id for a message: a refused long id shortened to its start.
function Run:id_text(id)
  if #id > core.LIMITS.id_max then return id:sub(1, 40) .. "..." end
  return id
end

local function fetch_one(client, id)
  local call, err, info = client:get_call(id)
  if call then return {id = id, call = call} end
  return {id = id, err = err, info = info}
end

-- Fetch every id; results in input order. get_calls (libcurl multi) when the
-- client has it, else one at a time. With a progress line, in chunks.
function Run:fetch_all(client, all_ids, concurrency, progress)
  -- ids the library would refuse fail here, alone; the others are fetched
  local results, ids, at = {}, {}, {}
  for k, id in ipairs(all_ids) do
    local why = self:bad_id(id)
    if why then
      results[k] = {id = id, err = why, code = EXIT_FAILED}
    else
      ids[#ids + 1] = id
      at[#ids] = k
    end
  end
  local batch = #ids > 1 and type(client.get_calls) == "function"
  local step = batch and (progress and math.max(concurrency * 2, 16) or #ids) or 1
  local i = 1
  while i <= #ids do
    local last = math.min(i + step - 1, #ids)
    if batch then
      local chunk = {}
      for j = i, last do chunk[#chunk + 1] = ids[j] end
      local res = client:get_calls(chunk, {concurrency = concurrency})
      for j = 1, #chunk do
        local r = type(res) == "table" and res[j]
        if type(r) ~= "table" then
          r = {id = chunk[j], err = "no result for this id", code = EXIT_INTERNAL}
        end
        r.id = r.id or chunk[j]
        results[at[i + j - 1]] = r
      end
    else
      results[at[i]] = fetch_one(client, ids[i])
    end
    if progress then progress(#all_ids - #ids + last, #all_ids) end
    i = last + 1
  end
  if progress and #ids == 0 then progress(#all_ids, #all_ids) end
  return results
end

function Run:cmd_get(args)
  local ids = self:read_ids(args.id)
  local client = self:new_client(args)
  local progress
  local show = args.progress == "always"
    or (args.progress == "auto" and #ids > 3 and self.isatty(self.stderr))
  if show then
    local stderr = self.stderr
    progress = function(done, total)
      stderr:write(("\r%s: fetched %d/%d calls"):format(PROG, done, total))
      if done == total then stderr:write("\r\27[K") end
      if stderr.flush then stderr:flush() end
    end
    progress(0, #ids)
  end
  local results = self:fetch_all(client, ids, args.concurrency, progress)
  client:close()

  local code = EXIT_OK
  for _, r in ipairs(results) do
    if not r.call then
      self:warn(self:id_text(r.id) .. ": " .. tostring(r.err))
      local c = r.code or failure_code(r.info)
      if c > code then code = c end
    end
  end

  local out = self.stdout
  if args.json then
    for _, r in ipairs(results) do
      if r.call then out:write(encode_json(r.call), "\n") end
    end
  elseif #args.field > 0 then
    for _, r in ipairs(results) do
      if r.call then
        local vals = {}
        for k, path in ipairs(args.field) do
          local v = get_field(r.call, path)
          vals[k] = printable(field_text(v, path:match("([^.%[%]]+)%]?$")))
        end
        out:write(table.concat(vals, "\t"), "\n")
      end
    end
  elseif #ids == 1 or args.long then
    local first = true
    for _, r in ipairs(results) do
      if r.call then
        if not first then out:write("\n") end
        first = false
        self:print_detail(r.call)
      end
    end
  else
    self:print_table(results)
  end
  return code
end

---------------------------------------------------------------------------
-- acscall watch: many calls through client:watch (acscall.watch), one
-- line per event, a summary at the end.

local function credential_refused_event(ev)
  return ev.final and (credential_refused(ev.info) or (type(ev.info) == "table" and ev.info.kind == "auth"))
end

local function failure_key(info)
  if type(info) ~= "table" then return "?" end
  return tostring(info.kind) .. " " .. tostring(info.status) .. " " .. tostring(info.code)
end

-- an event as one JSON object: the watcher's fields, time as ISO-8601 UTC
-- with milliseconds
local function event_json(ev, iso)
  return encode_json({event = ev.type, id = ev.id, time = iso, state = ev.state, previous = ev.previous,
    reason = ev.reason, call = ev.call, message = ev.msg, info = ev.info, final = ev.final})
end

function Run:cmd_watch(args)
  local ids, given = {}, {}
  for _, id in ipairs(self:read_ids(args.id)) do
    local why = self:bad_id(id)
    if why then fail(EXIT_USAGE, self:id_text(id) .. ": " .. why) end
    if not given[id] then -- an id given twice is watched once
      given[id] = true
      ids[#ids + 1] = id
    end
  end
  local client = self:new_client(args)
  local out = self.stdout
  local function line(...)
    out:write(...)
    if out.flush then out:flush() end
  end
  local w = client:watch(ids, {interval = args.interval, max_interval = args.max_interval,
    concurrency = args.concurrency, stop_when_ended = true,
    _clock = self.clock, _sleep = self.sleep})
  local t0 = w.clock()
  local failing = {} -- id -> the message of its current failure streak
  local ended, failed, code = 0, 0, EXIT_OK
  for ev in w:events() do
    local sec = math.floor(ev.time)
    local iso = os.date("!%Y-%m-%dT%H:%M:%SZ", sec)
    local id = printable(ev.id)
    if ev.type ~= "failed" and failing[ev.id] then
      self:warn(iso .. " " .. ev.id .. ": recovered")
      failing[ev.id] = nil
    end
    if args.json then
      line(event_json(ev, iso:sub(1, -2) .. ("%.3fZ"):format(ev.time - sec):sub(2)), "\n")
    elseif ev.type == "seen" or ev.type == "state" then
      line(iso, "  ", id, "  ", printable(ev.state ~= nil and field_text(ev.state) or "unknown"), "\n")
    elseif ev.type == "ended" and ev.reason == "gone" then
      line(iso, "  ", id, "  gone (404 after it was seen)\n")
    end
    if ev.type == "ended" then
      ended = ended + 1
    elseif ev.type == "failed" and ev.final then
      failed = failed + 1
      self:warn(ev.id .. ": " .. tostring(ev.msg))
      if credential_refused_event(ev) then
        -- every call would be refused the same way: the watch ends
        code = EXIT_ENV
        w:stop()
      elseif code == EXIT_OK then
        code = EXIT_FAILED
      end
    elseif ev.type == "failed" and failing[ev.id] ~= failure_key(ev.info) then
      -- a notice when a failure streak starts or its reason (kind, status,
      -- code: not the message, whose timings vary) changes
      failing[ev.id] = failure_key(ev.info)
      self:warn(iso .. " " .. ev.id .. ": " .. tostring(ev.msg) .. " (still watching)")
    end
  end
  client:close()
  if w.stopped == "interrupted" then code = EXIT_INTERRUPTED end
  local live = #ids - ended - failed
  local took = w.clock() - t0
  if args.json then
    line(encode_json({event = "summary", calls = #ids, ended = ended, failed = failed, watching = live,
      requests = w.requests, seconds = math.floor(took * 1000 + 0.5) / 1000, stopped = w.stopped}), "\n")
  else
    self.stderr:write(("%s: %d calls: %d ended, %d failed, %d still watched; %d requests in %.1f s%s\n"):format(
      PROG, #ids, ended, failed, live, w.requests, took, w.stopped == "interrupted" and " (interrupted)" or ""))
  end
  return code
end

---------------------------------------------------------------------------
-- Arguments.

local EPILOG = [[
Configuration (flags win over the environment):
  ACS_CONNECTION_STRING    endpoint=https://...;accesskey=...
  ACS_ENDPOINT, ACS_TOKEN  an endpoint and a bearer token (or ACS_ACCESS_KEY)
  ACS_CA_FILE              PEM CA bundle to verify the server with
  ACSCALL_AUTH             an Entra ID credential, as --auth (with ACS_ENDPOINT)
Prefer the environment to --connection-string/--token: command lines are
visible to other users of the machine.

Entra ID (--auth, with ACS_ENDPOINT or --endpoint), the Azure SDKs' variables:
  managed-identity   IDENTITY_ENDPOINT + IDENTITY_HEADER (App Service), else
                     IMDS (AZURE_POD_IDENTITY_AUTHORITY_HOST overrides its
                     host); AZURE_CLIENT_ID: a user-assigned identity
  client-secret      AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET,
                     AZURE_AUTHORITY_HOST (default login.microsoftonline.com)
  workload-identity  AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE
  cli                az account get-access-token (ACSCALL_AZURE_CLI: the az to run)
  default            the first that works: client-secret (environment),
                     workload-identity, managed-identity, cli]]

local CONFIG_EPILOG = EPILOG

EPILOG = CONFIG_EPILOG .. "\n\n" .. [[
Exit codes (get):
  0    every call was found
  1    some call failed: HTTP error (404 not found ...), or a bad response
  2    usage or configuration error (bad option, no or malformed credentials)
  3    transport or auth failure (no connection, timeout, TLS, credential
       refused: HTTP 401/403); wins over 1
  70   internal error
  130  interrupted]]

local WATCH_EPILOG = CONFIG_EPILOG .. "\n\n" .. [[
Exit codes (watch, for any number of ids):
  0    every call ended (disconnected, or a 404 after it was seen)
  1    some call failed in a way waiting will not fix (a 404 for a call
       never seen, another 4xx but 408 and 429); the others were followed
       to their end
  2    usage or configuration error
  3    the identity or the credential was refused (HTTP 401/403, a refused
       token request): the watch ends at once
  70   internal error
  130  interrupted (Ctrl-C), after the summary line]]

local function positive(name)
  return function(s)
    local n = tonumber(s)
    if not n or n ~= n or n <= 0 or n == math.huge then
      return nil, name .. ": a positive number of seconds expected"
    end
    return n
  end
end

-- An integer option in [min, core.LIMITS[limit]] (the core's limit, read
-- when the option is parsed).
local function integer_in(name, min, limit)
  return function(s)
    local n, max = tonumber(s), core.LIMITS[limit]
    if not n or n < min or n > max or n ~= math.floor(n) then
      return nil, ("%s: an integer in [%d, %d] expected"):format(name, min, max)
    end
    return n
  end
end

local function common_options(cmd)
  cmd:option("--connection-string", "endpoint=https://...;accesskey=... (env ACS_CONNECTION_STRING).")
    :argname("<cs>")
  cmd:option("--endpoint", "https://<resource>.communication.azure.com/ (env ACS_ENDPOINT).")
    :argname("<url>")
  cmd:option("--token", "Bearer token (env ACS_TOKEN).")
    :argname("<token>")
  cmd:option("--api-version", "api-version to request (default: the library's)."):argname("<v>")
  cmd:option("--timeout", "Seconds for one call, retries included.")
    :argname("<s>"):convert(positive("--timeout"))
  cmd:option("--retries", "Retries of a transient failure (default 3; 0: none).")
    :argname("<n>"):convert(integer_in("--retries", 0, "retries_max"))
  cmd:option("--ca-file", "PEM CA bundle (env ACS_CA_FILE)."):argname("<file>")
  cmd:flag("-v --verbose", "One line on stderr per request attempt (status, duration,\n"
    .. "the wait before a retry and why, the service's request id); never a secret.")
  cmd:option("--auth", "Entra ID credential: default, managed-identity, cli,\n"
    .. "client-secret or workload-identity (env ACSCALL_AUTH; see below).")
    :argname("<mode>")
end

local function concurrency_option(cmd, default)
  cmd:option("--concurrency", "Requests in flight for many ids.", default)
    :argname("<n>"):convert(integer_in("--concurrency", 1, "concurrency_max"))
end

-- --help and --version record what was asked (argparse would print and
-- os.exit inside the parse); main prints it and returns 0.
local function build_parser(asked)
  local found, argparse = pcall(require, "argparse")
  if not found then
    fail(EXIT_USAGE, "the acscall command needs argparse (Debian: apt-get install lua-argparse; "
      .. "LuaRocks: luarocks install argparse)")
  end
  local function help_of(cmd)
    return {action = function() asked.help = asked.help or cmd:get_help() end}
  end
  local parser = argparse(PROG,
    "Inspect Azure Communication Services calls (Call Automation: Get Call).")
    :epilog(EPILOG)
    :command_target("command")
    :require_command(true)
  parser:add_help(help_of(parser))
  parser:flag("--version", "Print the version and exit."):action(function() asked.version = true end)

  local get = parser:command("get",
    "Fetch calls and print them: details for one id, a table for many.\n"
    .. "Failed ids are reported on stderr, one line each.")
    :epilog(EPILOG)
  get:add_help(help_of(get))
  get:argument("id", "Call connection id(s); '-' reads ids from stdin, one per line.")
    :args("+")
  get:mutex(
    get:flag("--json", "One JSON object per call and line, keys sorted; always valid\n"
      .. "JSON: a number that is not finite (1e400) as null, bytes that are\n"
      .. "not UTF-8 as U+FFFD."),
    get:option("--field", "Print this field, one value per line (e.g. callConnectionState,\n"
      .. "source.rawId, targets.1.rawId); repeat for tab-separated columns.")
      :argname("<name>"):count("*"),
    get:flag("-l --long", "Details for every call, even with many ids.")
  )
  concurrency_option(get, "8")
  get:option("--progress", "Progress line on stderr: auto (stderr a terminal and\n"
    .. "more than 3 ids), always, never.", "auto"):choices({"auto", "always", "never"}):argname("<when>")
  common_options(get)

  local watch = parser:command("watch",
    "Follow calls and print each one's state when first seen and at every\n"
    .. "change, with a UTC timestamp, until every call has ended (disconnected,\n"
    .. "or 404 after it was seen) or Ctrl-C; a summary line on stderr at the end.\n"
    .. "Calls that keep their state are fetched less often (up to --max-interval);\n"
    .. "a 429 or 503 pauses the whole watch. Transient errors print a notice on\n"
    .. "stderr and the watch goes on; a 404 for a call never seen or another 4xx\n"
    .. "drops that call (exit 1); a refused credential (401, 403, a refused\n"
    .. "token request) ends the watch (exit 3).")
    :epilog(WATCH_EPILOG)
  watch:add_help(help_of(watch))
  watch:argument("id", "Call connection id(s); '-' reads ids from stdin, one per line.")
    :args("+")
  local defaults = require("acscall.watch").DEFAULTS
  watch:option("--interval", "Seconds between fetches of a call that changes.", tostring(defaults.interval))
    :argname("<s>"):convert(positive("--interval"))
  watch:option("--max-interval", "Seconds between fetches of a call that stopped changing.",
    tostring(defaults.max_interval))
    :argname("<s>"):convert(positive("--max-interval"))
  concurrency_option(watch, tostring(defaults.concurrency))
  watch:flag("--json", "One JSON object per event and line (event, id, time, state,\n"
    .. "previous, call, reason, message, info, final), then a summary object.")
  common_options(watch)
  return parser
end

function Run:main(argv)
  local asked = {}
  local parser = build_parser(asked)
  local ok, args = parser:pparse(argv)
  if asked.help then
    self.stdout:write(asked.help, "\n")
    return EXIT_OK
  end
  if asked.version then
    self.stdout:write(PROG, " ", tostring(self.acscall._VERSION), "\n")
    return EXIT_OK
  end
  if not ok then
    fail(EXIT_USAGE, tostring(args) .. " (see '" .. PROG .. " --help')")
  end
  if args.command == "get" then return self:cmd_get(args) end
  return self:cmd_watch(args)
end

local function on_error(e)
  if getmetatable(e) == Failure then return e end
  local msg = tostring(e)
  if msg:find("interrupted!", 1, true) then
    return setmetatable({code = EXIT_INTERRUPTED, msg = nil}, Failure)
  end
  return setmetatable({code = EXIT_INTERNAL, msg = "internal error: " .. clean(msg)}, Failure)
end

--- Run the program.
-- @tparam table argv the arguments (`arg` without the script name)
-- @tparam[opt] table opts `stdout`, `stderr`, `stdin` (files, default the
--  process's), `getenv` (default `os.getenv`), `acscall` (the module),
--  `sleep` (seconds), `clock` (seconds, for watch), `isatty` (file -> boolean)
-- @treturn integer the exit code (0, 1, 2, 3, 70 or 130); nothing is
--  raised, nothing exits
function M.main(argv, opts)
  opts = opts or {}
  local run = setmetatable({
    stdout = opts.stdout or io.stdout,
    stderr = opts.stderr or io.stderr,
    stdin = opts.stdin or io.stdin,
    getenv = opts.getenv or os.getenv,
    secrets = {},
    sleep = opts.sleep or sleep,
    clock = opts.clock,
    isatty = opts.isatty or M.isatty,
  }, Run)
  local list = {}
  for i = 1, #argv do list[i] = argv[i] end
  local ok, res = xpcall(function()
    local loaded, m = true, opts.acscall
    if not m then loaded, m = pcall(require, "acscall") end
    if not loaded then
      local msg = tostring(m)
      if msg:find("module 'acscall[%.%w]*' not found") then fail(EXIT_USAGE, M.NOT_FOUND) end
      fail(EXIT_USAGE, "the acscall module failed to load: " .. clean(msg:match("^[^\n]*")))
    end
    run.acscall = m
    core = require("acscall.core")
    for k in pairs(ARRAY_FIELDS) do ARRAY_FIELDS[k] = nil end
    for k, v in pairs(m.ARRAY_FIELDS) do ARRAY_FIELDS[k] = v end
    return run:main(list)
  end, on_error)
  if run.stdout.flush then run.stdout:flush() end
  if ok then return res end
  if res.msg then run:warn(res.msg) end
  return res.code
end

return M
