--- acscall.resty_worker: the blocking libcurl path, run inside an nginx
-- `thread_pool` by `ngx.run_worker_thread` (see `acscall.resty`).
-- Each pool thread runs its own Lua VM; this module keeps one client per
-- VM and per set of options, so libcurl's connection (keep-alive) is reused
-- by the next request that lands on the same VM.
-- No ngx API is used here: only plain Lua and the C core.
-- @module acscall.resty_worker

local acscall = require "acscall"

local M = {}

local MAX_CLIENTS = 16 -- distinct option sets kept per VM
local clients, nclients = {}, 0

-- A stable string for an options table (values: strings, numbers, booleans,
-- tables of those), so equal options find the same client.
local function canon(v)
  local t = type(v)
  if t == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local out = {}
    for i, k in ipairs(keys) do
      out[i] = tostring(k) .. "=" .. canon(v[k])
    end
    return "{" .. table.concat(out, ",") .. "}"
  elseif t == "string" then
    return string.format("%q", v)
  end
  return tostring(v)
end

local function client_for(opts)
  local key = canon(opts)
  local c = clients[key]
  if c then return c end
  if nclients >= MAX_CLIENTS then -- options vary per request: do not grow without bound
    for _, old in pairs(clients) do old:close() end
    clients, nclients = {}, 0
  end
  local o = opts
  if opts.auth ~= nil then
    -- an Entra ID credential by name: this VM's own, fetching in the pool
    -- thread (blocking there is what the thread is for), cached per VM
    o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.auth, o.auth_options = nil, nil
    o.credential = require("acscall.credential").by_name(opts.auth, opts.auth_options)
  end
  c = acscall.new(o) -- raises on a programmer mistake: run_worker_thread reports it
  clients[key], nclients = c, nclients + 1
  return c
end

--- Fetch a call with the blocking libcurl path (retries and deadline included).
-- `ngx.run_worker_thread` cannot carry nil, so the result is flagged:
-- `true, call` or `false, message, info`.
-- @tparam table opts options of `acscall.new` (no functions: no `token_provider`,
--  no credential object; `auth` = a credential name as the CLI's `--auth`, with
--  `auth_options`, builds one in this VM)
-- @tparam string id a callConnectionId
function M.fetch(opts, id)
  local call, msg, info = client_for(opts):get_call(id)
  if call then return true, call end
  return false, msg, info
end

--- Close every client of this VM (for tests; VMs are reused by nginx).
function M.reset()
  for _, c in pairs(clients) do c:close() end
  clients, nclients = {}, 0
  return true
end

return M
