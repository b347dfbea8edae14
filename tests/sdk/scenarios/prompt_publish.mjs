// Prompts published from code (projects.create().prompts.create() + publish() -> POST /insert-functions),
// twice with different content, the first version assigned to the environment "production"; then loaded
// by project name (with a space), by id, by version (raw and the SDK's pretty form from
// getPromptVersions()) and by environment. A prompt is a function: it is listed by GET /v1/function.
import assert from "node:assert/strict";
import { getPromptVersions, loadPrompt, projects } from "braintrust";

const PROJECT = "sdk prompts";

async function publish(content, extra = {}) {
  const project = projects.create({ name: PROJECT });
  project.prompts.create({
    name: "Greeter", slug: "greeter", model: "gpt-4o-mini",
    messages: [{ role: "system", content }], ifExists: "replace", ...extra,
  });
  await project.publish();
}

const text = (prompt) => prompt.build({ name: "Ada" }).messages[0].content;

export default async function ({ api }) {
  const env = await api("POST", "/environment", { name: "Production", slug: "production" });
  assert.equal(env.status, 200, `create environment: ${JSON.stringify(env.body)}`);

  await publish("v1: hello {{name}}", { environments: ["production"] });
  const first = await loadPrompt({ projectName: PROJECT, slug: "greeter" });
  assert.equal(text(first), "v1: hello Ada");
  const v1 = first.version;

  await publish("v2: hi {{name}}");
  const latest = await loadPrompt({ projectName: PROJECT, slug: "greeter" });
  assert.equal(text(latest), "v2: hi Ada");
  assert.equal(latest.id, first.id, "a new version keeps the prompt's id");
  assert.notEqual(latest.version, v1);

  assert.equal(text(await loadPrompt({ id: first.id })), "v2: hi Ada", "by id: the latest version");
  assert.equal(text(await loadPrompt({ projectName: PROJECT, slug: "greeter", version: v1 })), "v1: hello Ada");
  assert.equal(text(await loadPrompt({ id: first.id, version: v1 })), "v1: hello Ada");
  assert.equal(text(await loadPrompt({ projectName: PROJECT, slug: "greeter", environment: "production" })),
    "v1: hello Ada", "the environment holds the first version");

  const versions = await getPromptVersions(first.projectId, first.id);
  assert.equal(versions.length, 2, `versions: ${versions}`);
  for (const pretty of versions) {
    const p = await loadPrompt({ projectName: PROJECT, slug: "greeter", version: pretty });
    assert.ok([v1, latest.version].includes(p.version), `pretty version ${pretty} loads ${p.version}`);
  }

  const functions = await api("GET", `/v1/function?project_id=${first.projectId}`);
  assert.equal(functions.status, 200);
  const fn = functions.body.objects.find((f) => f.id === first.id);
  assert.ok(fn, "the prompt is listed as a function");
  assert.equal(fn.function_data.type, "prompt");
  assert.equal(fn.prompt_data.prompt.messages[0].content, "v2: hi {{name}}");
}
