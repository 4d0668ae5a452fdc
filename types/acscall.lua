---@meta acscall
-- LuaCATS annotations of the acscall module for lua-language-server (editor
-- completion and checks only; never loaded at run time). The reference is
-- docs/api.md; spec/96-types_spec.lua checks these against the code.
-- Wire names and shapes: "Call Connection - Get Call", api-version 2026-03-12
-- (https://learn.microsoft.com/rest/api/communication/callautomation/call-connection/get-call).

---@class acscall
---@field _VERSION string the library version, "x.y.z"
---@field DEFAULT_API_VERSION string the api-version sent when none is given ("2026-03-12")
---@field ID_MAX integer the longest call id accepted, in bytes (1024)
---@field CALL_FIELDS string[] the top-level fields of CallConnectionProperties, in schema order
---@field ARRAY_FIELDS table<string, true> the model's array fields (a set)
---@field KINDS table<acscall.ErrorKind, true> the closed set of `info.kind` values (a set)
---@field OPTIONS acscall.OptionSpec[] new's options, described once
---@field LIMITS acscall.Limits every limit and default, one table
---@field CallConnectionState table<acscall.CallConnectionState, acscall.CallConnectionState>
---@field MediaStreamingContentType table<acscall.MediaStreamingContentType, acscall.MediaStreamingContentType>
---@field MediaStreamingSubscriptionState table<acscall.MediaStreamingSubscriptionState, acscall.MediaStreamingSubscriptionState>
---@field TranscriptionResultType table<acscall.TranscriptionResultType, acscall.TranscriptionResultType>
---@field TranscriptionSubscriptionState table<acscall.TranscriptionSubscriptionState, acscall.TranscriptionSubscriptionState>
---@field CommunicationIdentifierModelKind table<acscall.CommunicationIdentifierModelKind, acscall.CommunicationIdentifierModelKind>
---@field CommunicationCloudEnvironmentModel table<acscall.CommunicationCloudEnvironmentModel, acscall.CommunicationCloudEnvironmentModel>
---@field credential acscall.credential the Entra ID credentials (loaded at first use)
local acscall = {}

-- ------------------------------------------------------------------ enums

---@alias acscall.CallConnectionState
---| "unknown"
---| "connecting"
---| "connected"
---| "transferring"
---| "transferAccepted"
---| "disconnecting"
---| "disconnected"

---@alias acscall.MediaStreamingContentType
---| "audio"

---@alias acscall.MediaStreamingSubscriptionState
---| "disabled"
---| "inactive"
---| "active"

---@alias acscall.TranscriptionResultType
---| "final"
---| "intermediate"

---@alias acscall.TranscriptionSubscriptionState
---| "disabled"
---| "inactive"
---| "active"

---@alias acscall.CommunicationIdentifierModelKind
---| "unknown"
---| "communicationUser"
---| "phoneNumber"
---| "microsoftTeamsUser"
---| "microsoftTeamsApp"
---| "teamsExtensionUser"

---@alias acscall.CommunicationCloudEnvironmentModel
---| "public"
---| "dod"
---| "gcch"

---@alias acscall.ErrorKind
---| "http" the service answered non-2xx
---| "transport" no response: refused, reset, timeout, DNS, TLS verification
---| "decode" a 2xx body that is not a valid CallConnectionProperties
---| "auth" the token provider or credential failed, or signing failed
---| "local" this process failed: out of memory, no random bytes
---| "thread" (OpenResty) the thread pool could not take the task

-- ------------------------------------------------------------------ the result

---@class acscall.CommunicationUserIdentifierModel
---@field id string the id of the communication user

---@class acscall.PhoneNumberIdentifierModel
---@field value string the phone number, usually in E.164 format
---@field isAnonymous? boolean true if the phone number is anonymous
---@field assertedId? string the asserted id of the phone number

---@class acscall.MicrosoftTeamsUserIdentifierModel
---@field userId string the Entra ID object id of the user (not anonymous)
---@field isAnonymous? boolean
---@field cloud? acscall.CommunicationCloudEnvironmentModel

---@class acscall.MicrosoftTeamsAppIdentifierModel
---@field appId string
---@field cloud? acscall.CommunicationCloudEnvironmentModel

---@class acscall.TeamsExtensionUserIdentifierModel
---@field userId string
---@field tenantId string
---@field resourceId string
---@field cloud? acscall.CommunicationCloudEnvironmentModel

--- An identifier as decoded: `kind` and `rawId` always present (inferred or
--- derived when the service omits them), plus the sub-object of its kind.
---@class acscall.CommunicationIdentifierModel
---@field kind acscall.CommunicationIdentifierModelKind|string
---@field rawId string
---@field communicationUser? acscall.CommunicationUserIdentifierModel
---@field phoneNumber? acscall.PhoneNumberIdentifierModel
---@field microsoftTeamsUser? acscall.MicrosoftTeamsUserIdentifierModel
---@field microsoftTeamsApp? acscall.MicrosoftTeamsAppIdentifierModel
---@field teamsExtensionUser? acscall.TeamsExtensionUserIdentifierModel

---@class acscall.MediaStreamingSubscription
---@field id? string
---@field state? acscall.MediaStreamingSubscriptionState|string
---@field subscribedContentTypes? (acscall.MediaStreamingContentType|string)[]

---@class acscall.TranscriptionSubscription
---@field id? string
---@field state? acscall.TranscriptionSubscriptionState|string
---@field subscribedResultTypes? (acscall.TranscriptionResultType|string)[]
---@field locale? string e.g. "en-AU"

--- A call as `get_call` returns it: the REST API's wire names; a JSON null
--- is an absent field; unknown fields are kept as sent.
---@class acscall.CallConnectionProperties
---@field callConnectionId? string
---@field serverCallId? string
---@field targets? acscall.CommunicationIdentifierModel[]
---@field callConnectionState? acscall.CallConnectionState|string
---@field callbackUri? string
---@field sourceCallerIdNumber? acscall.PhoneNumberIdentifierModel
---@field sourceDisplayName? string
---@field source? acscall.CommunicationIdentifierModel
---@field correlationId? string
---@field answeredBy? acscall.CommunicationUserIdentifierModel
---@field mediaStreamingSubscription? acscall.MediaStreamingSubscription
---@field transcriptionSubscription? acscall.TranscriptionSubscription
---@field answeredFor? acscall.PhoneNumberIdentifierModel

-- ------------------------------------------------------------------ errors

--- The `CommunicationError` of an error body (nested in `info.details` and `info.innererror`).
---@class acscall.CommunicationError
---@field code string
---@field message string
---@field target? string
---@field details? acscall.CommunicationError[]
---@field innererror? acscall.CommunicationError

--- The third value of every runtime failure (`nil, message, info`). Never a secret.
---@class acscall.Info
---@field kind acscall.ErrorKind
---@field status? integer the HTTP status (kind "http", "decode")
---@field code? string the service's error code (CommunicationError.code, or a token service's)
---@field message? string the service's error message
---@field target? string
---@field details? acscall.CommunicationError[]
---@field innererror? acscall.CommunicationError
---@field timeout? true the last attempt timed out (kind "transport")
---@field retry_after? number seconds the service asked to wait (retry-after-ms, x-ms-retry-after-ms or Retry-After)
---@field attempts? integer attempts made (absent when none was)
---@field request_id? string the service's x-ms-request-id, else the client request id
---@field client_request_id? string the x-ms-client-request-id sent

-- ------------------------------------------------------------------ options

--- One entry of `acscall.OPTIONS`.
---@class acscall.OptionSpec
---@field name string
---@field type string e.g. "string", "number", "false|table"
---@field doc string
---@field default? any
---@field min? number
---@field max? number
---@field min_exclusive? boolean min itself is refused

--- `acscall.LIMITS`: the knobs of csrc/acs_limits.h (seconds, bytes, counts).
---@class acscall.Limits
---@field api_version_max integer
---@field base_delay_default number
---@field concurrency_default integer
---@field concurrency_max integer
---@field connect_timeout_default number
---@field deadline_default number
---@field excerpt_cap integer bytes of a server's body quoted in a message
---@field fetch_max_body_default integer
---@field header_name_max integer
---@field id_max integer the longest call id, in bytes
---@field key_max integer
---@field max_body_default integer
---@field max_body_max integer
---@field max_body_min integer
---@field max_delay_default number
---@field max_depth_default integer
---@field max_depth_max integer
---@field max_depth_min integer
---@field msg_cap integer bytes of a message
---@field redact_bearer_min integer
---@field redact_min integer the shortest secret redacted, in bytes
---@field retries_default integer
---@field retries_max integer
---@field retry_statuses_max integer HTTP statuses one retries table may list
---@field seconds_max number the longest timeout, deadline or delay
---@field timeout_default number
---@field token_lifetime_max integer seconds: a credential's expires_on further ahead is refused
---@field user_agent_max integer
---@field pool_idle_max integer idle connections a client keeps
---@field secrets_max integer secrets one redaction takes
---@field spawn_args_max integer arguments of core.spawn
---@field spawn_output_default integer bytes per stream core.spawn keeps by default
---@field spawn_output_max integer
---@field spawn_timeout_default number seconds
---@field spawn_timeout_max number seconds

--- Retry classes as data, one shape everywhere: `new{retries =}`,
--- `core.fetcher{retries =}`, a fetch's `retries`, `next_attempt`'s `opts.retries`.
--- Fields override the client's (or fetcher's) one by one. Seconds.
---@class acscall.Retries
---@field max? integer retries after the first attempt (3)
---@field base_delay? number the first backoff (0.8)
---@field max_delay? number the longest backoff (60)
---@field statuses? integer[] HTTP statuses retried (408, 429, 500, 502, 503, 504)
---@field outcomes? string[] transport outcomes retried ("dns", "connect", "timeout", "send", "recv", "closed", "truncated")
---@field min_total? number keep retrying past max until this many seconds since the start
---@field min_total_statuses? integer[] the statuses min_total applies to (default: every retried outcome)
---@field by_status? table<integer, acscall.RetryStatus> a status's own schedule (replaces the whole map when given)

--- One status's schedule in `retries.by_status`: fields left out keep the retries table's.
---@class acscall.RetryStatus
---@field max? integer retries after the first attempt for this status
---@field base_delay? number
---@field max_delay? number
---@field min_total? number keep retrying this status past max until this many seconds since the start
---@field retry_after_only? boolean retried only when the server sets the wait (Retry-After)

--- One attempt, as the `on_attempt` hook sees it (never a secret).
---@class acscall.Attempt
---@field operation "get_call"|"get_calls"|"token"
---@field id? string the call id
---@field attempt integer 1 for the first
---@field status? integer the HTTP status, when one came
---@field kind? acscall.ErrorKind how it failed, when no status came
---@field outcome? string with kind: "timeout", "connect", "dns", ...
---@field duration number seconds
---@field wait? number seconds until the next attempt, when one follows
---@field reason? string why: "status 503", "timeout", "retry-after", "refresh", ...
---@field request_id? string
---@field client_request_id? string
---@field host? string

--- Options of `acscall.new`: an endpoint and exactly one credential.
---@class acscall.NewOptions
---@field endpoint? string https://<resource>.communication.azure.com/ (http:// only to loopback); required unless connection_string
---@field connection_string? string endpoint=...;accesskey=...
---@field access_key? string the resource's access key (base64): HMAC-SHA256 signing
---@field token? string a bearer token
---@field token_provider? fun(): string a function returning a bearer token, asked per call
---@field credential? acscall.TokenCredential an object with get_token (acscall.credential)
---@field api_version? string the api-version query value ("2026-03-12")
---@field ca_file? string a PEM CA bundle instead of the system store
---@field connect_timeout? number seconds to connect, per attempt (10)
---@field timeout? number seconds for one attempt, connecting included (30)
---@field deadline? number seconds for one call, retries and waits included (90)
---@field retries? false|integer|acscall.Retries
---@field max_body? integer response bytes accepted (4 MiB)
---@field max_depth? integer JSON nesting accepted (64)
---@field user_agent? string a suffix for the User-Agent header
---@field strict? boolean a known field of the wrong JSON type is a decode error (false)
---@field on_attempt? fun(attempt: acscall.Attempt) called once per attempt

---@class acscall.GetCallsOptions
---@field concurrency? integer requests in flight at once (16; 1-256)

---@class acscall.GetCallsResult
---@field id string
---@field call? acscall.CallConnectionProperties
---@field err? string
---@field info? acscall.Info

---@class acscall.NextAttemptOptions
---@field refreshable? boolean the credential can refresh its token
---@field refreshed? boolean it already did for this call
---@field retries? false|integer|acscall.Retries this call's retry classes, over the client's

--- Anything with `get_token` (the built-in credentials, or your own).
---@class acscall.TokenCredential
local TokenCredential = {}

---@param opts? {force_refresh?: boolean}
---@return string? token
---@return number|string expires_on_or_message Unix seconds, or the message
---@return acscall.Info? info
function TokenCredential:get_token(opts) end

-- ------------------------------------------------------------------ the client

---@class acscall.Client
local Client = {}

--- Fetch one call. `id`: 1 to 1024 bytes (else it raises).
---@param id string
---@return acscall.CallConnectionProperties? call
---@return string? message
---@return acscall.Info? info
function Client:get_call(id) end

--- Fetch many calls concurrently; results in input order, one per id.
---@param ids string[]
---@param opts? acscall.GetCallsOptions
---@return acscall.GetCallsResult[]
function Client:get_calls(ids, opts) end

--- The URL and signed headers of one attempt (for transports written in Lua).
---@param id string
---@param client_request_id? string the first attempt's, to retry
---@return string? url
---@return table<string, string>|string headers_or_message
---@return acscall.Info? info
function Client:request(id, client_request_id) end

--- The retry rule: seconds to wait, the next attempt's timeout and connect
--- timeout; "refresh" (refresh the token, retry once); or nil (stop).
---@param attempts integer made so far (0 before the first)
---@param elapsed number seconds since the call began
---@param outcome? integer|string the last HTTP status, or how it failed ("timeout", "connect", ...)
---@param headers? table<string, string> the last response's headers
---@param opts? acscall.NextAttemptOptions
---@return number|"refresh"|nil wait
---@return number? timeout
---@return number? connect_timeout
---@return string? reason why the last outcome is retried (on_attempt's reason: "status 503", "retry-after", ...)
function Client:next_attempt(attempts, elapsed, outcome, headers, opts) end

--- Follow many calls (acscall.watch): `for ev in w:events() do ... end`.
---@param ids string[] call ids (may be empty: add later)
---@param opts? acscall.WatchOptions
---@return acscall.Watcher
function Client:watch(ids, opts) end

--- Release the connections and wipe the credential (idempotent).
function Client:close() end

-- ------------------------------------------------------------------ watch

---@class acscall.WatchOptions
---@field interval? number seconds between fetches of a call that changes (2)
---@field max_interval? number the longest interval, for a call that stopped changing (10)
---@field backoff? number an unchanged answer stretches the interval by this (1.5)
---@field jitter? number other waits are the interval +- this fraction (0.1)
---@field concurrency? integer requests in flight (16)
---@field stop_when_ended? boolean the loop ends once no call is left (false)
---@field deadline? number seconds from now: the loop ends then

--- One event of a watch.
---@class acscall.WatchEvent
---@field type "seen"|"state"|"ended"|"failed"
---@field id string
---@field time number epoch seconds
---@field state? string the callConnectionState (seen, state, ended)
---@field previous? string the state before (state)
---@field call? acscall.CallConnectionProperties the whole call (seen, state, ended by disconnected)
---@field reason? "disconnected"|"gone" why it ended (ended)
---@field msg? string the failure's message (failed)
---@field info? acscall.Info the failure's details (failed; ended by a 404)
---@field final? boolean the call left the watch: waiting will not fix it (failed)

---@class acscall.Watcher
---@field stopped? "ended"|"deadline"|"interrupted"|"stopped" why the loop ended
---@field requests integer requests sent
local Watcher = {}

--- The iterator: `for ev in w:events() do ... end`.
---@return fun(): acscall.WatchEvent?
function Watcher:events() end

--- Add a call (fetched at once); false when already watched.
---@param id string
---@return boolean
function Watcher:add(id) end

--- Remove a call (no more events for it); false when not watched.
---@param id string
---@return boolean
function Watcher:remove(id) end

--- The ids watched now.
---@return string[]
function Watcher:ids() end

--- End the loop: the next step returns nil.
function Watcher:stop() end

-- ------------------------------------------------------------------ functions

--- Create a client. Mistakes in the options raise at the caller's line.
---@param opts acscall.NewOptions
---@return acscall.Client
function acscall.new(opts) end

--- HMAC-SHA256 headers for a request (pure).
---@param req {method: string, url: string, access_key: string, date?: string|number, body?: string}
---@return {host: string, ["x-ms-date"]: string, ["x-ms-content-sha256"]: string, authorization: string}
function acscall.sign(req) end

--- Decode a response as get_call does (pure).
---@param status integer
---@param body string
---@param headers? table<string, string>
---@param opts? {strict?: boolean}
---@return acscall.CallConnectionProperties? call
---@return string? message
---@return acscall.Info? info
function acscall.decode(status, body, headers, opts) end

--- `nil, message, info` for a failure of a transport written in Lua.
---@param kind acscall.ErrorKind
---@param text string
---@param fields? {status?: integer, attempts?: integer, timeout?: boolean, request_id?: string, client_request_id?: string, code?: string, secrets?: string[]}
---@return nil
---@return string message
---@return acscall.Info info
function acscall.failure(kind, text, fields) end

--- An IMF-fixdate, e.g. "Wed, 13 Apr 2022 18:09:12 GMT".
---@param epoch? number default now
---@return string
function acscall.http_date(epoch) end

--- The rawId of an identifier (the one sent, else derived).
---@param identifier acscall.CommunicationIdentifierModel|table
---@return string
function acscall.raw_id(identifier) end

--- An identifier (wire shape) from a rawId.
---@param raw string
---@return acscall.CommunicationIdentifierModel
function acscall.identifier_from_raw_id(raw) end

--- One readable line, e.g. "phone +14250123456".
---@param identifier acscall.CommunicationIdentifierModel|table
---@return string
function acscall.describe(identifier) end

--- `for i, target in acscall.targets(call)`.
---@param call acscall.CallConnectionProperties
---@return fun(): integer?, acscall.CommunicationIdentifierModel?
function acscall.targets(call) end

--- True for "disconnected": the call will not change again.
---@param state acscall.CallConnectionState|string
---@return boolean
function acscall.is_terminal(state) end

return acscall
