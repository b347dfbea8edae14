// A prompt created through the REST API (as a migrator creates it on the destination) loads through the SDK
// by project name + slug and by id, and renders with its template and options.
import assert from "node:assert/strict";
import { loadPrompt } from "braintrust";

export default async function ({ api }) {
  const project = await api("POST", "/v1/project", { name: "sdk-prompts" });
  assert.equal(project.status, 200, JSON.stringify(project.body));
  const created = await api("POST", "/v1/prompt", {
    project_id: project.body.id, name: "Greeter", slug: "greeter", description: "says hello",
    prompt_data: {
      prompt: { type: "chat", messages: [{ role: "system", content: "Greet {{name}} politely." }] },
      options: { model: "gpt-4o-mini", params: { temperature: 0.25 } },
    },
    tags: ["greeting"],
  });
  assert.equal(created.status, 200, JSON.stringify(created.body));

  const bySlug = await loadPrompt({ projectName: "sdk-prompts", slug: "greeter" });
  assert.equal(bySlug.id, created.body.id);
  assert.equal(bySlug.name, "Greeter");
  assert.equal(bySlug.version, created.body._xact_id);
  const built = bySlug.build({ name: "Ada" });
  assert.equal(built.model, "gpt-4o-mini");
  assert.equal(built.temperature, 0.25);
  assert.deepEqual(built.messages, [{ role: "system", content: "Greet Ada politely." }]);

  const byId = await loadPrompt({ id: created.body.id });
  assert.equal(byId.slug, "greeter");
  assert.deepEqual(byId.build({ name: "Bo" }).messages, [{ role: "system", content: "Greet Bo politely." }]);

  const byProjectId = await loadPrompt({ projectId: project.body.id, slug: "greeter" });
  assert.equal(byProjectId.id, created.body.id);

  await assert.rejects(loadPrompt({ projectName: "sdk-prompts", slug: "nobody" }), /not found/);
}
