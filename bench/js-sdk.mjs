// js-sdk.mjs - the official JS SDK peer of `make bench`:
// CallAutomationClient(connectionString) -> getCallConnection(id).getCallConnectionProperties(),
// sequential, HMAC from the connection string, keep-alive (the SDK's default agent).
//   node bench/js-sdk.mjs ENDPOINT CALL_ID N WARMUP
// HTTPS: the CA comes from NODE_EXTRA_CA_CERTS. HTTP: the SDK refuses http:// unless the
// client options say allowInsecureConnection: true (checked: it throws without it).
// prints: RESULT n=N wall_us=<per call> cpu_us=<client user+sys per call>
import { CallAutomationClient } from "@azure/communication-call-automation";

const [endpoint, id, nArg, warmArg] = process.argv.slice(2);
const n = Number(nArg), warm = Number(warmArg ?? 1);
const key = process.env.BENCH_KEY ?? "YWNzLWVtdWxhdG9yLWFjY2Vzcy1rZXktMzItYnl0ZXM=";
const options = endpoint.startsWith("http:") ? { allowInsecureConnection: true } : {};
const client = new CallAutomationClient(`endpoint=${endpoint};accesskey=${key}`, options);
const conn = client.getCallConnection(id);

for (let i = 0; i < warm; i++) {
  const p = await conn.getCallConnectionProperties();
  if (!p.callConnectionId) throw new Error("no callConnectionId in the answer");
}
const c0 = process.cpuUsage();
const t0 = process.hrtime.bigint();
for (let i = 0; i < n; i++) await conn.getCallConnectionProperties();
const t1 = process.hrtime.bigint();
const c = process.cpuUsage(c0);
if (n > 0) {
  const wall = Number(t1 - t0) / 1e3 / n, cpu = (c.user + c.system) / n;
  console.log(`RESULT n=${n} wall_us=${wall.toFixed(2)} cpu_us=${cpu.toFixed(2)}`);
}
