// Helpers shared by the scenarios (they run inside run.mjs, after the SDK's environment is set).
import assert from "node:assert/strict";
import { _internalGetGlobalState, login } from "braintrust";

// Every row of an object through the SDK's BTQL call (the JSON-AST form its object fetchers send).
export async function btqlRows(objectType, objectId, extra = {}) {
  await login();
  const conn = _internalGetGlobalState().apiConn();
  const rows = [];
  let cursor;
  for (let page = 0; page < 100; page++) {
    const resp = await conn.post_json("btql", {
      query: {
        select: [{ op: "star" }],
        from: { op: "function", name: { op: "ident", name: [objectType] }, args: [{ op: "literal", value: objectId }] },
        limit: 50,
        cursor,
      },
      use_columnstore: false,
      brainstore_realtime: true,
      ...extra,
    });
    rows.push(...resp.data);
    if (!resp.cursor) return rows;
    cursor = resp.cursor;
  }
  assert.fail("BTQL kept returning a cursor");
}

// Rows keyed by span_attributes.name (each name must be unique).
export function byName(rows) {
  const out = {};
  for (const r of rows) {
    const name = r.span_attributes?.name;
    assert.ok(!(name in out), `span name ${name} appears twice`);
    out[name] = r;
  }
  return out;
}

// A logger project with five root spans (root0..root4: input q<i>, output i, scores.s = i/4, metadata.parity)
// each with one llm child; returns { projectId, rootSpanIds }.
export async function logFiveTraces(initLogger, projectName) {
  const logger = initLogger({ projectName, asyncFlush: true });
  const rootSpanIds = [];
  for (let i = 0; i < 5; i++) {
    await logger.traced(async (s) => {
      rootSpanIds.push(s.rootSpanId);
      s.log({ input: `q${i}`, output: i, scores: { s: i / 4 }, metadata: { parity: i % 2 ? "odd" : "even" } });
      await s.traced(async (c) => c.log({ output: "child" }), { name: `child${i}`, type: "llm" });
    }, { name: `root${i}` });
    await logger.flush();  // one transaction per trace: created and _xact_id grow with i
  }
  return { projectId: await logger.id, rootSpanIds };
}

// A BTQL text query through the SDK's API connection; resolves the parsed response.
export async function btqlText(query) {
  await login();
  return _internalGetGlobalState().apiConn().post_json("btql", { query, fmt: "json" });
}

// Runs `bt <args> --json --no-input` and parses its JSON output; fails with bt's output otherwise.
export async function btJson(cli, args) {
  const r = await cli("bt", [...args, "--json", "--no-input"], { timeoutMs: 30000 });
  assert.equal(r.code, 0, `bt ${args.join(" ")} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  try {
    return JSON.parse(r.stdout);
  } catch {
    assert.fail(`bt ${args.join(" ")} printed no JSON:\n${r.stdout}\n${r.stderr}`);
  }
}
