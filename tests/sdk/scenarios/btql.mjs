// BTQL as the SDK's span fetchers and users' queries send it: column lists, filters on any field with
// and/or, descending sorts, aggregates with dimensions, the response cursor for paging, and the SDK's
// SpanFetcher (a JSON-AST filter on root_span_id with or/isnull/ne on span_attributes.purpose).
import assert from "node:assert/strict";
import { SpanFetcher, _internalGetGlobalState, initLogger } from "braintrust";
import { btqlText, logFiveTraces } from "../lib.mjs";

export default async function () {
  const { projectId, rootSpanIds } = await logFiveTraces(initLogger, "sdk btql");
  const from = `from: project_logs('${projectId}')`;

  const cols = await btqlText(`select: id, input, output\n${from}\nfilter: is_root\nsort: created desc\nlimit: 2`);
  assert.deepEqual(cols.data.map((r) => Object.keys(r).sort()), [["id", "input", "output"], ["id", "input", "output"]]);
  assert.deepEqual(cols.data.map((r) => r.input), ["q4", "q3"], "the two newest roots, newest first");

  const or = await btqlText(`select: input\n${from}\nfilter: metadata.parity = 'odd' or output = 0`);
  assert.deepEqual(or.data.map((r) => r.input).sort(), ["q0", "q1", "q3"]);

  const and = await btqlText(`select: input\n${from}\nfilter: scores.s >= 0.5 and span_attributes.name != 'root4'`);
  assert.deepEqual(and.data.map((r) => r.input).sort(), ["q2", "q3"]);

  const agg = await btqlText(`dimensions: span_attributes.type as type\nmeasures: count(1) as n\n${from}`);
  assert.deepEqual(agg.data.map((r) => [r.type, r.n]).sort(), [["llm", 5], ["task", 5]]);

  const ids = new Set();
  let cursor;
  for (let page = 0; page < 10; page++) {
    const resp = await btqlText(`select: *\n${from}\nlimit: 4${cursor ? `\ncursor: '${cursor}'` : ""}`);
    assert.ok(resp.schema, "a schema comes with the data");
    for (const r of resp.data) ids.add(r.id);
    if (!resp.cursor) break;
    cursor = resp.cursor;
  }
  assert.equal(ids.size, 10, "paging by the response cursor sees every row once");

  const spans = await new SpanFetcher("project_logs", projectId, rootSpanIds[2], _internalGetGlobalState()).fetchedData();
  assert.deepEqual(spans.map((s) => s.span_attributes.name).sort(), ["child2", "root2"]);
}
