-- Fetch one call and print it readably.
-- usage: lua5.4 examples/demo.lua CALL_ID   (ACS_CONNECTION_STRING, or
--        ACS_ENDPOINT + ACS_TOKEN, in the environment; ACS_CA_FILE optional)
local acscall = require "acscall"

local id = arg[1] or "18dea47f-b081-4107-9a5c-4300819d2c6c"
local opts = {ca_file = os.getenv("ACS_CA_FILE")}
if os.getenv("ACS_CONNECTION_STRING") then
  opts.connection_string = os.getenv("ACS_CONNECTION_STRING")
elseif os.getenv("ACS_ENDPOINT") and os.getenv("ACS_TOKEN") then
  opts.endpoint, opts.token = os.getenv("ACS_ENDPOINT"), os.getenv("ACS_TOKEN")
else
  io.stderr:write("demo: set ACS_CONNECTION_STRING, or ACS_ENDPOINT and ACS_TOKEN\n")
  os.exit(2)
end

local client = acscall.new(opts)
local call, err, info = client:get_call(id)
client:close()
if not call then
  io.stderr:write("demo: ", err, "\n")
  os.exit(info.kind == "http" and 1 or 3)
end

local function line(k, v) if v ~= nil then print(("%-22s %s"):format(k, tostring(v))) end end
line("callConnectionId", call.callConnectionId)
line("callConnectionState", call.callConnectionState)
line("serverCallId", call.serverCallId)
line("correlationId", call.correlationId)
line("callbackUri", call.callbackUri)
line("source", call.source and acscall.describe(call.source))
line("sourceCallerIdNumber", call.sourceCallerIdNumber and call.sourceCallerIdNumber.value)
line("sourceDisplayName", call.sourceDisplayName)
for i, t in acscall.targets(call) do
  line(("targets[%d]"):format(i), acscall.describe(t) .. "  (" .. t.rawId .. ")")
end
line("answeredBy", call.answeredBy and call.answeredBy.id)
if call.mediaStreamingSubscription then
  line("mediaStreaming", call.mediaStreamingSubscription.state)
end
if call.transcriptionSubscription then
  line("transcription", call.transcriptionSubscription.state)
end
