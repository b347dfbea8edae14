// Dataset snapshot records through the SDK's app-URL calls (POST /api/dataset_snapshot/register, get,
// patch_id, delete_id over /v1/dataset_snapshot): created from a dataset pinned at a version (so no
// /xact-id call), registered again (the same record), replaced with `update`, found by name and by
// version, renamed and deleted. Reading rows at a snapshot and restore are in dataset_snapshot.
import assert from "node:assert/strict";
import { initDataset } from "braintrust";

export default async function ({ api }) {
  const ds = initDataset({ project: "sdk snapshot records", dataset: "golden set" });
  ds.insert({ input: "a", expected: 1 });
  await ds.flush();
  const v1 = await ds.version();
  ds.insert({ input: "b", expected: 2 });
  await ds.flush();
  const v2 = await ds.version();
  const at = (version) => initDataset({ project: "sdk snapshot records", dataset: "golden set", version });

  const snap = await at(v1).createSnapshot({ name: "release 1", description: "one row" });
  assert.equal(snap.name, "release 1");
  assert.equal(snap.xact_id, v1);
  assert.equal(snap.description, "one row");
  assert.equal(snap.dataset_id, await ds.id);
  const again = await at(v2).createSnapshot({ name: "release 1" });
  assert.deepEqual(again, snap, "registering an existing name returns it unmodified");
  const moved = await at(v2).createSnapshot({ name: "release 1", description: "two rows", update: true });
  assert.equal(moved.id, snap.id, "update replaces the record in place");
  assert.equal(moved.xact_id, v2);
  assert.equal(moved.description, "two rows");
  const other = await at(v1).createSnapshot({ name: "release 0" });
  assert.notEqual(other.id, snap.id);

  assert.deepEqual((await ds.listSnapshots()).map((s) => s.name).sort(), ["release 0", "release 1"]);
  assert.equal((await ds.getSnapshot({ snapshotName: "release 1" })).id, snap.id);
  assert.equal((await ds.getSnapshot({ xactId: v1 })).id, other.id);
  const rest = await api("GET", `/v1/dataset_snapshot?ids=${snap.id}&ids=${other.id}`);
  assert.deepEqual(rest.body.objects.map((s) => [s.name, s.xact_id]).sort(), [["release 0", v1], ["release 1", v2]],
    "the same records through the REST resource");

  const renamed = await ds.updateSnapshot(snap.id, { name: "release 1 final" });
  assert.equal(renamed.name, "release 1 final");
  assert.equal(renamed.description, "two rows", "a rename keeps the description");
  const deleted = await ds.deleteSnapshot(other.id);
  assert.equal(deleted.id, other.id);
  assert.deepEqual((await ds.listSnapshots()).map((s) => s.name), ["release 1 final"]);
}
