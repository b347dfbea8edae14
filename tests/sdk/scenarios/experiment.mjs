// Experiments on a dataset with a base experiment: register with dataset + dataset_version and
// baseExperiment, log traced eval rows, read them back with experiment.fetch(), and summarize() names the
// base as the comparison experiment. The REST view of the experiment holds the same references.
import assert from "node:assert/strict";
import { initDataset, initExperiment } from "braintrust";

async function runExperiment(name, ds, cases, extra, scoreOf) {
  const exp = initExperiment("sdk experiments", { experiment: name, dataset: ds, ...extra });
  for (const c of cases) {
    await exp.traced(async (span) => {
      const output = c.input.toUpperCase();
      span.log({ input: c.input, output, expected: c.expected, scores: { exact: scoreOf(output, c) }, origin: c.origin });
      await span.traced(async (llm) => llm.log({ input: c.input, output, metrics: { tokens: 3 } }), { name: "llm", type: "llm" });
    }, { name: "eval", type: "eval" });
  }
  await exp.flush();
  return exp;
}

export default async function ({ api }) {
  const ds = initDataset({ project: "sdk experiments", dataset: "cases" });
  ds.insert({ input: "a", expected: "A" });
  ds.insert({ input: "b", expected: "b" });
  await ds.flush();
  const cases = (await ds.fetchedData()).map((r) => ({
    input: r.input, expected: r.expected,
    origin: { object_type: "dataset", object_id: r.dataset_id, id: r.id, _xact_id: r._xact_id, created: r.created },
  }));
  const dsVersion = await ds.version();

  const base = await runExperiment("baseline", ds, cases, {}, () => 0);
  const cand = await runExperiment("candidate", ds, cases, { baseExperiment: "baseline", metadata: { model: "m1" } },
    (out, c) => (out === c.expected ? 1 : 0));

  const baseId = await base.id;
  const candId = await cand.id;
  const rest = await api("GET", `/v1/experiment/${candId}`);
  assert.equal(rest.status, 200);
  assert.equal(rest.body.base_exp_id, baseId, "baseExperiment resolved to the baseline's id");
  assert.equal(rest.body.dataset_id, await ds.id);
  assert.equal(rest.body.dataset_version, dsVersion);
  assert.deepEqual(rest.body.metadata, { model: "m1" });

  const rows = await cand.fetchedData();
  assert.equal(rows.length, 4, "2 eval spans + 2 llm children");
  const evals = rows.filter((r) => r.span_attributes.name === "eval").sort((x, y) => x.input.localeCompare(y.input));
  assert.deepEqual(evals.map((r) => r.scores.exact), [1, 0]);
  assert.deepEqual(evals.map((r) => r.output), ["A", "B"]);
  for (const r of evals) {
    assert.equal(r.experiment_id, candId);
    assert.equal(r.origin?.object_type, "dataset");
    assert.equal(r.origin?.object_id, await ds.id);
  }
  const llm = rows.filter((r) => r.span_attributes.name === "llm");
  assert.equal(llm.length, 2);
  for (const r of llm) assert.equal(r.metrics.tokens, 3);

  const summary = await cand.summarize();
  assert.equal(summary.experimentName, "candidate");
  assert.equal(summary.comparisonExperimentName, "baseline");
}
