// BTQL through the SDK's connection, in the forms a migrator and the SDK's fetchers send today: the text
// form paged by _pagination_key (select *, spans shape, filter, sort asc, limit) and the JSON-AST form paged
// by cursor, both returning every row once; experiment(...) with several ids.
import assert from "node:assert/strict";
import { initExperiment, initLogger } from "braintrust";
import { btqlRows, btqlText, logFiveTraces } from "../lib.mjs";

export default async function () {
  const { projectId } = await logFiveTraces(initLogger, "sdk btql basic");

  const seen = [];
  let last = "";
  for (let page = 0; page < 20; page++) {
    const resp = await btqlText(`select: *\nfrom: project_logs('${projectId}') spans\n` +
      `filter: _pagination_key > '${last}'\nsort: _pagination_key asc\nlimit: 3`);
    if (resp.data.length === 0) break;
    assert.ok(resp.data.length <= 3);
    seen.push(...resp.data);
    last = resp.data.at(-1)._pagination_key;
  }
  assert.equal(seen.length, 10, "5 roots + 5 children");
  assert.equal(new Set(seen.map((r) => r.id)).size, 10, "each row once");
  const keys = seen.map((r) => r._pagination_key);
  assert.deepEqual(keys, [...keys].sort(), "ascending _pagination_key");

  const ast = await btqlRows("project_logs", projectId);
  assert.deepEqual(new Set(ast.map((r) => r.id)), new Set(seen.map((r) => r.id)), "the JSON-AST form sees the same rows");

  const ids = [];
  for (const name of ["e1", "e2"]) {
    const exp = initExperiment("sdk btql basic", { experiment: name });
    exp.log({ input: name, output: name, scores: { ok: 1 } });
    await exp.flush();
    ids.push(await exp.id);
  }
  const both = await btqlText(`select: *\nfrom: experiment('${ids[0]}', '${ids[1]}') spans\nsort: _pagination_key asc\nlimit: 100`);
  assert.deepEqual(both.data.map((r) => r.input).sort(), ["e1", "e2"]);
  assert.deepEqual(new Set(both.data.map((r) => r.experiment_id)), new Set(ids));
}
