// Datasets: insert, update (a merge), delete, fetch in small pages, version() and summarize().
import assert from "node:assert/strict";
import { initDataset } from "braintrust";

function sortById(rows) {
  return [...rows].sort((a, b) => a.input.localeCompare(b.input));
}

export default async function () {
  const ds = initDataset({ project: "sdk datasets", dataset: "qa pairs", description: "from the SDK suite" });
  const a = ds.insert({ input: "a", expected: { answer: 1 }, metadata: { lang: "en", nested: { x: 1 } }, tags: ["t"] });
  const b = ds.insert({ input: "b", expected: 2 });
  const c = ds.insert({ id: "row-c", input: "c", expected: [3] });
  assert.equal(c, "row-c", "a caller-chosen id is kept");
  await ds.flush();
  const v1 = await ds.version();
  assert.match(v1, /^\d+$/, `version is a transaction id, got ${v1}`);

  ds.update({ id: a, expected: { answer: 11 }, metadata: { nested: { y: 2 } } });
  ds.delete(b);
  const d = ds.insert({ input: "d", expected: null });
  await ds.flush();
  const v2 = await ds.version();
  assert.ok(BigInt(v2) > BigInt(v1), `version moves forward (${v1} -> ${v2})`);

  const again = initDataset({ project: "sdk datasets", dataset: "qa pairs" });
  assert.equal(await again.id, await ds.id, "register finds the existing dataset by name");
  const rows = [];
  for await (const r of again.fetch({ batchSize: 2 })) rows.push(r);
  const got = sortById(rows);
  assert.deepEqual(got.map((r) => r.input), ["a", "c", "d"], "b is deleted");
  assert.equal(got[0].id, a);
  assert.deepEqual(got[0].expected, { answer: 11 });
  assert.deepEqual(got[0].metadata, { lang: "en", nested: { x: 1, y: 2 } }, "update deep-merges metadata");
  assert.deepEqual(got[0].tags, ["t"]);
  assert.deepEqual(got[1].expected, [3]);
  assert.equal(got[2].id, d);
  assert.equal(got[2].expected, null);
  for (const r of got) {
    assert.equal(r.dataset_id, await ds.id);
    assert.match(r._xact_id, /^\d{19}$/);
  }

  const summary = await again.summarize();
  assert.equal(summary.datasetName, "qa pairs");
  assert.equal(summary.dataSummary.totalRecords, 3);
}
