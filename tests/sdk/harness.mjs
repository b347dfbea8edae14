// Test harness: starts `ferry serve --port 0` on 127.0.0.1 with a temp data dir, puts a recording proxy in
// front of it (every exchange that is not 2xx is printed when a scenario fails, with its request and
// response bodies), and points the Braintrust SDK and CLIs at it through BRAINTRUST_* variables.
import { spawn } from "node:child_process";
import http from "node:http";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { fileURLToPath } from "node:url";

export const SDK_DIR = path.dirname(fileURLToPath(import.meta.url));
export const API_KEY = "ferry-emulator-key";
const BODY_SHOWN = 600;

function clip(text) {
  return text.length > BODY_SHOWN ? `${text.slice(0, BODY_SHOWN)}... (${text.length} bytes)` : text;
}

// Starts `ferry serve`; resolves with { url, child } once the first stdout line names the port.
export function startFerry(ferryBin, dataDir, timeoutMs = 20000) {
  return new Promise((resolve, reject) => {
    const child = spawn(ferryBin, ["serve", "--address", "127.0.0.1", "--port", "0", "--data", dataDir], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, FERRY_SERVE_API_KEYS: API_KEY },
    });
    let out = "";
    let err = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`ferry serve printed no port within ${timeoutMs} ms; stderr: ${err}`));
    }, timeoutMs);
    child.stderr.on("data", (d) => { err += d; });
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) {
        clearTimeout(timer);
        child.stdout.removeAllListeners("data");
        child.stdout.resume();
        resolve({ url: m[1], child, stderr: () => err });
      }
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`ferry serve exited (${code ?? signal}) before listening; stderr: ${err}`));
    });
  });
}

export async function stopFerry(server, timeoutMs = 10000) {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  await exited;
  clearTimeout(timer);
}

// A pass-through HTTP proxy on 127.0.0.1:0 that records every exchange (method, target, status, bodies).
// The emulator's own address in a response (login's api_url, signed URLs) is rewritten to the proxy's, so
// clients that follow those (bt, uploads) are recorded too.
export async function startProxy(targetUrl) {
  const target = new URL(targetUrl);
  const exchanges = [];
  let url;
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const headers = { ...req.headers, host: target.host };
      const up = http.request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers },
        (upRes) => {
          const out = [];
          upRes.on("data", (c) => out.push(c));
          upRes.on("end", () => {
            const resBody = rewriteUrls(Buffer.concat(out), upRes.headers, targetUrl, url);
            exchanges.push({
              method: req.method, target: req.url, status: upRes.statusCode,
              request: requestForLog(body, req.headers), response: decodeForLog(resBody, upRes.headers),
            });
            res.writeHead(upRes.statusCode, upRes.headers);
            res.end(resBody);
          });
        });
      up.on("error", (e) => {
        exchanges.push({ method: req.method, target: req.url, status: 0, request: body.toString(), response: String(e) });
        res.destroy();
      });
      up.end(body);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${server.address().port}`;
  return {
    url, exchanges,
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(resolve); }),
  };
}

function rewriteUrls(body, headers, from, to) {
  if (headers["content-encoding"] || !body.includes(from)) return body;
  const out = Buffer.from(body.toString("utf8").split(from).join(to));
  headers["content-length"] = String(out.length);
  return out;
}

function requestForLog(buf, headers) {
  if (headers["content-encoding"]) return `(${headers["content-encoding"]}, ${buf.length} bytes)`;
  const text = buf.toString("utf8");
  return text.includes("\uFFFD") ? `(binary, ${buf.length} bytes)` : text;
}

function decodeForLog(buf, headers) {
  if ((headers["content-encoding"] || "").includes("gzip")) {
    try { return zlib.gunzipSync(buf).toString("utf8"); } catch { return `(bad gzip, ${buf.length} bytes)`; }
  }
  return buf.toString("utf8");
}

export function formatExchange(x) {
  return `${x.method} ${x.target} -> ${x.status}\n    request:  ${clip(x.request)}\n    response: ${clip(x.response)}`;
}

// Runs a CLI (path under node_modules/.bin) with the scenario's environment; resolves { code, stdout, stderr }.
export function runCli(name, args, { cwd, env, timeoutMs = 60000, input } = {}) {
  const bin = path.join(SDK_DIR, "node_modules", ".bin", name);
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { cwd, env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => { stdout += d; });
    child.stderr.on("data", (d) => { stderr += d; });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${name} ${args.join(" ")} did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on("error", (e) => { clearTimeout(timer); reject(e); });
    child.on("exit", (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
    child.stdin.end(input ?? "");
  });
}

export function makeTempDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}
