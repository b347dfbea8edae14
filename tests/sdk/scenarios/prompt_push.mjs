// `braintrust push` of a file defining a code tool and a prompt that uses it: the CLI bundles the code
// (esbuild), asks POST /function/code for an upload URL, PUTs the gzipped bundle there and saves both
// definitions with POST /insert-functions. Then the prompt loads through the SDK with its tool reference,
// and both are listed by GET /v1/function (the tool as code backed by the bundle).
import assert from "node:assert/strict";
import path from "node:path";
import { loadPrompt } from "braintrust";
import { SDK_DIR } from "../harness.mjs";

export default async function ({ api, cli }) {
  const file = path.join(SDK_DIR, "fixtures", "push_functions.ts");
  const push = await cli("braintrust", ["push", file]);
  assert.equal(push.code, 0, `braintrust push failed:\n${push.stdout}\n${push.stderr}`);
  assert.match(push.stdout + push.stderr, /1 file uploaded successfully/, `push reported a problem:\n${push.stdout}\n${push.stderr}`);

  const list = await api("GET", `/v1/function?project_name=${encodeURIComponent("sdk push")}`);
  assert.equal(list.status, 200, JSON.stringify(list.body));
  const bySlug = Object.fromEntries(list.body.objects.map((f) => [f.slug, f]));
  assert.deepEqual(Object.keys(bySlug).sort(), ["adder", "calculator"]);
  const adder = bySlug.adder;
  assert.equal(adder.function_type, "tool");
  assert.equal(adder.function_data.type, "code");
  assert.equal(adder.function_data.data.type, "bundle");
  assert.equal(adder.function_data.data.runtime_context.runtime, "node");
  assert.ok(adder.function_data.data.bundle_id, "the bundle id from /function/code");
  assert.ok(adder.function_schema?.parameters, "the tool's parameter schema");
  assert.equal(bySlug.calculator.function_data.type, "prompt");

  const prompt = await loadPrompt({ projectName: "sdk push", slug: "calculator" });
  assert.equal(prompt.id, bySlug.calculator.id);
  assert.deepEqual(prompt.build({ a: 2, b: 3 }).messages, [{ role: "user", content: "What is 2 + 3?" }]);
  const tools = prompt.promptData.tool_functions;
  assert.deepEqual(tools, [{ type: "function", id: adder.id }], "the tool reference resolved to the tool's id");

  // Pushing the same file again replaces both definitions in place.
  const again = await cli("braintrust", ["push", "--if-exists", "replace", file]);
  assert.equal(again.code, 0, `second push failed:\n${again.stdout}\n${again.stderr}`);
  const relist = await api("GET", `/v1/function?project_name=${encodeURIComponent("sdk push")}`);
  assert.deepEqual(relist.body.objects.map((f) => f.id).sort(), [adder.id, bySlug.calculator.id].sort());
}
