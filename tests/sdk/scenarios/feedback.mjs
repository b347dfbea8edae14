// Feedback through the SDK (logger.logFeedback / experiment.logFeedback): scores and expected merge into
// the row, the comment is readable as a comment on the row, and the feedback's metadata and source stay out
// of the row's own fields (they belong to the audit record).
import assert from "node:assert/strict";
import { initExperiment, initLogger } from "braintrust";
import { btqlRows } from "../lib.mjs";

export default async function ({ api }) {
  const logger = initLogger({ projectName: "sdk feedback", asyncFlush: true });
  const id = logger.log({ input: "q", output: "a", scores: { auto: 0.5 }, metadata: { source: "app" } });
  await logger.flush();
  logger.logFeedback({ id, scores: { human: 1 }, expected: "a", comment: "looks right", metadata: { reviewer: "ada" } });
  await logger.flush();

  const [row] = await btqlRows("project_logs", await logger.id);
  assert.deepEqual(row.scores, { auto: 0.5, human: 1 });
  assert.equal(row.expected, "a");
  assert.deepEqual(row.metadata, { source: "app" }, "feedback metadata is not merged into the row's metadata");

  for (const control of ["_audit_source", "_audit_metadata"])
    assert.ok(!(control in row), `${control} is a write-side control field, not part of the stored row`);
  const rest = await api("GET", `/v1/project_logs/${await logger.id}/fetch`);
  const restRow = rest.body.events.find((e) => e.id === id);
  assert.ok(Array.isArray(restRow.comments) && restRow.comments.some((c) => JSON.stringify(c).includes("looks right")),
    `the row carries its comment: ${JSON.stringify(restRow)}`);

  const exp = initExperiment("sdk feedback", { experiment: "fb" });
  const eid = exp.log({ input: "x", output: "y", scores: { auto: 0 } });
  await exp.flush();
  exp.logFeedback({ id: eid, scores: { auto: 1 }, comment: "fixed by hand" });
  await exp.flush();
  const [erow] = await exp.fetchedData();
  assert.deepEqual(erow.scores, { auto: 1 });
}
