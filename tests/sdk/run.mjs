// Runs one end-to-end scenario against a fresh `ferry serve`:
//   node run.mjs <scenario> [--ferry PATH]      (or FERRY_BIN=PATH)
// Each scenario (scenarios/<name>.mjs) exports `default async function (ctx)` and throws on failure.
// Bounded: SDK_SCENARIO_TIMEOUT_MS (default 100 s) ends the run with a failure; ctest adds its own timeout.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import {
  API_KEY, SDK_DIR, formatExchange, makeTempDir, runCli, startFerry, startProxy, stopFerry,
} from "./harness.mjs";

const args = process.argv.slice(2);
const name = args[0];
const ferryFlag = args.indexOf("--ferry");
const ferryBin = ferryFlag >= 0 ? args[ferryFlag + 1] : process.env.FERRY_BIN;
if (!name || !ferryBin) {
  console.error("usage: node run.mjs <scenario> --ferry PATH   (or FERRY_BIN=PATH)");
  process.exit(2);
}
const scenarioFile = path.join(SDK_DIR, "scenarios", `${name}.mjs`);
if (!fs.existsSync(scenarioFile)) {
  console.error(`no scenario ${name} (${scenarioFile})`);
  process.exit(2);
}
if (!fs.existsSync(path.join(SDK_DIR, "node_modules", "braintrust"))) {
  console.error("tests/sdk/node_modules is missing: run scripts/install-deps (npm ci in tests/sdk)");
  process.exit(2);
}

const timeoutMs = Number(process.env.SDK_SCENARIO_TIMEOUT_MS || 100000);
const tmp = makeTempDir(`ferry-sdk-${name}-`);
const dirs = { data: path.join(tmp, "data"), home: path.join(tmp, "home"), work: path.join(tmp, "work") };
for (const d of Object.values(dirs)) fs.mkdirSync(d, { recursive: true });

let server;
let proxy;
let failed = false;

const say = (fd, text) => fs.writeSync(fd, `${text}\n`);  // synchronous: process.exit() follows

// After a failure: every exchange with the emulator that was not 2xx, and the last few of all.
function report() {
  const all = proxy?.exchanges ?? [];
  const bad = all.filter((x) => x.status < 200 || x.status >= 300);
  if (bad.length > 0) say(2, `\n${bad.length} exchange(s) with the emulator were not 2xx:`);
  for (const x of bad) say(2, `  ${formatExchange(x)}`);
  say(2, `\nthe last ${Math.min(3, all.length)} of ${all.length} exchanges:`);
  for (const x of all.slice(-3)) say(2, `  ${formatExchange(x)}`);
}

async function cleanup() {
  await proxy?.close();
  if (server) await stopFerry(server);
  if (!failed && !process.env.FERRY_SDK_KEEP) fs.rmSync(tmp, { recursive: true, force: true });
  else say(2, `kept ${tmp}`);
}

const watchdog = setTimeout(async () => {
  failed = true;
  say(2, `sdk.${name}: did not finish within ${timeoutMs} ms`);
  report();
  await cleanup();
  process.exit(1);
}, timeoutMs);

try {
  server = await startFerry(ferryBin, dirs.data);
  proxy = await startProxy(server.url);
  const env = {
    ...process.env,
    HOME: dirs.home,
    BRAINTRUST_API_KEY: API_KEY,
    BRAINTRUST_API_URL: proxy.url,
    BRAINTRUST_APP_URL: proxy.url,
    BRAINTRUST_ORG_NAME: "emu-org",
    BRAINTRUST_NO_COLOR: "1",
    NO_COLOR: "1",
  };
  delete env.BRAINTRUST_PROXY_URL;
  Object.assign(process.env, env);

  // Raw calls (for checks the SDK does not expose): { status, body } with body parsed when it is JSON.
  const api = async (method, target, body) => {
    const res = await fetch(proxy.url + target, {
      method,
      headers: { Authorization: `Bearer ${API_KEY}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed = text;
    try { parsed = JSON.parse(text); } catch { /* not JSON */ }
    return { status: res.status, body: parsed };
  };
  const ctx = {
    url: proxy.url, emulatorUrl: server.url, dirs, env, api, exchanges: proxy.exchanges,
    cli: (bin, cliArgs, opts = {}) => runCli(bin, cliArgs, { cwd: dirs.work, env, ...opts }),
  };
  const scenario = await import(pathToFileURL(scenarioFile).href);
  await scenario.default(ctx);
  say(1, `sdk.${name}: passed`);
} catch (e) {
  failed = true;
  say(2, `sdk.${name}: FAILED\n${e?.stack ?? e}`);
  if (e?.cause) say(2, `cause: ${e.cause?.stack ?? e.cause}`);
}
clearTimeout(watchdog);
if (failed) report();
await cleanup();
process.exit(failed ? 1 : 0);
