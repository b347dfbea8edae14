// Datasets read at a pinned version: initDataset({ version }) returns each row as it was at that version
// (rows updated or deleted later come back in their old form; rows added later are absent).
import assert from "node:assert/strict";
import { initDataset } from "braintrust";

async function inputs(ds) {
  const rows = await ds.fetchedData();
  return Object.fromEntries(rows.map((r) => [r.input, r]));
}

export default async function () {
  const ds = initDataset({ project: "sdk datasets", dataset: "versioned" });
  const a = ds.insert({ input: "a", expected: 1, metadata: { rev: 1 } });
  const b = ds.insert({ input: "b", expected: 2 });
  ds.insert({ input: "c", expected: 3 });
  await ds.flush();
  const v1 = await ds.version();

  ds.update({ id: a, expected: 10, metadata: { rev: 2 } });
  ds.delete(b);
  ds.insert({ input: "d", expected: 4 });
  await ds.flush();
  const v2 = await ds.version();

  const latest = await inputs(initDataset({ project: "sdk datasets", dataset: "versioned" }));
  assert.deepEqual(Object.keys(latest).sort(), ["a", "c", "d"]);
  assert.equal(latest.a.expected, 10);

  const atV1 = await inputs(initDataset({ project: "sdk datasets", dataset: "versioned", version: v1 }));
  assert.deepEqual(Object.keys(atV1).sort(), ["a", "b", "c"], "the rows as they were at the first version");
  assert.equal(atV1.a.expected, 1, "a as it was before its update");
  assert.deepEqual(atV1.a.metadata, { rev: 1 });

  const atV2 = await inputs(initDataset({ project: "sdk datasets", dataset: "versioned", version: v2 }));
  assert.deepEqual(Object.keys(atV2).sort(), ["a", "c", "d"]);
}
