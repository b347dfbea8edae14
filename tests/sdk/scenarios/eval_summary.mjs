// Eval() over a dataset with two scorers, twice (the second run names the first as its base); the summary
// the SDK prints and returns comes from /experiment-comparison2 and must show each score, its difference to
// the base and the counts of improved and regressed cases, plus the comparison experiment's name.
import assert from "node:assert/strict";
import { Eval, initDataset } from "braintrust";

const exact = ({ output, expected }) => ({ name: "exact", score: output === expected ? 1 : 0 });
const near = (actual, expected, what) => assert.ok(Math.abs(actual - expected) < 1e-9, `${what}: ${actual} != ${expected}`);
const short = ({ output }) => ({ name: "short", score: output.length <= 3 ? 1 : 0.5 });

export default async function () {
  const ds = initDataset({ project: "sdk evals", dataset: "words" });
  for (const [input, expected] of [["cat", "CAT"], ["dog", "DOG"], ["mouse", "mouse"]]) ds.insert({ input, expected });
  await ds.flush();

  const base = await Eval("sdk evals", {
    experimentName: "lower", data: initDataset({ project: "sdk evals", dataset: "words" }),
    task: (input) => input, scores: [exact, short],
  });
  assert.equal(base.results.length, 3);
  assert.ok(base.summary.scores.exact, `the base's summary has scores: ${JSON.stringify(base.summary.scores)}`);
  near(base.summary.scores.exact.score, 1 / 3, "base exact score");

  const cand = await Eval("sdk evals", {
    experimentName: "upper", data: initDataset({ project: "sdk evals", dataset: "words" }),
    task: (input) => input.toUpperCase(), scores: [exact, short], baseExperimentName: "lower",
  });
  const s = cand.summary;
  assert.equal(s.comparisonExperimentName, "lower");
  assert.ok(s.scores.exact, `scores in the summary: ${JSON.stringify(s.scores)}`);
  near(s.scores.exact.score, 2 / 3, "exact score");
  near(s.scores.exact.diff, 1 / 3, "exact diff");
  assert.equal(s.scores.exact.improvements, 2);
  assert.equal(s.scores.exact.regressions, 1);
  near(s.scores.short.score, 2.5 / 3, "short score");
  near(s.scores.short.diff, 0, "short diff");
}
