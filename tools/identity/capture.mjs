// tools/identity/capture.mjs - record the requests the official @azure/identity (the version
// pinned by package-lock.json) sends for each credential and failure schedule, against a
// loopback server that plays IMDS, App Service and an Entra ID authority. Run by
// tools/identity/record.sh (`make identity-fixtures`), which installs the SDK, makes the private
// CA (NODE_EXTRA_CA_CERTS) and points every proxy variable at a dead loopback port, so that a
// request the SDK sends anywhere else fails instead of leaving the machine.
//
// Usage: node capture.mjs <cert.pem> <key.pem> <fake-az-dir> <out.json>
// Each credential runs in a process of its own (the same script, with its name as a fifth
// argument): msal-node picks the managed identity source once per process.
import http from "node:http";
import { execFileSync } from "node:child_process";
import https from "node:https";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const [certFile, keyFile, azDir, outFile, only] = process.argv.slice(2);
const require = createRequire(path.join(process.cwd(), "package.json"));
const identity = require("@azure/identity");
const sdkVersion = JSON.parse(fs.readFileSync(require.resolve("@azure/identity/package.json"))).version;

const SCOPE = "https://communication.azure.com//.default";
const TENANT = "tenant-1";
const CLIENT_ID = "client-1";
// a secret with the characters form encoding must get right
const SECRET = "S3cret~+/=& Value";
const IDENTITY_HEADER = "identity-header-value";
const ASSERTION = "emulator-assertion.federated-token";

// the headers whose presence and value matter to the endpoints
const KEEP = ["metadata", "x-identity-header", "content-type", "accept"];

let scenario = null; // { name, schedule: [status...], requests: [], t0 }

function record(req, body, base) {
  const u = new URL(req.url, base);
  const headers = {};
  for (const h of KEEP) if (req.headers[h] !== undefined) headers[h] = req.headers[h];
  const query = {};
  for (const [k, v] of u.searchParams) query[k] = v;
  let form;
  if ((req.headers["content-type"] || "").startsWith("application/x-www-form-urlencoded") && body) {
    form = {};
    for (const [k, v] of new URLSearchParams(body)) form[k] = v;
  }
  const r = { method: req.method, path: u.pathname, query, headers, ms: Date.now() - scenario.t0 };
  if (form) r.form = form;
  scenario.requests.push(r);
  return r;
}

function json(res, status, obj, headers = {}) {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(obj));
}

function handler(base) {
  return (req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      if (!scenario) return json(res, 500, { error: "no scenario" });
      const r = record(req, body, base);
      const p = r.path;
      if (/\/v2\.0\/\.well-known\/openid-configuration$/.test(p)) {
        const t = p.split("/")[1];
        r.kind = "openid";
        return json(res, 200, {
          token_endpoint: `${base}/${t}/oauth2/v2.0/token`,
          authorization_endpoint: `${base}/${t}/oauth2/v2.0/authorize`,
          issuer: `${base}/${t}/v2.0`,
          jwks_uri: `${base}/${t}/discovery/v2.0/keys`,
        });
      }
      // token requests: the schedule's statuses first, then a token
      const status = scenario.schedule.shift();
      if (status) {
        r.answered = status;
        const h = status === 429 || status === 503 ? { "retry-after": "1" } : {};
        return json(res, status, { error: "temporarily_unavailable", error_description: "scheduled " + status }, h);
      }
      r.answered = 200;
      const now = Math.floor(Date.now() / 1000);
      if (/oauth2\/v2\.0\/token$/.test(p)) {
        return json(res, 200, { token_type: "Bearer", expires_in: 3600, ext_expires_in: 3600, access_token: "tok" });
      }
      return json(res, 200, { access_token: "tok", expires_on: String(now + 3600), expires_in: "3600",
        resource: "https://communication.azure.com/", token_type: "Bearer" });
    });
  };
}

const tlsServer = https.createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) });
const plainServer = http.createServer();
await new Promise((ok) => tlsServer.listen(0, "127.0.0.1", ok));
await new Promise((ok) => plainServer.listen(0, "127.0.0.1", ok));
const httpsBase = `https://127.0.0.1:${tlsServer.address().port}`;
const httpBase = `http://127.0.0.1:${plainServer.address().port}`;
tlsServer.on("request", handler(httpsBase));
plainServer.on("request", handler(httpBase));

const ENV_KEYS = ["AZURE_POD_IDENTITY_AUTHORITY_HOST", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "AZURE_TENANT_ID",
  "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST", "MSI_ENDPOINT",
  "IMDS_ENDPOINT", "IDENTITY_SERVER_THUMBPRINT", "AZURE_CLIENT_CERTIFICATE_PATH"];
function withEnv(env) {
  for (const k of ENV_KEYS) delete process.env[k];
  Object.assign(process.env, env);
}

const tokenFile = path.join(azDir, "federated-token");
fs.writeFileSync(tokenFile, ASSERTION + "\n");

// msal-node keeps managed identity tokens in one cache for the process: a client id of
// its own per case (`client-1.<case>`) keeps every case a first request
let caseId = "";
const cid = () => `${CLIENT_ID}.${caseId}`;
const CREDENTIALS = {
  imds: () => {
    withEnv({ AZURE_POD_IDENTITY_AUTHORITY_HOST: httpBase });
    return new identity.ManagedIdentityCredential({ clientId: cid() });
  },
  imds_object_id: () => {
    withEnv({ AZURE_POD_IDENTITY_AUTHORITY_HOST: httpBase });
    return new identity.ManagedIdentityCredential({ objectId: "object-1." + caseId });
  },
  imds_resource_id: () => {
    withEnv({ AZURE_POD_IDENTITY_AUTHORITY_HOST: httpBase });
    return new identity.ManagedIdentityCredential({ resourceId: "/subscriptions/s/resourceGroups/g/x." + caseId });
  },
  app_service: () => {
    withEnv({ IDENTITY_ENDPOINT: httpBase + "/msi/token", IDENTITY_HEADER });
    return new identity.ManagedIdentityCredential({ clientId: cid() });
  },
  app_service_object_id: () => {
    withEnv({ IDENTITY_ENDPOINT: httpBase + "/msi/token", IDENTITY_HEADER });
    return new identity.ManagedIdentityCredential({ objectId: "object-1." + caseId });
  },
  client_secret: () => {
    withEnv({});
    return new identity.ClientSecretCredential(TENANT, cid(), SECRET,
      { authorityHost: httpsBase, disableInstanceDiscovery: true });
  },
  workload_identity: () => {
    withEnv({});
    return new identity.WorkloadIdentityCredential({ tenantId: TENANT, clientId: cid(),
      tokenFilePath: tokenFile, authorityHost: httpsBase, disableInstanceDiscovery: true });
  },
  default_pod_identity: () => {
    withEnv({ AZURE_POD_IDENTITY_AUTHORITY_HOST: httpBase, AZURE_CLIENT_ID: cid() });
    return new identity.DefaultAzureCredential({ disableInstanceDiscovery: true });
  },
  default_environment: () => {
    withEnv({ AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: cid(), AZURE_CLIENT_SECRET: SECRET,
      AZURE_AUTHORITY_HOST: httpsBase });
    return new identity.DefaultAzureCredential({ disableInstanceDiscovery: true });
  },
};
const SCHEDULES = { ok: [], "404x2": [404, 404], "410x2": [410, 410], "429x2": [429, 429], "503x2": [503, 503] };
const ONLY_OK = new Set(["imds_object_id", "imds_resource_id", "app_service_object_id", "default_pod_identity",
  "default_environment"]);

const out = { sdk: "@azure/identity", version: sdkVersion, scope: SCOPE, secret: SECRET, client_id: CLIENT_ID,
  identity_header: IDENTITY_HEADER, assertion: ASSERTION, note: "written by tools/identity/record.sh", cases: [] };
for (const [cred, make] of Object.entries(CREDENTIALS)) {
  if (!only) {
    const part = `${outFile}.${cred}.part`;
    execFileSync(process.execPath, [process.argv[1], certFile, keyFile, azDir, part, cred], { stdio: "inherit" });
    out.cases.push(...JSON.parse(fs.readFileSync(part, "utf8")).cases);
    fs.unlinkSync(part);
    continue;
  }
  if (cred !== only) continue;
  for (const [sched, statuses] of Object.entries(SCHEDULES)) {
    if (sched !== "ok" && ONLY_OK.has(cred)) continue;
    caseId = `${cred}.${sched}`;
    scenario = { name: `${cred}/${sched}`, schedule: [...statuses], requests: [], t0: Date.now() };
    let outcome;
    try {
      const c = make();
      const tok = await c.getToken(SCOPE);
      outcome = tok && tok.token === "tok" ? "token" : "no token";
    } catch (e) {
      outcome = "error: " + String(e.name);
    }
    process.stderr.write(`${scenario.name}: ${scenario.requests.length} requests, ${outcome}\n`);
    out.cases.push({ credential: cred, schedule: sched, outcome,
      requests: scenario.requests.map((r) => ({ ...r, path: r.path })) });
  }
}

// az: the SDK runs `az ...` through a shell with PATH; the fake az records its arguments
withEnv({});
for (const [name, opts] of only ? [] : [["azure_cli", {}], ["azure_cli_tenant", { tenantId: "tenant-9" }]]) {
  const calls = path.join(azDir, "calls");
  fs.writeFileSync(calls, "");
  let outcome;
  try {
    await new identity.AzureCliCredential(opts).getToken(SCOPE);
    outcome = "token";
  } catch (e) {
    outcome = "error: " + String(e.name);
  }
  out.cases.push({ credential: name, schedule: "ok", outcome,
    argv: fs.readFileSync(calls, "utf8").trim().split("\n")[0] });
}

fs.writeFileSync(outFile, JSON.stringify(out, null, 1) + "\n");
tlsServer.close();
plainServer.close();
process.exit(0);
