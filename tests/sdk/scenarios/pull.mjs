// `braintrust pull`: prompts created through the REST API are written out as a TypeScript project file
// (GET /v1/function lists prompts; POST /api/project/get names their project).
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";

export default async function ({ api, cli, dirs }) {
  const project = await api("POST", "/v1/project", { name: "sdk pull" });
  assert.equal(project.status, 200);
  for (const [slug, content] of [["summarize", "Summarize {{text}}"], ["translate", "Translate {{text}} to French"]]) {
    const p = await api("POST", "/v1/prompt", {
      project_id: project.body.id, name: slug, slug,
      prompt_data: { prompt: { type: "chat", messages: [{ role: "user", content }] }, options: { model: "gpt-4o-mini" } },
    });
    assert.equal(p.status, 200, JSON.stringify(p.body));
  }
  const out = path.join(dirs.work, "pulled");
  const pull = await cli("braintrust", ["pull", "--project-name", "sdk pull", "--output-dir", out]);
  assert.equal(pull.code, 0, `braintrust pull failed:\n${pull.stdout}\n${pull.stderr}`);
  assert.match(pull.stdout, /\* sdk pull/, `pull found the project:\n${pull.stdout}\n${pull.stderr}`);
  const file = path.join(out, "sdk-pull.ts");
  assert.ok(fs.existsSync(file), `pull wrote ${file}:\n${pull.stdout}\n${pull.stderr}`);
  const text = fs.readFileSync(file, "utf8");
  for (const needle of ["summarize", "Summarize {{text}}", "translate", "Translate {{text}} to French", "gpt-4o-mini"])
    assert.ok(text.includes(needle), `the pulled file has ${needle}:\n${text}`);
}
