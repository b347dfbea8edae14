// Opening an existing experiment read-only by name (init({ open: true }) -> POST /api/experiment/get) and
// reading its rows as a dataset for a follow-up eval (asDataset()).
import assert from "node:assert/strict";
import { init, initExperiment } from "braintrust";

export default async function () {
  const exp = initExperiment("sdk open", { experiment: "first run" });
  exp.log({ input: "q1", output: "a1", expected: "a1", scores: { exact: 1 } });
  exp.log({ input: "q2", output: "x", expected: "a2", scores: { exact: 0 } });
  await exp.flush();

  const ro = init({ project: "sdk open", experiment: "first run", open: true });
  assert.equal(await ro.id, await exp.id, "opened by name");
  assert.equal(await ro.name, "first run");
  const rows = (await ro.fetchedData()).sort((a, b) => a.input.localeCompare(b.input));
  assert.deepEqual(rows.map((r) => [r.input, r.output, r.scores.exact]), [["q1", "a1", 1], ["q2", "x", 0]]);
  const cases = [];
  for await (const c of ro.asDataset()) cases.push(c);
  assert.deepEqual(cases.map((c) => [c.input, c.expected]).sort(), [["q1", "a1"], ["q2", "a2"]]);
}
