---@meta acscall.credential
-- LuaCATS annotations of acscall.credential (docs/credentials.md), checked
-- against the code by spec/96-types_spec.lua.

---@class acscall.credential
---@field SCOPE string "https://communication.azure.com//.default"
---@field RESOURCE string "https://communication.azure.com/" (managed identity)
---@field IMDS_AUTHORITY string "http://169.254.169.254"
---@field IMDS_PATH string "/metadata/identity/oauth2/token"
---@field IMDS_API_VERSION string "2018-02-01"
---@field APP_SERVICE_API_VERSION string "2019-08-01"
---@field AUTHORITY_HOST string "https://login.microsoftonline.com"
---@field JWT_BEARER string the client_assertion_type of workload identity
---@field REFRESH_BEFORE number seconds before expiry a token is refreshed (300)
---@field HALF_LIFE_OVER number a token living longer (s) is refreshed at half its life (7200, MSAL)
---@field MAX_LIFETIME number the longest lifetime (s) a token may claim (core.LIMITS.token_lifetime_max); longer is refused
---@field RETRY {imds: acscall.Retries, app_service: acscall.Retries, authority: acscall.Retries} each token endpoint's retry classes and schedules (@azure/identity 4.13.0's)
---@field NAMES string[] the names `by_name` takes
local credential = {}

--- What every constructor takes besides its own options: the token
--- requests' HTTP (core.fetcher's options), a transport, an environment.
---@class acscall.CredentialOptions
---@field env? table<string, string>|fun(name: string): string? read instead of os.getenv (empty values count as unset)
---@field transport? acscall.Transport e.g. acscall.resty.capture_transport()
---@field ca_file? string
---@field user_agent? string
---@field timeout? number seconds per attempt
---@field connect_timeout? number
---@field deadline? number seconds per token request, retries included
---@field retries? integer|false|acscall.Retries
---@field base_delay? number
---@field max_delay? number
---@field retry_scale? number every delay of the token endpoint's schedule times this (tests)
---@field max_body? integer

--- Anything that fetches: `t:fetch{url =, method =, headers =, form =}`.
---@class acscall.Transport
local Transport = {}

---@param req {url: string, method?: "GET"|"POST", headers?: table<string, string>, form?: table<string, string>, timeout?: number, retries?: integer|false|acscall.Retries}
---@return integer|nil status
---@return string body_or_message
---@return table headers_or_info
function Transport:fetch(req) end

--- A credential: an acscall.TokenCredential with a cache of its own.
---@class acscall.Credential: acscall.TokenCredential
---@field kind string "managed_identity", "client_secret", "client_certificate", "workload_identity", "azure_cli", "default"
local Credential = {}

--- A token: the cached one until its refresh point, else a new one.
---@param opts? {force_refresh?: boolean}
---@return string? token
---@return number|string expires_on_or_message Unix seconds, or the message
---@return acscall.Info? info
function Credential:get_token(opts) end

--- The URLs it would contact (never a secret).
---@return string[]
function Credential:targets() end

--- The kind's target in one line (tostring(cred) shows it too).
---@return string
function Credential:describe() end

--- Release its connections and wipe the cached token; it stays usable.
function Credential:close() end

---@class acscall.ManagedIdentityOptions: acscall.CredentialOptions
---@field client_id? string a user-assigned identity
---@field resource_id? string a user-assigned identity, by its resource id
---@field object_id? string a user-assigned identity, by its object (principal) id
---@field endpoint? string the IMDS host (wins over the environment)
---@field imds_retry? acscall.Retries fields replacing RETRY.imds's

---@class acscall.ClientCertificateOptions: acscall.CredentialOptions
---@field tenant_id? string AZURE_TENANT_ID
---@field client_id? string AZURE_CLIENT_ID
---@field certificate_path? string AZURE_CLIENT_CERTIFICATE_PATH: a PEM file with the certificate and its RSA key
---@field certificate? string the PEM text instead of a file
---@field password? string AZURE_CLIENT_CERTIFICATE_PASSWORD (an encrypted key)
---@field send_certificate_chain? boolean AZURE_CLIENT_SEND_CERTIFICATE_CHAIN: the chain as x5c
---@field authority_host? string AZURE_AUTHORITY_HOST

---@class acscall.ClientSecretOptions: acscall.CredentialOptions
---@field tenant_id? string AZURE_TENANT_ID
---@field client_id? string AZURE_CLIENT_ID
---@field client_secret? string AZURE_CLIENT_SECRET
---@field authority_host? string AZURE_AUTHORITY_HOST

---@class acscall.WorkloadIdentityOptions: acscall.CredentialOptions
---@field tenant_id? string AZURE_TENANT_ID
---@field client_id? string AZURE_CLIENT_ID
---@field token_file? string AZURE_FEDERATED_TOKEN_FILE
---@field authority_host? string AZURE_AUTHORITY_HOST

---@class acscall.AzureCliOptions: acscall.CredentialOptions
---@field command? string the az to run (ACSCALL_AZURE_CLI, else az on PATH)
---@field tenant_id? string
---@field timeout? number seconds before az is killed (10)

---@class acscall.DefaultOptions: acscall.CredentialOptions
---@field tenant_id? string
---@field authority_host? string
---@field imds_endpoint? string
---@field managed_identity_client_id? string
---@field managed_identity_resource_id? string
---@field az_command? string
---@field exclude? {environment?: boolean, workload_identity?: boolean, managed_identity?: boolean, azure_cli?: boolean}

---@param opts? acscall.ManagedIdentityOptions
---@return acscall.Credential
function credential.managed_identity(opts) end

---@param opts? acscall.ClientSecretOptions
---@return acscall.Credential
function credential.client_secret(opts) end

--- A service principal's certificate: a PS256 client assertion, as @azure/identity builds it.
---@param opts? acscall.ClientCertificateOptions
---@return acscall.Credential
function credential.client_certificate(opts) end

---@param opts? acscall.WorkloadIdentityOptions
---@return acscall.Credential
function credential.workload_identity(opts) end

---@param opts? acscall.AzureCliOptions
---@return acscall.Credential
function credential.azure_cli(opts) end

--- DefaultAzureCredential's chain: environment, workload identity, managed identity, Azure CLI.
---@param opts? acscall.DefaultOptions
---@return acscall.Credential
function credential.default(opts) end

--- By the CLI's names: "default", "managed-identity", "cli", "client-secret", "workload-identity",
--- "client-certificate".
---@param name string
---@param opts? acscall.CredentialOptions|table
---@return acscall.Credential
function credential.by_name(name, opts) end

--- True when a URL's host is a loopback address (the core's rule).
---@param url string
---@return boolean
function credential.is_loopback(url) end

return credential
