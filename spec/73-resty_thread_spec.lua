-- The thread path (acscall.resty.get_call) under overload in real nginx: when
-- ngx.run_worker_thread cannot take the task ("no available Lua vm": the
-- lua_worker_thread_vm_pool_size VMs are busy) the example answers a JSON 503
-- with Retry-After (kind "thread"), error.log gets no traceback per request,
-- and the worker serves normally once the burst is over. The other refusal,
-- "ngx_thread_task_post failed" (queue full), crashes the worker in
-- lua-nginx-module 0.10.23 (signal 6, "free(): invalid size"): the example
-- refuses a max_queue that could fill. Needs build/luajit/acscall/core.so.
local helpers = require "spec.helpers"
local ngxh = require "spec.helpers_ngx"
local cjson = require "cjson.safe"

local CALL = "18dea47f-b081-4107-9a5c-4300819d2c6c"
local N = 24

local function burst()
  local t = {}
  for i = 1, N do t[i] = "/thread/calls/" .. CALL .. "?n=" .. i end
  return t
end

describe("thread path under overload (one worker)", function()
  ngxh.require_luajit_core()

  local emu
  local started = {}
  lazy_setup(function()
    -- each call holds its VM (and thread) 200 ms: the burst of 24 arrives well within it
    emu = helpers.start_emulator{ latency = 200 }
  end)
  lazy_teardown(function()
    for _, ex in ipairs(started) do ex:stop() end
    if emu then emu:stop() end
  end)

  local cases = {
    { name = "lua_worker_thread_vm_pool_size 2, 4 threads", args = { "--vm-pool", "2", "--threads", "4" } },
    { name = "lua_worker_thread_vm_pool_size 3, 1 thread (the rest queue)",
      args = { "--vm-pool", "3", "--threads", "1" } },
  }
  for _, case in ipairs(cases) do
    it(case.name .. ": JSON 503s with Retry-After, no tracebacks, then recovers", function()
      local ex = ngxh.start_example{ connection_string = emu.connection_string, args = case.args }
      started[#started + 1] = ex
      local res = ngxh.parallel_get(ex.port, burst(), 30)
      local ok, refused = 0, 0
      for i = 1, N do
        local r = res[i]
        if r.status == 200 then
          ok = ok + 1
        else
          assert.are.equal(503, r.status, tostring(r.raw))
          assert.matches("Content%-Type: application/json", r.raw)
          assert.matches("\r\nRetry%-After: 1\r\n", r.raw)
          local err = assert(cjson.decode(r.body)).error
          assert.are.equal("thread", err.kind)
          assert.matches("^thread: ", err.message)
          refused = refused + 1
        end
      end
      assert.is_true(ok >= 1, "none served")
      assert.is_true(refused >= 1, "none refused: the pool was not overloaded")
      local log = ex:error_log()
      assert.not_matches("stack traceback", log)
      assert.is_true(#log < 4096, "error.log grew by " .. #log .. " bytes")
      -- the burst is over: the worker and the pool serve again
      local after = ngxh.parallel_get(ex.port, { "/thread/calls/" .. CALL, "/calls/" .. CALL }, 30)
      assert.are.equal(200, after[1].status, tostring(after[1].raw))
      assert.are.equal(200, after[2].status, tostring(after[2].raw))
    end)
  end

  it("the example refuses a thread_pool queue that could fill (it would crash the worker)", function()
    local ok, err = pcall(ngxh.start_example, { connection_string = emu.connection_string,
      args = { "--max-queue", "1" } })
    assert.is_false(ok)
    assert.matches("max%-queue must be >= worker_connections", err)
  end)
end)
