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
