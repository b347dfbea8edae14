// `bt` reading events: `bt datasets view` (a BTQL JSON AST with a column list and a created filter),
// `bt sql` (SQL text with strict lint mode) and `bt sync pull` of project logs into NDJSON files.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { initDataset, initLogger } from "braintrust";
import { btJson, logFiveTraces } from "../lib.mjs";

function ndjsonRows(dir) {
  const rows = [];
  for (const entry of fs.readdirSync(dir, { recursive: true })) {
    const file = path.join(dir, entry);
    if (!/\.(jsonl|ndjson)$/.test(file) || !fs.statSync(file).isFile()) continue;
    for (const line of fs.readFileSync(file, "utf8").split("\n")) if (line.trim()) rows.push(JSON.parse(line));
  }
  return rows;
}

export default async function ({ cli, dirs }) {
  const ds = initDataset({ project: "sdk bt data", dataset: "rows" });
  ds.insert({ input: "a", expected: "b", metadata: { k: 1 } });
  ds.insert({ input: "c", expected: "d" });
  await ds.flush();

  const view = await btJson(cli, ["datasets", "view", "rows", "-p", "sdk bt data"]);
  const viewRows = Array.isArray(view) ? view : view.rows ?? view.data;
  assert.deepEqual(viewRows.map((r) => [r.input, r.expected]).sort(), [["a", "b"], ["c", "d"]]);

  const sql = await btJson(cli, ["sql", `SELECT input, expected FROM dataset('${await ds.id}') WHERE input = 'a'`]);
  const sqlRows = Array.isArray(sql) ? sql : sql.data ?? sql.rows;
  assert.deepEqual(sqlRows.map((r) => [r.input, r.expected]), [["a", "b"]]);

  const { projectId } = await logFiveTraces(initLogger, "sdk bt data");
  const root = path.join(dirs.work, "bt-sync");
  const sync = await cli("bt", ["sync", "pull", `project_logs:${projectId}`, "--spans", "100", "--root", root, "--no-input"],
    { timeoutMs: 30000 });
  assert.equal(sync.code, 0, `bt sync pull failed:\n${sync.stdout}\n${sync.stderr}`);
  const synced = ndjsonRows(root);
  assert.equal(synced.length, 10, `10 spans synced, got ${synced.length}`);
}
