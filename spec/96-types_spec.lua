-- spec/96-types_spec.lua: the LuaCATS annotations in types/ (what editors read through
-- lua-language-server, which Debian does not package) match the code: every exported
-- function and constant, every option of `new` (core.OPTIONS), every limit (core.LIMITS), every field of the result
-- (CALL_FIELDS, and every nested field the model produces), every kind (core.KINDS) and
-- enum value is annotated, and nothing annotated is missing from the code.
local helpers = require "spec.helpers"
local acscall = require "acscall"
local core = require "acscall.core"

local root = helpers.repo_root()

-- The annotations of the types/ files: classes (fields, methods, parent), aliases (values).
local function parse_types(paths)
  local classes, aliases, locals = {}, {}, {}
  local used = {}
  for _, path in ipairs(paths) do
    local text = assert(helpers.read_file(root .. "/" .. path), path)
    local class, alias
    for line in text:gmatch("[^\n]*") do
      local cname, parent = line:match("^%-%-%-@class%s+([%w_%.]+)%s*:?%s*([%w_%.]*)")
      local fname, ftype = line:match("^%-%-%-@field%s+([%w_]+)%??%s+(%S+)")
      local aname = line:match("^%-%-%-@alias%s+([%w_%.]+)")
      local value = line:match('^%-%-%-|%s*"([^"]*)"')
      local var = line:match("^local%s+([%w_]+)%s*=%s*{}")
      local owner, sep, method = line:match("^function%s+([%w_]+)([%.:])([%w_]+)%(")
      -- the type part of an annotation (not its description)
      local ty = line:match("^%-%-%-@field%s+[%w_]+%??%s+(%S+)") or line:match("^%-%-%-@param%s+[%w_]+%??%s+(%S+)")
        or line:match("^%-%-%-@return%s+(%S+)") or line:match("^%-%-%-@class%s+[%w_%.]+%s*:%s*(%S+)")
      for t in (ty or ""):gmatch("acscall%.[%w_%.]+") do used[t] = path end
      if cname then
        class = { name = cname, parent = parent ~= "" and parent or nil, fields = {}, methods = {} }
        classes[cname], alias = class, nil
      elseif fname and class then
        class.fields[fname] = ftype
      elseif aname then
        alias, class = {}, nil
        aliases[aname] = alias
        local inline = line:match("^%-%-%-@alias%s+[%w_%.]+%s+(.+)$")
        for v in (inline or ""):gmatch('"([^"]*)"') do alias[v] = true end
      elseif value and alias then
        alias[value] = true
      elseif var and class then
        locals[var] = class
        class = nil
      elseif owner then
        local c = assert(locals[owner], path .. ": function of an unannotated local " .. owner)
        c.methods[method] = sep
      end
    end
  end
  return classes, aliases, used
end

local classes, aliases, used = parse_types{ "types/acscall.lua", "types/acscall/credential.lua",
  "types/acscall/resty.lua" }

local function set_of_keys(t)
  local s = {}
  for k in pairs(t) do s[k] = true end
  return s
end

-- names of a class: fields and functions (and its parents')
local function members(name)
  local c = assert(classes[name], "no class " .. name)
  local s = c.parent and members(c.parent) or {}
  for k in pairs(c.fields) do s[k] = true end
  for k in pairs(c.methods) do s[k] = true end
  return s
end

-- a and b hold the same names; the message names what is missing where
local function same_names(code, annotated, what)
  local missing, extra = {}, {}
  for k in pairs(code) do if not annotated[k] then missing[#missing + 1] = k end end
  for k in pairs(annotated) do if not code[k] then extra[#extra + 1] = k end end
  table.sort(missing)
  table.sort(extra)
  assert(#missing == 0 and #extra == 0, what .. ": not annotated: {" .. table.concat(missing, ", ")
    .. "}; annotated but not in the code: {" .. table.concat(extra, ", ") .. "}")
end

-- the public keys of a module table (the `_`-prefixed ones are for specs; _VERSION is public)
local function public(t)
  local s = {}
  for k in pairs(t) do
    if type(k) == "string" and (k:sub(1, 1) ~= "_" or k == "_VERSION") then s[k] = true end
  end
  return s
end

-- new's options as the code knows them: core.OPTIONS, a list of {name =, ...}
local function new_options()
  local s = {}
  for _, o in ipairs(core.OPTIONS) do s[o.name] = true end
  return s, "core.OPTIONS"
end

describe("types/ (LuaCATS)", function()
  it("annotates every name the acscall module exports, and only those", function()
    local code = public(acscall)
    code.credential = acscall.credential ~= nil or nil -- loaded at first use
    same_names(code, members("acscall"), "acscall")
  end)

  it("annotates every client method, and only those", function()
    local c = acscall.new{ endpoint = "http://127.0.0.1:1/", token = "t" }
    local index = getmetatable(c).__index
    assert.is_table(index)
    same_names(public(index), members("acscall.Client"), "acscall.Client")
    c:close()
  end)

  it("annotates every option of new, and only those", function()
    local names, from = new_options()
    same_names(names, members("acscall.NewOptions"), "acscall.NewOptions (against " .. from .. ")")
  end)

  it("docs/api.md's table of new's options names the same options", function()
    local api = assert(helpers.read_file(root .. "/docs/api.md"))
    local tbl = assert(api:match("| option | meaning | default |\n(.-)\n\n"))
    local documented = {}
    for name in tbl:gmatch("\n| `([%w_]+)` |") do documented[name] = true end
    same_names(documented, members("acscall.NewOptions"), "docs/api.md's options of new against types/")
  end)

  it("annotates every limit of acscall.LIMITS and every key of an OPTIONS entry, and only those", function()
    same_names(set_of_keys(core.LIMITS), members("acscall.Limits"), "acscall.Limits")
    local keys = {}
    for _, o in ipairs(core.OPTIONS) do
      for k in pairs(o) do keys[k] = true end
    end
    same_names(keys, members("acscall.OptionSpec"), "acscall.OptionSpec")
  end)

  it("annotates get_calls' options (core.GET_CALLS_OPTIONS)", function()
    local names = {}
    for _, o in ipairs(core.GET_CALLS_OPTIONS) do names[o.name] = true end
    same_names(names, members("acscall.GetCallsOptions"), "acscall.GetCallsOptions")
  end)

  it("annotates every field of CALL_FIELDS, and only those", function()
    local code = {}
    for _, f in ipairs(acscall.CALL_FIELDS) do code[f] = true end
    same_names(code, members("acscall.CallConnectionProperties"), "acscall.CallConnectionProperties")
  end)

  it("annotates every nested field the model produces (the emulator's full fixtures), and only those", function()
    local seen = {} -- class -> field -> true
    local function class_of(ftype)
      local name = ftype:gsub("%?", ""):gsub("^%(", ""):match("^(acscall%.[%w_]+)")
      return name and classes[name] and name
    end
    local function walk(value, cname, path)
      local c = classes[cname]
      seen[cname] = seen[cname] or {}
      for k, v in pairs(value) do
        local ftype = c.fields[k]
        assert(ftype, path .. "." .. tostring(k) .. " is not annotated in " .. cname)
        seen[cname][k] = true
        local sub = class_of(ftype)
        if type(v) == "table" and sub then
          if ftype:find("[]", 1, true) then
            for i, item in ipairs(v) do
              if type(item) == "table" then walk(item, sub, path .. "." .. k .. "[" .. i .. "]") end
            end
          else
            walk(v, sub, path .. "." .. k)
          end
        end
      end
    end
    for _, id in ipairs{ "full", "identifiers-all" } do
      local body = assert(helpers.read_file(helpers.fixtures_dir() .. "/" .. id .. ".json"))
      local call = assert(acscall.decode(200, body))
      walk(call, "acscall.CallConnectionProperties", id)
    end
    for cname, fields in pairs(seen) do
      same_names(fields, members(cname), cname .. " (fields in the fixtures full, identifiers-all)")
    end
    for _, cname in ipairs{ "acscall.CommunicationUserIdentifierModel", "acscall.PhoneNumberIdentifierModel",
      "acscall.MicrosoftTeamsUserIdentifierModel", "acscall.MicrosoftTeamsAppIdentifierModel",
      "acscall.TeamsExtensionUserIdentifierModel", "acscall.MediaStreamingSubscription",
      "acscall.TranscriptionSubscription" } do
      assert(seen[cname], cname .. " never seen in the fixtures")
    end
  end)

  it("annotates every kind of core.KINDS, and only those", function()
    same_names(core.KINDS, aliases["acscall.ErrorKind"], "acscall.ErrorKind")
  end)

  it("annotates every enum value, and only those", function()
    for _, name in ipairs{ "CallConnectionState", "MediaStreamingContentType", "MediaStreamingSubscriptionState",
      "TranscriptionResultType", "TranscriptionSubscriptionState", "CommunicationIdentifierModelKind",
      "CommunicationCloudEnvironmentModel" } do
      same_names(set_of_keys(acscall[name]), assert(aliases["acscall." .. name], name), name)
    end
  end)

  it("annotates acscall.credential's exports and the credential's methods", function()
    local credential = require "acscall.credential"
    same_names(public(credential), members("acscall.credential"), "acscall.credential")
    local cred = credential.client_secret{ env = {}, tenant_id = "t", client_id = "c", client_secret = "s",
      authority_host = "http://127.0.0.1:1" }
    for m in pairs(classes["acscall.Credential"].methods) do
      assert.is_function(cred[m], "acscall.Credential:" .. m)
    end
    assert.is_string(cred.kind)
  end)

  it("annotates acscall.resty's exports, and only those", function()
    same_names(public(require "acscall.resty"), members("acscall.resty"), "acscall.resty")
  end)

  it("every type it names is defined", function()
    for t, path in pairs(used) do
      local base = t:gsub("%.$", "")
      assert(classes[base] or aliases[base] or base == "acscall.resty" or base == "acscall.credential",
        path .. ": " .. base .. " is not defined")
    end
  end)

  it("is installed with the rock (copy_directories)", function()
    local rockspec = assert(helpers.read_file(root .. "/acscall-scm-1.rockspec"))
    assert.matches('copy_directories%s*=%s*{[^}]*"types"', rockspec)
  end)
end)
