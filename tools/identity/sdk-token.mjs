// tools/identity/sdk-token.mjs - one token from the official @azure/identity (installed here by
// `make identity-sdk`, pinned by package-lock.json), for spec/83: the SDK against the emulator
// alone. Usage: node sdk-token.mjs <credential>, the credential one of managed_identity,
// app_service, client_secret, workload_identity, default; configured only by the SDK's own
// environment variables (the spec aims them at the emulator) plus disableInstanceDiscovery.
// Prints the token on stdout; on failure the error's name and message on stderr, exit 1.
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const identity = createRequire(path.join(here, "package.json"))("@azure/identity");
const SCOPE = "https://communication.azure.com//.default";
const opts = { disableInstanceDiscovery: true };

const make = {
  managed_identity: () => new identity.ManagedIdentityCredential({ clientId: process.env.AZURE_CLIENT_ID }),
  app_service: () => new identity.ManagedIdentityCredential({ clientId: process.env.AZURE_CLIENT_ID }),
  client_secret: () => new identity.ClientSecretCredential(process.env.AZURE_TENANT_ID, process.env.AZURE_CLIENT_ID,
    process.env.AZURE_CLIENT_SECRET, opts),
  workload_identity: () => new identity.WorkloadIdentityCredential(opts),
  default: () => new identity.DefaultAzureCredential(opts),
}[process.argv[2]];
if (!make) {
  process.stderr.write("usage: node sdk-token.mjs managed_identity|app_service|client_secret|workload_identity|default\n");
  process.exit(2);
}
try {
  const t = await make().getToken(SCOPE);
  process.stdout.write(t.token + "\n");
  process.exit(0);
} catch (e) {
  process.stderr.write(`${e.name}: ${e.message}\n`);
  process.exit(1);
}
