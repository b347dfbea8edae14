// initDataset({ datasetId }) resolves the dataset and its project through POST /api/self/get_object_info,
// whose answer must carry parent_cols.project {id, name}; then fetch and insert work on it.
import assert from "node:assert/strict";
import { initDataset } from "braintrust";

export default async function () {
  const ds = initDataset({ project: "sdk by id", dataset: "lookup" });
  ds.insert({ input: "x", expected: "y" });
  await ds.flush();

  const byId = initDataset({ datasetId: await ds.id });
  assert.equal(await byId.name, "lookup");
  assert.equal((await byId.project).name, "sdk by id");
  assert.equal((await byId.project).id, (await ds.project).id);
  byId.insert({ input: "z", expected: "w" });
  await byId.flush();
  const rows = (await byId.fetchedData()).map((r) => [r.input, r.expected]).sort();
  assert.deepEqual(rows, [["x", "y"], ["z", "w"]]);
}
