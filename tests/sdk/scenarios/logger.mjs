// Logger: nested spans (root > child > grandchild), a span logged in two parts (start row + merge row),
// a later updateSpan merge, a one-shot logger.log; then every row read back through the SDK's own BTQL
// object fetcher (JSON AST) and through GET /v1/project_logs/{id}/fetch.
import assert from "node:assert/strict";
import { initLogger, _internalGetGlobalState } from "braintrust";
import { btqlRows, byName } from "../lib.mjs";

export default async function ({ api }) {
  const logger = initLogger({ projectName: "sdk logger", asyncFlush: true });
  const ids = {};
  await logger.traced(async (root) => {
    ids.root = root.id;
    ids.rootSpan = root.rootSpanId;
    root.log({ input: { question: "2+2?" }, metadata: { step: "root", nested: { a: 1 } }, tags: ["t1"] });
    await root.traced(async (child) => {
      ids.child = child.id;
      child.log({ input: "child in", output: "child out", scores: { accuracy: 0.5 } });
      await child.traced(async (grandchild) => {
        ids.grandchild = grandchild.id;
        grandchild.log({ output: { deep: [1, 2, 3] }, metrics: { tokens: 7 } });
      }, { name: "grandchild" });
    }, { name: "child" });
    await logger.flush();  // the root's first half is on the server before its second half is merged
    root.log({ output: { answer: 4 }, metadata: { nested: { b: 2 } } });
  }, { name: "root" });
  await logger.flush();
  logger.updateSpan({ id: ids.root, metadata: { late: "yes" }, scores: { human: 1 } });
  await logger.flush();

  const solo = initLogger({ projectName: "sdk logger", asyncFlush: true });
  ids.solo = solo.log({ input: "one-shot", output: "done", scores: { ok: 1 } });
  await solo.flush();

  const projectId = await logger.id;
  const rows = await btqlRows("project_logs", projectId);
  assert.equal(rows.length, 4, `4 spans, got ${rows.map((r) => r.span_attributes?.name)}`);
  const spans = byName(rows.filter((r) => r.id !== ids.solo));
  const root = spans.root;
  assert.equal(root.id, ids.root);
  assert.deepEqual(root.input, { question: "2+2?" });
  assert.deepEqual(root.output, { answer: 4 });
  assert.deepEqual(root.metadata, { step: "root", nested: { a: 1, b: 2 }, late: "yes" }, "merges deep-merge metadata");
  assert.deepEqual(root.scores, { human: 1 });
  assert.deepEqual(root.tags, ["t1"]);
  assert.equal(root.is_root, true);
  assert.equal(root.log_id, "g");
  assert.equal(root.project_id, projectId);
  assert.ok(root.metrics.start <= root.metrics.end, "metrics.start and metrics.end kept");

  const child = spans.child;
  assert.equal(child.root_span_id, ids.rootSpan);
  assert.deepEqual(child.span_parents, [root.span_id]);
  assert.equal(child.output, "child out");
  assert.deepEqual(child.scores, { accuracy: 0.5 });
  const grandchild = spans.grandchild;
  assert.deepEqual(grandchild.span_parents, [child.span_id]);
  assert.equal(grandchild.root_span_id, ids.rootSpan);
  assert.deepEqual(grandchild.output, { deep: [1, 2, 3] });
  assert.equal(grandchild.metrics.tokens, 7);
  const solo1 = rows.find((r) => r.id === ids.solo);
  assert.ok(solo1, "logger.log row stored");
  assert.equal(solo1.output, "done");

  for (const r of rows) {
    assert.match(r._xact_id, /^\d{19}$/, "fixed-width numeric _xact_id");
    assert.equal(typeof r._pagination_key, "string");
  }

  // The REST fetch returns the same rows.
  const fetched = await api("GET", `/v1/project_logs/${projectId}/fetch?limit=100`);
  assert.equal(fetched.status, 200, JSON.stringify(fetched.body));
  const restRoot = fetched.body.events.find((e) => e.id === ids.root);
  assert.deepEqual(restRoot.metadata, root.metadata);
  assert.equal(fetched.body.events.length, 4);
  assert.ok(_internalGetGlobalState().orgId, "logged in");
}
