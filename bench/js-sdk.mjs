// js-sdk.mjs - the official JS SDK peer of `make bench`:
// CallAutomationClient(connectionString) -> getCallConnection(id).getCallConnectionProperties(),
// sequential, HMAC from the connection string, keep-alive (the SDK's default agent).
//   node bench/js-sdk.mjs ENDPOINT CALL_ID N|serve WARMUP
// Warm-up: at least WARMUP calls, and on until V8 has settled: in blocks of 1,000
// calls, until a block's mean wall per call is within 5% of the one before (at most
// 4 × WARMUP calls). One line "WARM calls=.. first_block_us=.. last_block_us=.."
// goes to stderr. Then as bench/clients.lua: N calls, or "serve": for each line
// "N" on stdin, N calls and one RESULT line, in this one long-lived process.
// HTTPS: the CA comes from NODE_EXTRA_CA_CERTS. HTTP: the SDK refuses http:// unless the
// client options say allowInsecureConnection: true (checked: it throws without it).
// prints: RESULT n=N wall_us=<per call> cpu_us=<client user+sys per call>
import { createInterface } from "node:readline";
import { CallAutomationClient } from "@azure/communication-call-automation";

const [endpoint, id, nArg, warmArg] = process.argv.slice(2);
const warm = Number(warmArg ?? 1);
const key = process.env.BENCH_KEY ?? "YWNzLWVtdWxhdG9yLWFjY2Vzcy1rZXktMzItYnl0ZXM=";
const options = endpoint.startsWith("http:") ? { allowInsecureConnection: true } : {};
const client = new CallAutomationClient(`endpoint=${endpoint};accesskey=${key}`, options);
const conn = client.getCallConnection(id);

const p = await conn.getCallConnectionProperties();
if (!p.callConnectionId) throw new Error("no callConnectionId in the answer");

async function block(k) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < k; i++) await conn.getCallConnectionProperties();
  return Number(process.hrtime.bigint() - t0) / 1e3 / k;
}

let done = 1, first = 0, last = 0, prev = Infinity;
if (warm > 1) {
  for (;;) {
    const us = await block(1000);
    done += 1000;
    if (!first) first = us;
    last = us;
    if ((done >= warm && Math.abs(us - prev) <= 0.05 * prev) || done >= 4 * warm) break;
    prev = us;
  }
}
process.stderr.write(`WARM calls=${done} first_block_us=${first.toFixed(2)} last_block_us=${last.toFixed(2)}\n`);

async function burst(n) {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await conn.getCallConnectionProperties();
  const t1 = process.hrtime.bigint();
  const c = process.cpuUsage(c0);
  if (n > 0) {
    const wall = Number(t1 - t0) / 1e3 / n, cpu = (c.user + c.system) / n;
    process.stdout.write(`RESULT n=${n} wall_us=${wall.toFixed(2)} cpu_us=${cpu.toFixed(2)}\n`);
  }
}

if (nArg === "serve") {
  for await (const line of createInterface({ input: process.stdin })) await burst(Number(line));
} else {
  await burst(Number(nArg));
}
