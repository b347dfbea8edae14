// The SDK's app-URL calls around projects and objects: login (org info), project register by name,
// initLogger by project id (GET /api/project?id=), ProjectNameIdMap (POST /api/project/register and
// POST /api/project/get, used by publish and `braintrust pull`).
import assert from "node:assert/strict";
import { ProjectNameIdMap, _internalGetGlobalState, initLogger, login } from "braintrust";

export default async function ({ api }) {
  const state = await login();
  assert.equal(state.orgName, "emu-org");
  assert.match(state.orgId, /^[0-9a-f-]{36}$/);

  const names = new ProjectNameIdMap();
  const id = await names.getId("sdk projects");
  assert.match(id, /^[0-9a-f-]{36}$/);
  assert.equal(await names.getId("sdk projects"), id, "cached");
  assert.equal(await new ProjectNameIdMap().getId("sdk projects"), id, "register finds the project by name");
  assert.equal(await new ProjectNameIdMap().getName(id), "sdk projects", "api/project/get names it");
  await assert.rejects(new ProjectNameIdMap().getName("00000000-0000-4000-8000-000000000000"),
    "an unknown id is not a project");

  const logger = initLogger({ projectId: id, asyncFlush: true });
  logger.log({ input: "by id", output: "ok" });
  await logger.flush();
  assert.equal((await logger.project).name, "sdk projects");

  const listed = await api("GET", `/v1/project_logs/${id}/fetch`);
  assert.equal(listed.body.events.length, 1);
  assert.ok(_internalGetGlobalState().loggedIn);
}
