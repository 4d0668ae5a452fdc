--- acscall.watch: follow many calls at once, on top of `client:get_calls`.
--
--     local w = client:watch({"id-1", "id-2"}, {interval = 2, stop_when_ended = true})
--     for ev in w:events() do
--       print(ev.time, ev.id, ev.type, ev.state or ev.msg)
--     end
--     print(w.stopped) -- why the loop ended
--
-- Events (plain tables, `type`, `id` and `time` always):
--
-- * `seen`: the first answer for a call (`state`, `call`);
-- * `state`: its `callConnectionState` changed (`previous`, `state`, `call`);
-- * `ended`: it is over and leaves the watch (`reason = "disconnected"` with
--   `state`, `call`; or `reason = "gone"`: a 404 after it was seen);
-- * `failed`: a fetch failed (`msg`, `info` from the core). `final = true`
--   when waiting will not fix it (a 404 for a call never seen, another 4xx
--   but 408/429, a credential refused: `info.kind == "auth"`): the call
--   leaves the watch; otherwise it is fetched again at its interval.
--
-- Pacing: a round fetches the calls that are due, at most `concurrency` of
-- them, all at once (one `get_calls`); the next round starts when it is
-- done, so at most `concurrency` requests are ever in flight, and a round
-- whose request meets 429/503 holds every other request while the core
-- waits the server's Retry-After before its retry: the whole watch pauses,
-- not each id. A 429/503 that outlasts the core's retries (or meets
-- `retries = false`) pauses the whole watch again for `interval`, doubling
-- per throttled round, at most `max_interval`; and a failure whose `info`
-- carries the server's wait (`info.retry_after`, any status) pauses it for
-- at least that long. A call is fetched every `interval` seconds while it
-- changes; each unchanged answer stretches its interval by `backoff`, up
-- to `max_interval` (the wait drawn between `interval` and the stretched
-- interval); other waits are jittered by +-`jitter` (a fraction), and
-- the first fetches of more than `concurrency` calls are spread over the
-- first `interval`, so a fleet is never fetched in one burst.
-- @module acscall.watch

local core = require "acscall.core"

local M = {}

local DEFAULTS = {
  interval = 2,        -- seconds between fetches of a call that changes
  max_interval = 10,   -- the longest, for a call that stopped changing
  backoff = 1.5,       -- an unchanged answer stretches the interval by this
  jitter = 0.1,        -- each wait is the interval +- this fraction
  concurrency = 16,    -- requests in flight (one round)
}
M.DEFAULTS = DEFAULTS

local KNOWN = {interval = true, max_interval = true, backoff = true, jitter = true, concurrency = true,
  stop_when_ended = true, deadline = true, _clock = true, _sleep = true, _random = true}

local SLICE = 0.1 -- the longest nap: Ctrl-C is seen within it

local function try(name)
  local ok, m = pcall(require, name)
  if ok and type(m) == "table" then return m end
end

-- A clock in epoch seconds that does not jump (monotonic time from an
-- epoch read once), and a sleep: luasystem, else LuaSocket.
local function default_clock_and_sleep()
  local system, socket = try("system"), try("socket")
  if system and system.monotime and system.gettime and system.sleep then
    local wall0, mono0 = system.gettime(), system.monotime()
    return function() return wall0 + (system.monotime() - mono0) end, system.sleep
  end
  if socket and socket.gettime and socket.sleep then
    return socket.gettime, socket.sleep
  end
  return nil, nil
end

local function is_interruption(e)
  return type(e) == "string" and e:sub(-12) == "interrupted!"
end

---------------------------------------------------------------------------
-- A binary heap of call records by `due`.

local function heap_push(h, rec)
  local i = #h + 1
  h[i] = rec
  while i > 1 do
    local p = (i - i % 2) / 2
    if h[p].due <= rec.due then break end
    h[i], h[p] = h[p], rec
    i = p
  end
end

local function heap_pop(h)
  local top, n = h[1], #h
  local last = h[n]
  h[n] = nil
  n = n - 1
  if n > 0 then
    local i = 1
    h[1] = last
    while true do
      local l, r, m = 2 * i, 2 * i + 1, i
      if l <= n and h[l].due < h[m].due then m = l end
      if r <= n and h[r].due < h[m].due then m = r end
      if m == i then break end
      h[i], h[m] = h[m], h[i]
      i = m
    end
  end
  return top
end

---------------------------------------------------------------------------

local Watcher = {}
Watcher.__index = Watcher

local function check_number(opts, name, min)
  local v = opts[name]
  if v == nil then return DEFAULTS[name] end
  if type(v) ~= "number" or v ~= v or v < min or v == math.huge then
    error(("client:watch: '%s' must be a number >= %s"):format(name, tostring(min)), 3)
  end
  return v
end

local function check_id(id, level)
  if type(id) ~= "string" or id == "" then
    error("client:watch: call ids must be non-empty strings, got " .. type(id), level + 1)
  end
end

--- Watch calls (the `watch` method of a client).
-- @param client an `acscall` client
-- @tparam {string,...} ids callConnectionIds (may be empty: add later)
-- @tparam[opt] table opts `interval` (s, 2), `max_interval` (s, 10),
--  `backoff` (1.5), `jitter` (0.1), `concurrency` (16),
--  `stop_when_ended` (the loop ends once no call is left in the watch),
--  `deadline` (s from now: the loop ends then); for specs `_clock`
--  (seconds) and `_sleep` (seconds)
-- @return a watcher
-- @raise on a wrong type or value (a programmer mistake)
function M.new(client, ids, opts)
  if type(ids) ~= "table" then
    error("client:watch: a list of call ids expected, got " .. type(ids), 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then
    error("client:watch: options table expected, got " .. type(opts), 2)
  end
  for k in pairs(opts) do
    if not KNOWN[k] then error("client:watch: unknown option '" .. tostring(k) .. "'", 2) end
  end
  local w = setmetatable({
    client = client,
    interval = check_number(opts, "interval", 0),
    max_interval = check_number(opts, "max_interval", 0),
    backoff = check_number(opts, "backoff", 1),
    jitter = check_number(opts, "jitter", 0),
    concurrency = check_number(opts, "concurrency", 1),
    stop_when_ended = opts.stop_when_ended and true or false,
    calls = {},   -- id -> record {id, state, seen, iv, due}
    count = 0,    -- records in the watch
    heap = {},
    queue = {}, qhead = 1, qtail = 0,
    pause_until = nil,
    throttled = 0, -- consecutive throttled rounds
    --- Requests sent (for statistics), rounds made.
    requests = 0, rounds = 0,
    --- Why the loop ended: nil while running, then "ended", "deadline",
    -- "interrupted" or "stopped".
    stopped = nil,
  }, Watcher)
  local cmax = core.LIMITS.concurrency_max -- get_calls' own bound
  if w.concurrency ~= math.floor(w.concurrency) or w.concurrency > cmax then
    error(("client:watch: 'concurrency' must be an integer in [1, %d]"):format(cmax), 2)
  end
  if w.max_interval < w.interval then w.max_interval = w.interval end
  if w.jitter >= 1 then error("client:watch: 'jitter' must be below 1", 2) end
  local clock, sleep = default_clock_and_sleep()
  w.clock = opts._clock or clock
  w.sleep = opts._sleep or sleep
  if not (w.clock and w.sleep) then
    error("client:watch: needs luasystem or LuaSocket for its clock and sleep", 2)
  end
  w.random = opts._random or math.random
  local now = w.clock()
  if opts.deadline ~= nil then
    if type(opts.deadline) ~= "number" or opts.deadline ~= opts.deadline then
      error("client:watch: 'deadline' must be a number of seconds", 2)
    end
    w.deadline = now + opts.deadline
  end
  for i = 1, #ids do check_id(ids[i], 2) end
  -- more calls than one round takes: spread the first fetches over the
  -- first interval
  local spread = #ids > w.concurrency and w.interval or 0
  for i = 1, #ids do w:_add(ids[i], now + spread * w.random()) end
  return w
end

function Watcher:_add(id, due)
  if self.calls[id] then return false end
  local rec = {id = id, iv = self.interval, due = due}
  self.calls[id] = rec
  self.count = self.count + 1
  heap_push(self.heap, rec)
  return true
end

--- Add a call (fetched at once); callable inside the loop.
-- @treturn boolean false when it is already watched
function Watcher:add(id)
  check_id(id, 2)
  return self:_add(id, self.clock())
end

--- Remove a call (no event for it); callable inside the loop.
-- @treturn boolean false when it was not watched
function Watcher:remove(id)
  local rec = self.calls[id]
  if not rec then return false end
  rec.removed = true -- its heap entry is skipped
  self.calls[id] = nil
  self.count = self.count - 1
  return true
end

--- The ids watched now (unordered).
function Watcher:ids()
  local list = {}
  for id in pairs(self.calls) do list[#list + 1] = id end
  return list
end

--- End the loop: the next step of `events()` returns nil.
function Watcher:stop()
  self.stopped = self.stopped or "stopped"
end

function Watcher:_emit(ev)
  self.qtail = self.qtail + 1
  self.queue[self.qtail] = ev
end

function Watcher:_leave(rec)
  rec.removed = true
  self.calls[rec.id] = nil
  self.count = self.count - 1
end

-- The next fetch of rec after an answer at now.
-- While an interval stretches, the wait is drawn between `interval` and
-- the stretched interval ("full jitter"): calls that started together
-- drift apart as they slow down, instead of keeping their first phase and
-- meeting in bursts every max_interval (a simulated fleet of 2,000 did:
-- 2,000 requests within 2 s of every 10).
function Watcher:_schedule(rec, now, changed)
  local old = rec.iv
  if changed then
    rec.iv = self.interval
  else
    rec.iv = math.min(rec.iv * self.backoff, self.max_interval)
  end
  local wait
  if rec.iv > old then
    wait = self.interval + (rec.iv - self.interval) * self.random()
  else
    wait = rec.iv * (1 + self.jitter * (2 * self.random() - 1))
  end
  rec.due = now + wait
  heap_push(self.heap, rec)
end

-- Waiting will not fix it: a 4xx but 408 and 429, or a refused credential.
local function final_failure(info)
  if type(info) ~= "table" then return false end
  if info.kind == "auth" then return true end
  local s = tonumber(info.status)
  return info.kind == "http" and s ~= nil and s >= 400 and s < 500 and s ~= 408 and s ~= 429
end

local function throttled(info)
  local s = type(info) == "table" and tonumber(info.status)
  return s == 429 or s == 503
end

-- The wait the server asked for (the core's info.retry_after, seconds), or nil.
local function server_wait(info)
  local ra = type(info) == "table" and tonumber(info.retry_after)
  if ra and ra >= 0 then return ra end
end

-- Ctrl-C inside get_calls: the batch ends its transfers at once and says so.
local function interrupted_result(r)
  return r.info and r.info.kind == "transport" and tostring(r.err):find("interrupted", 1, true) ~= nil
end

function Watcher:_result(rec, r, now)
  local id = rec.id
  local call = r.call
  if call then
    local state = call.callConnectionState
    local changed = false
    if not rec.seen then
      rec.seen = true
      changed = true
      self:_emit{type = "seen", id = id, time = now, state = state, call = call}
    elseif state ~= rec.state then
      changed = true
      self:_emit{type = "state", id = id, time = now, previous = rec.state, state = state, call = call}
    end
    rec.state = state
    if state == "disconnected" then
      self:_leave(rec)
      self:_emit{type = "ended", id = id, time = now, reason = "disconnected", state = state, call = call}
    else
      self:_schedule(rec, now, changed)
    end
    return
  end
  local info = r.info
  if type(info) == "table" and info.kind == "http" and tonumber(info.status) == 404 and rec.seen then
    self:_leave(rec)
    self:_emit{type = "ended", id = id, time = now, reason = "gone", state = rec.state, info = info}
    return
  end
  local final = final_failure(info)
  if final then
    self:_leave(rec)
  elseif (throttled(info) or server_wait(info)) and self.pause_until then
    rec.due = self.pause_until -- with the whole fleet, when the pause ends
    heap_push(self.heap, rec)
  else
    self:_schedule(rec, now, true)
  end
  self:_emit{type = "failed", id = id, time = now, msg = r.err, info = info, final = final}
end

-- One round: the due calls, at most `concurrency`, in one get_calls.
function Watcher:_round(now)
  local batch, recs = {}, {}
  local heap = self.heap
  -- calls due within half the jitter join this round (fuller rounds; each
  -- fetch stays within its jittered interval)
  local horizon = now + self.interval * self.jitter / 2
  while #batch < self.concurrency and heap[1] and heap[1].due <= horizon do
    local rec = heap_pop(heap)
    if not rec.removed then
      batch[#batch + 1] = rec.id
      recs[#recs + 1] = rec
    end
  end
  if #batch == 0 then return false end
  self.rounds = self.rounds + 1
  self.requests = self.requests + #batch
  local results = self.client:get_calls(batch, {concurrency = #batch})
  local t = self.clock()
  local slow, wait = false, nil
  for i = 1, #recs do
    local r = results[i]
    if interrupted_result(r) then
      self.stopped = "interrupted"
      return true
    end
    if throttled(r.info) then slow = true end
    local ra = server_wait(r.info)
    if ra and (wait == nil or ra > wait) then wait = ra end
  end
  -- one pause for the fleet: our own backoff, and never shorter than the
  -- longest wait the server asked for in this round
  local pause = 0
  if slow then
    pause = math.min(self.interval * 2 ^ self.throttled, self.max_interval)
    self.throttled = self.throttled + 1
  else
    self.throttled = 0
  end
  if wait and wait > pause then pause = wait end
  if slow or wait then self.pause_until = t + pause end
  for i = 1, #recs do
    local rec = recs[i]
    if not rec.removed then self:_result(rec, results[i], t) end -- (a finalizer may remove)
  end
  return true
end

-- Sleep in slices until `until_t` (or the deadline).
function Watcher:_nap(until_t)
  local now = self.clock()
  if self.deadline and until_t > self.deadline then until_t = self.deadline end
  local d = until_t - now
  if d > SLICE then d = SLICE end
  if d > 0 then self.sleep(d) end
end

-- Advance until an event is queued or the watch stops.
function Watcher:_step()
  while self.qhead > self.qtail and not self.stopped do
    local now = self.clock()
    if self.deadline and now >= self.deadline then
      self.stopped = "deadline"
    elseif self.stop_when_ended and self.count == 0 then
      self.stopped = "ended"
    elseif self.pause_until and now < self.pause_until then
      self:_nap(self.pause_until)
    elseif not self:_round(now) then
      local top = self.heap[1]
      while top and top.removed do
        heap_pop(self.heap)
        top = self.heap[1]
      end
      self:_nap(top and top.due or now + SLICE)
    end
  end
end

--- The events, for a generic `for`: `for ev in w:events() do ... end`.
-- The loop ends (`w.stopped` says why) at the deadline, with
-- `stop_when_ended` once no call is left, after `w:stop()`, or on Ctrl-C
-- (`"interrupted"`, the interruption swallowed: the code after the loop
-- runs). Events queued when it stops are still delivered, except after
-- Ctrl-C and `w:stop()`.
function Watcher:events()
  return function()
    if self.stopped == "interrupted" or self.stopped == "stopped" then return nil end
    if self.qhead > self.qtail and not self.stopped then
      local ok, e = pcall(self._step, self)
      if not ok then
        if not is_interruption(e) then error(e, 0) end
        self.stopped = "interrupted"
        return nil
      end
      if self.stopped == "interrupted" then return nil end
    end
    if self.qhead > self.qtail then return nil end
    local ev = self.queue[self.qhead]
    self.queue[self.qhead] = nil
    self.qhead = self.qhead + 1
    return ev
  end
end

return M
