-- spec/helpers_ngx.lua: helpers for the OpenResty specs (Lua 5.1-5.4, LuaJIT; no globals).
--   local ngxh = require "spec.helpers_ngx"
--   local ex = ngxh.start_example{ connection_string = emu.connection_string }
--   ngxh.parallel_get(ex.port, paths) ; ex:stop()
local helpers = require "spec.helpers"

local M = {}

M.example_cmd = helpers.repo_root() .. "/examples/openresty/run"
M.luajit_core = helpers.repo_root() .. "/build/luajit/acscall/core.so"

function M.luajit_core_built()
  local f = io.open(M.luajit_core, "rb")
  if f then f:close() return true end
  return false
end

--- A fixtures directory (removed by the caller) holding the sample call under
--- each id of `sidecars`, with that sidecar (e.g. {slow = '{"fault":"latency","ms":1500}'}),
--- and the sample call under its own id. Returns the directory.
function M.fixtures_with(sidecars)
  local q = helpers.shell_quote
  local dir = os.tmpname()
  os.remove(dir)
  local call = helpers.fixtures_dir() .. "/18dea47f-b081-4107-9a5c-4300819d2c6c.json"
  assert(helpers.run("mkdir " .. q(dir) .. " && cp " .. q(call) .. " " .. q(dir) .. "/"))
  for id, meta in pairs(sidecars) do
    assert(helpers.run("cp " .. q(call) .. " " .. q(dir .. "/" .. id .. ".json")))
    local f = assert(io.open(dir .. "/" .. id .. ".meta.json", "w"))
    f:write(meta)
    f:close()
  end
  return dir
end

--- A loopback port nothing listens on (bound then released).
function M.closed_port()
  local socket = require "socket"
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

--- The emulator's log entries for one call id, in order.
function M.log_for(emu, id)
  local out = {}
  for _, e in ipairs(emu:log()) do
    if e.id == id then out[#out + 1] = e end
  end
  return out
end

--- Inside a describe block: raise when the LuaJIT core (what nginx loads) is
--- missing, so busted reports an error for the block. Every make target that
--- runs these specs builds it first (`openresty-core`): a missing core is a
--- lost feature, never a pending spec.
function M.require_luajit_core()
  if M.luajit_core_built() then return end
  error("build/luajit/acscall/core.so is missing: run `make openresty-core`", 0)
end

local Example = {}
Example.__index = Example

-- The examples' proxy_ssl_trusted_certificate when a spec gives none: one
-- CA, not the system bundle. nginx 1.22 loads that file once per location
-- that may proxy to https (acscall.conf's ladder: 30 of them), ~0.6 s of a
-- start with Debian's bundle; a spec over plain HTTP needs none of it, and a
-- spec refusing a certificate needs only a CA that did not sign it.
M.SMALL_CA = "/etc/ssl/certs/ISRG_Root_X1.pem"
do
  local f = io.open(M.SMALL_CA, "r")
  if f then f:close() else M.SMALL_CA = "" end
end

-- the shell command starting one example (stdout, stderr and exit status to files)
local function start_command(opts, base)
  local q = helpers.shell_quote
  local args = {}
  for i, a in ipairs(opts.args or {}) do args[i] = q(a) end
  local extra = {}
  for k, v in pairs(opts.env or {}) do extra[#extra + 1] = k .. "=" .. q(v) .. " " end
  table.sort(extra)
  -- the runner's own Entra ID variables never reach the example's nginx
  local clean = "env -u ACSCALL_AUTH -u ACSCALL_AZURE_CLI -u AZURE_TENANT_ID -u AZURE_CLIENT_ID"
    .. " -u AZURE_CLIENT_SECRET -u AZURE_AUTHORITY_HOST -u AZURE_FEDERATED_TOKEN_FILE"
    .. " -u AZURE_POD_IDENTITY_AUTHORITY_HOST -u IDENTITY_ENDPOINT -u IDENTITY_HEADER "
  return "(" .. clean .. table.concat(extra) .. "ACS_CONNECTION_STRING=" .. q(opts.connection_string or "")
    .. " ACS_ENDPOINT=" .. q(opts.endpoint or "") .. " ACS_TOKEN=" .. q(opts.token or "")
    .. " ACS_CA_FILE=" .. q(opts.ca_file or M.SMALL_CA) .. " " .. q(M.example_cmd) .. " start "
    .. table.concat(args, " ") .. " >" .. q(base .. ".out") .. " 2>" .. q(base .. ".err")
    .. "; echo $? >" .. q(base .. ".rc") .. ")"
end

--- Start several examples at once (each as start_example's opts); returns
--- them in order. If one fails, the others are stopped and it raises.
function M.start_examples(list)
  local bases, cmds = {}, {}
  for i, opts in ipairs(list) do
    bases[i] = os.tmpname()
    cmds[i] = start_command(opts, bases[i]) .. " &"
  end
  helpers.run(table.concat(cmds, "\n") .. "\nwait")
  local started, failed = {}, nil
  for i, base in ipairs(bases) do
    local out = helpers.read_file(base .. ".out") or ""
    local err = helpers.read_file(base .. ".err") or ""
    local rc = (helpers.read_file(base .. ".rc") or ""):match("%d+")
    for _, ext in ipairs{ "", ".out", ".err", ".rc" } do os.remove(base .. ext) end
    local env = helpers.parse_env(out)
    if rc ~= "0" or not env.ACSCALL_EXAMPLE_URL then
      failed = failed or ("examples/openresty/run start failed (exit " .. tostring(rc) .. "): " .. err .. out)
    else
      started[i] = setmetatable({
        env = env, dir = env.ACSCALL_EXAMPLE_DIR, port = tonumber(env.ACSCALL_EXAMPLE_PORT),
        url = env.ACSCALL_EXAMPLE_URL, thread_url = env.ACSCALL_EXAMPLE_THREAD_URL,
        blocking_url = env.ACSCALL_EXAMPLE_BLOCKING_URL,
      }, Example)
    end
  end
  if failed then
    for _, ex in pairs(started) do ex:stop() end
    error(failed, 2)
  end
  return started
end

--- Start examples/openresty/run against an endpoint. opts: connection_string
--- (or endpoint + token), ca_file, args (a list of run options, e.g.
--- {"--timeout", "0.5"}), env (more environment variables, e.g. ACSCALL_AUTH).
function M.start_example(opts)
  return M.start_examples{ opts }[1]
end

function Example:stop()
  if self.stopped then return true end
  self.stopped = true
  local _, ok = helpers.run(helpers.shell_quote(M.example_cmd) .. " stop --dir "
    .. helpers.shell_quote(self.dir) .. " 2>&1")
  return ok
end

--- Stop several examples at once (a list or map of them).
function M.stop_examples(list)
  local cmds = {}
  for _, ex in pairs(list) do
    if not ex.stopped then
      ex.stopped = true
      cmds[#cmds + 1] = helpers.shell_quote(M.example_cmd) .. " stop --dir " .. helpers.shell_quote(ex.dir)
        .. " >/dev/null 2>&1 &"
    end
  end
  if #cmds > 0 then helpers.run(table.concat(cmds, "\n") .. "\nwait") end
end

function Example:error_log()
  return helpers.read_file(self.dir .. "/error.log") or ""
end

--- A chunked body (RFC 9112 7.1) as its data (nil when malformed).
function M.dechunk(s)
  local out, pos = {}, 1
  while true do
    local size, after = s:match("^(%x+)[^\r\n]*\r\n()", pos)
    if not size then return nil end
    size = tonumber(size, 16)
    if size == 0 then return table.concat(out) end
    out[#out + 1] = s:sub(after, after + size - 1)
    pos = after + size + 2
  end
end

--- GET every path at once on 127.0.0.1:port, one connection each (luasocket,
--- non-blocking, one select loop: no client-side serialisation).
--- Returns a list of {status=, body=, raw=, t= (seconds to the answer), err=} in the
--- order of paths, and the seconds taken.
function M.parallel_get(port, paths, timeout)
  local socket = require "socket"
  timeout = timeout or 10
  local start = socket.gettime()
  local conns, results, pending = {}, {}, 0
  for i, path in ipairs(paths) do
    local c = assert(socket.tcp())
    c:settimeout(timeout)
    assert(c:connect("127.0.0.1", port))
    assert(c:send("GET " .. path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"))
    c:settimeout(0)
    conns[c] = { i = i, chunks = {} }
    results[i] = {}
    pending = pending + 1
  end
  while pending > 0 and socket.gettime() - start < timeout do
    local list = {}
    for c in pairs(conns) do list[#list + 1] = c end
    local readable = socket.select(list, nil, 0.5)
    for _, c in ipairs(readable or {}) do
      local st = conns[c]
      local data, err, partial = c:receive(65536)
      local got = data or partial
      if got and got ~= "" then st.chunks[#st.chunks + 1] = got end
      if err == "closed" then
        local raw = table.concat(st.chunks)
        local r = results[st.i]
        r.status = tonumber(raw:match("^HTTP/1%.%d (%d%d%d)"))
        local head, body = raw:match("^(.-\r\n)\r\n(.*)$")
        if head and head:lower():find("\ntransfer%-encoding: chunked\r\n") then
          body = M.dechunk(body)
        end
        r.body = body
        r.raw = raw
        r.t = socket.gettime() - start
        c:close()
        conns[c] = nil
        pending = pending - 1
      end
    end
  end
  for c, st in pairs(conns) do
    results[st.i].err = "timeout"
    c:close()
  end
  return results, socket.gettime() - start
end

local Nginx = {}
Nginx.__index = Nginx

--- Start Debian's nginx with a configuration of our own in a fresh prefix
--- directory (removed by :stop()). conf: the text of nginx.conf, where
--- @PREFIX@ is that directory and @PORT@ a free loopback port (tried again
--- on another port when it was taken). globals: main-context directives
--- given with `-g` (e.g. "pid @PREFIX@/nginx.pid;"); env: variables set in
--- nginx's environment. Returns {dir=, port=, conf=}.
function M.start_nginx(conf, globals, env)
  local q = helpers.shell_quote
  local dir = os.tmpname()
  os.remove(dir)
  assert(helpers.run("mkdir -p " .. q(dir .. "/tmp") .. " " .. q(dir .. "/logs")))
  local last = ""
  for _ = 1, 10 do
    local port = M.closed_port()
    local text = conf:gsub("@PREFIX@", dir):gsub("@PORT@", tostring(port))
    local f = assert(io.open(dir .. "/nginx.conf", "w"))
    f:write(text)
    f:close()
    local g = globals and (" -g " .. q((globals:gsub("@PREFIX@", dir)))) or ""
    local vars = {}
    for k, v in pairs(env or {}) do vars[#vars + 1] = k .. "=" .. q(v) end
    local out, ok = helpers.run("env " .. table.concat(vars, " ") .. " /usr/sbin/nginx -p " .. q(dir) .. " -c " .. q(dir .. "/nginx.conf")
      .. " -e " .. q(dir .. "/error.log") .. g .. " 2>&1")
    if ok then
      local self = setmetatable({ dir = dir, port = port, conf = text }, Nginx)
      local socket = require "socket"
      for _ = 1, 300 do
        local c = socket.tcp()
        c:settimeout(0.1)
        local up = c:connect("127.0.0.1", port)
        c:close()
        if up then return self end
        socket.sleep(0.01)
      end
      self:stop()
      error("nginx did not listen on " .. port .. ": " .. (helpers.read_file(dir .. "/error.log") or ""), 2)
    end
    last = out
    if not out:find("Address already in use", 1, true) then break end
  end
  helpers.run("rm -rf " .. q(dir))
  error("nginx did not start: " .. last, 2)
end

function Nginx:error_log()
  return helpers.read_file(self.dir .. "/error.log") or ""
end

function Nginx:stop()
  if self.stopped then return end
  self.stopped = true
  local q = helpers.shell_quote
  local pid = (helpers.read_file(self.dir .. "/nginx.pid") or ""):match("%d+")
  if pid then
    -- KILL to the whole process group (daemon on: the master called
    -- setsid(), so its pid is the group's id): nothing of a spec's nginx
    -- needs a clean exit, and TERM took 0.3-1.6 s (nginx 1.22's master waits
    -- for a worker still sending a trickling or endless answer)
    -- (gone = no /proc entry, or a zombie until init reaps it)
    helpers.run("p=" .. pid .. "; kill -KILL -$p 2>/dev/null; for i in $(seq 1 50); do"
      .. " case $(cut -d' ' -f3 /proc/$p/stat 2>/dev/null) in ''|Z|X) break ;; esac; sleep 0.01; done")
  end
  helpers.run("rm -rf " .. q(self.dir))
end

--- "user root root;" when the specs run as root (nginx's workers then read
--- the checkout as we do), else "".
function M.root_user()
  return (helpers.run("id -u")):match("^0%s") and "user root root;" or ""
end

--- The text of the fenced ```nginx block of a Markdown file that follows the
--- line `<!-- spec: NAME -->` (docs/openresty.md's convention).
function M.doc_block(path, name)
  local text = assert(helpers.read_file(path), path)
  local block = text:match("<!%-%- spec: " .. name:gsub("%-", "%%-") .. " %-%->%s*\n```nginx\n(.-)\n```")
  return assert(block, "no ```nginx block after <!-- spec: " .. name .. " --> in " .. path)
end

--- A service that answers what a hostile or broken one can (spec/support/hostile_upstream.lua):
--- its endpoint is `http://127.0.0.1:<port>/`; the call id picks the answer.
function M.start_hostile()
  local root = helpers.repo_root()
  return M.start_nginx(M.root_user() .. [[
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
daemon on;
worker_processes 1;
pid @PREFIX@/nginx.pid;
error_log @PREFIX@/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path @PREFIX@/tmp;
  proxy_temp_path @PREFIX@/tmp;
  lua_package_path "]] .. root .. [[/spec/support/?.lua;/usr/share/lua/5.1/?.lua;;";
  lua_socket_log_errors off;
  server {
    listen 127.0.0.1:@PORT@;
    location / { content_by_lua_block { require("hostile_upstream").serve() } }
  }
}
]])
end

--- The hostile service and an example gateway in front of it (attempt
--- timeout 1 s, deadline 2 s, no retries: each case is one attempt), for a
--- describe block: `lazy_setup(gw.start)`, `lazy_teardown(gw.stop)`;
--- `gw.get(id)` GETs prefix .. id (parallel_get's result and the seconds
--- taken); `gw.ex` is the example once started; `gw.size_cases(it)` adds
--- the cases every path passes alike (a call of 300 KB, 1 MiB and max_body
--- bytes answers 200 with that call).
function M.hostile_gateway(prefix)
  local cjson = require "cjson.safe"
  local max_body = require("acscall.resty").DEFAULT_MAX_BODY
  local gw = {}
  function gw.start()
    gw.hostile = M.start_hostile()
    gw.ex = M.start_example{ endpoint = "http://127.0.0.1:" .. gw.hostile.port .. "/", token = "t",
      args = { "--timeout", "1", "--deadline", "2", "--retries", "0" } }
  end
  function gw.stop()
    if gw.ex then gw.ex:stop() end
    if gw.hostile then gw.hostile:stop() end
  end
  function gw.get(id)
    local t0 = helpers.now()
    local r = M.parallel_get(gw.ex.port, { prefix .. id }, 20 * helpers.slow)[1]
    return r, helpers.now() - t0
  end
  function gw.size_cases(it)
    local la = require "luassert" -- (busted's assert, which a module does not see)
    for _, size in ipairs{ 300 * 1024, 1024 * 1024, max_body } do
      it("receives a call of " .. size .. " bytes (max_body is " .. max_body .. ")", function()
        local r = gw.get("size-" .. size)
        la.are.equal(200, r.status, tostring(r.err) .. " " .. gw.ex:error_log())
        local call = la.is_table(cjson.decode(r.body or ""), tostring(r.body):sub(1, 200))
        la.are.equal("size-" .. size, call.callConnectionId)
      end)
    end
  end
  return gw
end

--- docs/openresty.md's block NAME (doc_conf) started against the emulator
--- `emu`, its connection string in nginx's environment (the block's `env`
--- line passes it on).
function M.start_doc_nginx(name, emu)
  return M.start_nginx(M.doc_conf(name, emu.port), M.root_user() .. " pid @PREFIX@/nginx.pid;",
    { ACS_CONNECTION_STRING = emu.connection_string })
end

--- The ```nginx block of docs/openresty.md after `<!-- spec: NAME -->`, run
--- as written but for the places a checkout differs from a LuaRocks tree:
--- its paths pointed at this checkout (lua/, build/luajit/, acscall.conf and
--- acscall_proxy_first.conf),
--- its upstream at 127.0.0.1:PORT (the emulator), its listen at @PORT@.
function M.doc_conf(name, port)
  local root = helpers.repo_root()
  local conf = M.doc_block(root .. "/docs/openresty.md", name)
  local function swap(from, to)
    local i, j = conf:find(from, 1, true)
    assert(i, "docs/openresty.md's " .. name .. " block no longer holds: " .. from)
    conf = conf:sub(1, i - 1) .. to .. conf:sub(j + 1)
  end
  swap("/usr/local/share/lua/5.1/?.lua;/usr/local/share/lua/5.1/?/init.lua;",
    root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;")
  swap("/usr/local/lib/lua/5.1/?.so;", root .. "/build/luajit/?.so;")
  swap("/usr/local/lib/luarocks/rocks-5.1/acscall/0.1.0-1/conf/acscall.conf",
    root .. "/lua/acscall/nginx/acscall.conf")
  if conf:find("conf/acscall_proxy_first.conf", 1, true) then
    swap("/usr/local/lib/luarocks/rocks-5.1/acscall/0.1.0-1/conf/acscall_proxy_first.conf",
      root .. "/lua/acscall/nginx/acscall_proxy_first.conf")
  end
  swap("myresource.communication.azure.com:443", "127.0.0.1:" .. port)
  swap("listen 127.0.0.1:8080;", "listen 127.0.0.1:@PORT@;")
  return conf
end

return M
