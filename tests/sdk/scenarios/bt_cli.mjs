// The `bt` CLI (Rust binary, npm @braintrust/bt-linux-x64) listing what the SDK and the REST API created:
// status (org from the key), projects, datasets, experiments and prompts of a project.
import assert from "node:assert/strict";
import { initDataset, initExperiment } from "braintrust";
import { btJson } from "../lib.mjs";

export default async function ({ api, cli }) {
  const ds = initDataset({ project: "sdk bt", dataset: "rows" });
  ds.insert({ input: "a", expected: "b" });
  await ds.flush();
  const exp = initExperiment("sdk bt", { experiment: "run 1" });
  exp.log({ input: "a", output: "b", scores: { ok: 1 } });
  await exp.flush();
  const projectId = (await ds.project).id;
  const prompt = await api("POST", "/v1/prompt", {
    project_id: projectId, name: "Hello", slug: "hello",
    prompt_data: { prompt: { type: "chat", messages: [{ role: "user", content: "hi {{who}}" }] } },
  });
  assert.equal(prompt.status, 200);

  const status = await btJson(cli, ["status"]);
  assert.equal(status.org, "emu-org");
  const projects = await btJson(cli, ["projects", "list"]);
  assert.deepEqual(projects.map((p) => [p.id, p.name]), [[projectId, "sdk bt"]]);
  const datasets = await btJson(cli, ["datasets", "list", "-p", "sdk bt"]);
  assert.deepEqual(datasets.map((d) => [d.id, d.name]), [[await ds.id, "rows"]]);
  const experiments = await btJson(cli, ["experiments", "list", "-p", "sdk bt"]);
  assert.deepEqual(experiments.map((e) => [e.id, e.name]), [[await exp.id, "run 1"]]);
  const prompts = await btJson(cli, ["prompts", "list", "-p", "sdk bt"]);
  assert.deepEqual(prompts.map((p) => [p.id, p.slug]), [[prompt.body.id, "hello"]]);
  assert.equal(prompts[0].prompt_data.prompt.messages[0].content, "hi {{who}}");
}
