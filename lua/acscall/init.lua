--- acscall: inspect live Azure Communication Services calls from Lua.
-- The wire work (request building, HMAC signing, libcurl transport, JSON
-- shaping) is in the C core `acscall.core`; this layer adds names: enums,
-- identifier helpers, iterators. The reference is docs/api.md; these
-- comments are summaries of it.
-- @module acscall

local core = require "acscall.core"

local M = {
  _VERSION = core._VERSION,
  DEFAULT_API_VERSION = core.DEFAULT_API_VERSION,
  --- Longest call id accepted, in bytes (longer ids are a programmer mistake).
  ID_MAX = core.ID_MAX,
  --- Top-level fields of CallConnectionProperties, in schema order.
  CALL_FIELDS = core.CALL_FIELDS,
  --- Names of the model's array fields (a set): arrays even when empty.
  ARRAY_FIELDS = core.ARRAY_FIELDS,
  --- The closed set of `info.kind` values (docs/api.md#errors).
  KINDS = core.KINDS,
}

--- Create a client.
-- @function new
-- @tparam table opts `endpoint` + one credential (`token`, `access_key`,
--  `token_provider`, `credential`), or `connection_string`; the options
--  are described once, in `OPTIONS` (name, type, default, bounds, doc).
-- @treturn client
-- @raise on a programmer mistake (missing endpoint or credential, an
--  unknown option, a wrong type), at the caller's line: `core.new` is
--  called directly, so its error position is the caller's
M.new = core.new

--- `new`'s options: a list of `{name=, type=, default=, min=, max=, doc=}`.
M.OPTIONS = core.OPTIONS
--- Every limit and default, one table (`id_max`, `retries_max`, ...).
M.LIMITS = core.LIMITS

--- Signing headers for a request (pure, no I/O).
-- @function sign
-- @tparam table req `{method=, url=, date=, body=, access_key=}`
-- @treturn table headers: `host`, `x-ms-date`, `x-ms-content-sha256`, `authorization`
M.sign = core.sign

--- Decode a response (pure, no I/O).
-- @function decode
-- @tparam integer status HTTP status
-- @tparam string body response body
-- @tparam[opt] table headers response headers (names in any case)
-- @return call table, or `nil, message, info`
M.decode = core.decode

--- `nil, message, info` for a failure of a transport written in Lua (core.failure).
M.failure = core.failure

--- The rawId of an identifier (the one the service sent, else derived).
-- @function raw_id
M.raw_id = core.raw_id

--- An identifier (wire shape) from a rawId.
-- @function identifier_from_raw_id
M.identifier_from_raw_id = core.identifier_from_raw_id

--- An HTTP date (IMF-fixdate, as sent in `x-ms-date`) for epoch seconds.
-- @function http_date
M.http_date = core.http_date

local function enum(...)
  local t = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    t[v] = v
  end
  return t
end

--- Enums of the REST reference "Call Connection - Get Call"
-- (https://learn.microsoft.com/rest/api/communication/callautomation/call-connection/get-call,
-- api-version 2026-03-12).
-- Values are the wire strings; the service may send values not listed here
-- (they are data, not errors).
M.CallConnectionState = enum("unknown", "connecting", "connected",
  "transferring", "transferAccepted", "disconnecting", "disconnected")
M.MediaStreamingContentType = enum("audio")
M.MediaStreamingSubscriptionState = enum("disabled", "inactive", "active")
M.TranscriptionResultType = enum("final", "intermediate")
M.TranscriptionSubscriptionState = enum("disabled", "inactive", "active")
M.CommunicationIdentifierModelKind = enum("unknown", "communicationUser",
  "phoneNumber", "microsoftTeamsUser", "microsoftTeamsApp", "teamsExtensionUser")
M.CommunicationCloudEnvironmentModel = enum("public", "dod", "gcch")

--- True when a call in this state is over (it will not change again).
-- @tparam string state a `callConnectionState`
function M.is_terminal(state)
  return state == "disconnected"
end

local describers = {
  communicationUser = function(s) return "acs user " .. tostring(s.id) end,
  phoneNumber = function(s)
    if s.isAnonymous or s.value == "anonymous" then return "phone anonymous" end
    return "phone " .. tostring(s.value)
  end,
  microsoftTeamsUser = function(s)
    return (s.isAnonymous and "teams visitor " or "teams user ") .. tostring(s.userId)
      .. ((s.cloud and s.cloud ~= "public") and (" (" .. s.cloud .. ")") or "")
  end,
  microsoftTeamsApp = function(s)
    return "teams app " .. tostring(s.appId)
      .. ((s.cloud and s.cloud ~= "public") and (" (" .. s.cloud .. ")") or "")
  end,
  teamsExtensionUser = function(s)
    return "teams extension user " .. tostring(s.userId)
      .. ((s.cloud and s.cloud ~= "public") and (" (" .. s.cloud .. ")") or "")
  end,
}

--- One readable line for an identifier, e.g. `phone +14250123456`.
-- @tparam table ident an identifier (as in `call.source`, `call.targets[i]`)
-- @treturn string
function M.describe(ident)
  if type(ident) ~= "table" then
    error("acscall.describe: identifier table expected, got " .. type(ident), 2)
  end
  local kind = ident.kind
  local d = kind and describers[kind]
  if d and type(ident[kind]) == "table" then return d(ident[kind]) end
  local raw = core.raw_id(ident)
  return (kind or "unknown") .. " " .. tostring(raw)
end

--- Iterate a call's targets: `for i, target in acscall.targets(call)`.
-- @tparam table call a call table
function M.targets(call)
  if type(call) ~= "table" then
    error("acscall.targets: call table expected, got " .. type(call), 2)
  end
  local list = call.targets or {}
  local i = 0
  return function()
    i = i + 1
    local t = list[i]
    if t ~= nil then return i, t end
  end
end

-- `client:watch(ids[, opts])`: follow many calls, one event at a time
-- (`acscall.watch`, loaded at first use; documented there and in
-- docs/api.md). A method the Lua layer adds to the core's client class
-- (its metatable is in the registry under "acscall.client", made when the
-- core loads).
do
  local reg = debug and debug.getregistry and debug.getregistry()
  local mt = reg and reg["acscall.client"]
  if type(mt) == "table" and type(mt.__index) == "table" and mt.__index.watch == nil then
    mt.__index.watch = function(client, ids, opts)
      return require("acscall.watch").new(client, ids, opts)
    end
  end
end

--- `acscall.credential`: the Entra ID credentials (managed identity, client
-- secret, workload identity, Azure CLI, the default chain), loaded at first
-- use (`acscall.credential.default()`, or `require "acscall.credential"`).
-- @field credential
setmetatable(M, { __index = function(t, k)
  if k == "credential" then
    local c = require "acscall.credential"
    rawset(t, k, c)
    return c
  end
end })

return M
