// Dataset snapshots and restore through the SDK: createSnapshot (GET /xact-id + POST
// /api/dataset_snapshot/register), list/get/update/delete (/api/dataset_snapshot/get|patch_id|delete_id),
// initDataset({ snapshotName }) reading the rows as of the snapshot, and restorePreview/restore
// (POST /v1/dataset/{id}/restore[/preview]) bringing the dataset back to it.
import assert from "node:assert/strict";
import { initDataset } from "braintrust";

const inputs = async (ds) => (await ds.fetchedData()).map((r) => `${r.input}=${r.expected}`).sort();

export default async function () {
  const ds = initDataset({ project: "sdk snapshots", dataset: "golden" });
  const a = ds.insert({ input: "a", expected: 1 });
  const b = ds.insert({ input: "b", expected: 2 });
  const snap = await ds.createSnapshot({ name: "v1", description: "two rows" });
  assert.equal(snap.name, "v1");
  assert.equal(snap.dataset_id, await ds.id);
  assert.match(snap.xact_id, /^\d+$/);

  ds.update({ id: a, expected: 10 });
  ds.delete(b);
  ds.insert({ input: "c", expected: 3 });
  await ds.flush();
  assert.deepEqual(await inputs(ds), ["a=10", "c=3"]);

  const listed = await ds.listSnapshots();
  assert.deepEqual(listed.map((s) => [s.id, s.name, s.xact_id]), [[snap.id, "v1", snap.xact_id]]);
  assert.equal((await ds.getSnapshot({ snapshotName: "v1" })).id, snap.id);

  const old = initDataset({ project: "sdk snapshots", dataset: "golden", snapshotName: "v1" });
  assert.deepEqual(await inputs(old), ["a=1", "b=2"], "the snapshot's rows as they were");

  const preview = await ds.restorePreview({ version: snap.xact_id });
  assert.deepEqual(preview, { rows_to_restore: 2, rows_to_delete: 1 });
  const restored = await ds.restore({ version: snap.xact_id });
  assert.equal(restored.rows_restored, 2);
  assert.equal(restored.rows_deleted, 1);
  assert.deepEqual(await inputs(initDataset({ project: "sdk snapshots", dataset: "golden" })), ["a=1", "b=2"]);

  const renamed = await ds.updateSnapshot(snap.id, { name: "v1-final" });
  assert.equal(renamed.name, "v1-final");
  await ds.deleteSnapshot(snap.id);
  assert.deepEqual(await ds.listSnapshots(), []);
}
