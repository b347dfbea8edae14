#!/usr/bin/env python3
"""Offline check of configs/kubernetes against the real ferry binary (no cluster, no kubectl here).

Usage: k8s_contract.py <path to ferry> <configs/kubernetes> [--render]

Renders the kustomization as `kubectl kustomize` would for the features it uses (resources, labels,
images) and checks the contract between the manifests and ferry:
  - every manifest parses and names a kind and a name; the kustomization lists files that exist;
  - every environment variable a pod sets is one ferry reads (names taken from `ferry ... --help`), or
    JOB_COMPLETION_INDEX; the API keys come from the Secret only (secretKeyRef), never as a value;
  - the shards Job is Indexed, its completions equal FERRY_SHARD_COUNT, and it leaves the shard to
    JOB_COMPLETION_INDEX (no --shard, FERRY_SHARD or --phase);
  - podFailurePolicy fails the index (shards) or the Job (resources, finalize) on ferry's
    configuration-error exit code, read from `ferry plan --help`, and on no other ferry exit code;
    podReplacementPolicy Failed (no retry pod beside a terminating one: ferry would refuse it, exit 75);
  - every Job mounts the same PVC at a path holding FERRY_PLAN and MIGRATION_STATE_DIR, so each shard's
    sub-path state/<plan hash>/shard-<index> is where finalize and `ferry status --plan` read it.
--render prints the rendered manifests (a multi-document YAML) and checks nothing.
"""
import os
import re
import subprocess
import sys

try:
    import yaml
except ImportError:
    sys.exit(f"FAIL: {sys.executable} has no yaml module (scripts/install-deps installs python3-yaml)")

errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)
    return cond


def ferry_help(ferry, *args):
    out = subprocess.run([ferry, *args, "--help"], capture_output=True, text=True, timeout=30)
    return out.stdout + out.stderr


def ferry_contract(ferry):
    """Env names ferry reads and its exit codes, from its own --help."""
    text = "".join(ferry_help(ferry, *c) for c in ([], ["migrate"], ["plan"], ["finalize"], ["status"]))
    names = set(re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", text))
    codes = {}
    for code, what in re.findall(r"\b(\d+) (configuration error|retryable)", ferry_help(ferry, "plan")):
        codes[what] = int(code)
    if not check(set(codes) == {"configuration error", "retryable"},
                 f"`ferry plan --help` names no exit codes for configuration error / retryable: {codes}"):
        sys.exit(report())
    busy = re.findall(r"\b(\d+) this shard", ferry_help(ferry, "plan"))
    codes["all"] = {0, codes["retryable"], codes["configuration error"], *map(int, busy), 130}
    return names, codes


def render(kdir):
    with open(os.path.join(kdir, "kustomization.yaml")) as f:
        kust = yaml.safe_load(f)
    docs = []
    for res in kust.get("resources", []):
        path = os.path.join(kdir, res)
        if not check(os.path.isfile(path), f"kustomization: resource {res} does not exist"):
            continue
        with open(path) as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    labels = {}
    for entry in kust.get("labels", []):
        labels.update(entry.get("pairs", {}))
    images = {i["name"]: i for i in kust.get("images", [])}
    for d in docs:
        d.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
        if kust.get("namespace"):
            d["metadata"]["namespace"] = kust["namespace"]
        for c in containers(d):
            img = images.get(c.get("image"))
            if img:
                c["image"] = img.get("newName", img["name"]) + ":" + str(img.get("newTag", "latest"))
    return kust, docs


def pod_spec(doc):
    return doc.get("spec", {}).get("template", {}).get("spec", {}) if doc.get("kind") == "Job" else {}


def containers(doc):
    spec = pod_spec(doc)
    return spec.get("initContainers", []) + spec.get("containers", [])


def container_env(c, configmaps):
    """name -> ("value", v) | ("secret", (secret, key)) | ("field", path) | ("configmap", v)"""
    env = {}
    for src in c.get("envFrom", []):
        ref = src.get("configMapRef", {}).get("name")
        if check(ref in configmaps, f"container {c['name']}: envFrom ConfigMap {ref} not in the manifests"):
            for k, v in configmaps[ref].items():
                env[k] = ("configmap", str(v))
        check("secretRef" not in src, f"container {c['name']}: envFrom a Secret exposes keys by wholesale")
    for e in c.get("env", []):
        vf = e.get("valueFrom", {})
        if "secretKeyRef" in vf:
            env[e["name"]] = ("secret", (vf["secretKeyRef"]["name"], vf["secretKeyRef"]["key"]))
        elif "fieldRef" in vf:
            env[e["name"]] = ("field", vf["fieldRef"]["fieldPath"])
        else:
            env[e["name"]] = ("value", str(e.get("value", "")))
    return env


def check_failure_policy(job, action, codes):
    name = job["metadata"]["name"]
    rules = job["spec"].get("podFailurePolicy", {}).get("rules", [])
    on_codes = {}
    for r in rules:
        oc = r.get("onExitCodes")
        if oc:
            check(oc.get("operator") == "In", f"{name}: podFailurePolicy onExitCodes operator must be In")
            check(oc.get("containerName") == "ferry", f"{name}: podFailurePolicy names container ferry")
            for v in oc.get("values", []):
                on_codes[v] = r["action"]
    conf = codes["configuration error"]
    check(on_codes.get(conf) == action,
          f"{name}: podFailurePolicy must {action} on exit {conf} (ferry's configuration error): {on_codes}")
    for code in codes["all"] - {conf}:
        check(code not in on_codes, f"{name}: podFailurePolicy acts on exit {code}, which ferry retries")
    check(job["spec"]["template"]["spec"].get("restartPolicy") == "Never",
          f"{name}: podFailurePolicy needs restartPolicy Never")
    check(job["spec"].get("podReplacementPolicy") == "Failed",
          f"{name}: podReplacementPolicy must be Failed (a retry's pod beside the old one would exit 75)")


def index_manifests(docs):
    by_kind = {}
    for d in docs:
        ok = check(d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name"),
                   f"manifest without apiVersion/kind/metadata.name: {str(d)[:80]}")
        if ok:
            key = (d["kind"], d["metadata"]["name"])
            check(key not in by_kind, f"two manifests are {key}")
            by_kind[key] = d
    return by_kind


def check_secret_and_config(kdir, by_kind, configmaps, known):
    """The Secret: an example outside the kustomization (no keys rendered), with ferry's key names."""
    check(not any(k == "Secret" for k, _ in by_kind), "a Secret is part of the kustomization (keys in git)")
    with open(os.path.join(kdir, "secret.example.yaml")) as f:
        secret = yaml.safe_load(f)
    secret_keys = set(secret.get("stringData", {}))
    check(secret_keys == {"BT_SOURCE_API_KEY", "BT_DEST_API_KEY"}, f"secret.example.yaml keys: {secret_keys}")
    for cm, data in configmaps.items():
        for k in data:
            check(k in known, f"ConfigMap {cm}: {k} is not a variable ferry reads")
            check(not re.search(r"KEY|PASSWORD|TOKEN|SECRET", k), f"ConfigMap {cm}: secret-like {k}")
    return secret["metadata"]["name"]


def check_container(jname, c, vols, configmaps, known, secret_name, seen):
    """Env names, Secret refs, the one PVC holding the plan and the state; seen collects what Jobs share."""
    where = f"{jname}/{c['name']}"
    check(c.get("image", "").startswith("registry.example.com/ferry:"), f"{where}: image {c.get('image')}")
    env = container_env(c, configmaps)
    for k, (how, v) in env.items():
        check(k in known, f"{where}: {k} is not a variable ferry reads")
        if k in ("BT_SOURCE_API_KEY", "BT_DEST_API_KEY"):
            check(how == "secret" and v == (secret_name, k),
                  f"{where}: {k} must come from secretKeyRef {secret_name}/{k}, not {how}")
    for k in ("BT_SOURCE_API_KEY", "BT_DEST_API_KEY", "BT_SOURCE_URL", "BT_DEST_URL", "FERRY_PLAN",
              "MIGRATION_STATE_DIR"):
        check(k in env, f"{where}: {k} not set")
    if jname == "ferry-shards":
        check("FERRY_SHARD" not in env and "FERRY_PHASE" not in env,
              f"{where}: FERRY_SHARD/FERRY_PHASE set: every index would run the same shard")
        check(env.get("JOB_COMPLETION_INDEX", ("", ""))[0] in ("field", ""),
              f"{where}: JOB_COMPLETION_INDEX must come from the pod's completion index")
    if "FERRY_PLAN" not in env or "MIGRATION_STATE_DIR" not in env:
        return
    plan, state = env["FERRY_PLAN"][1], env["MIGRATION_STATE_DIR"][1]
    seen["plan"].add(plan)
    seen["state"].add(state)
    mounts = [m for m in c.get("volumeMounts", []) if "persistentVolumeClaim" in vols.get(m["name"], {})]
    check(len(mounts) == 1, f"{where}: mounts {len(mounts)} PVCs, wants 1")
    for m in mounts:
        seen["claim"].add(vols[m["name"]]["persistentVolumeClaim"]["claimName"])
        root = m["mountPath"].rstrip("/") + "/"
        check("subPath" not in m and "subPathExpr" not in m,
              f"{where}: the PVC must be mounted whole: finalize reads every shard's sub-path")
        check(plan.startswith(root) and state.startswith(root),
              f"{where}: FERRY_PLAN {plan} / MIGRATION_STATE_DIR {state} not on the PVC at {root}")


def check_jobs(jobs, configmaps, codes):
    """The three Jobs' shapes: Indexed shards matching FERRY_SHARD_COUNT, suspension, failure policies, args."""
    s = jobs["ferry-shards"]["spec"]
    count = next((int(d["FERRY_SHARD_COUNT"]) for d in configmaps.values() if "FERRY_SHARD_COUNT" in d), None)
    check(s.get("completionMode") == "Indexed", "ferry-shards: completionMode must be Indexed")
    check(count is not None and s.get("completions") == count,
          f"ferry-shards: completions {s.get('completions')} != FERRY_SHARD_COUNT {count}")
    check(1 <= s.get("parallelism", 0) <= s.get("completions", 0), "ferry-shards: parallelism not in 1..completions")
    check(s.get("backoffLimitPerIndex", 0) >= 1, "ferry-shards: backoffLimitPerIndex (retries per shard) missing")
    check(s.get("suspend") is True, "ferry-shards must start suspended (run resumes it after the resources)")
    check(jobs["ferry-finalize"]["spec"].get("suspend") is True, "ferry-finalize must start suspended")
    check(not jobs["ferry-resources"]["spec"].get("suspend"), "ferry-resources must not be suspended")
    check_failure_policy(jobs["ferry-shards"], "FailIndex", codes)
    check_failure_policy(jobs["ferry-resources"], "FailJob", codes)
    check_failure_policy(jobs["ferry-finalize"], "FailJob", codes)

    def args_of(jname):
        return [c.get("args", []) for c in pod_spec(jobs[jname])["containers"] if c["name"] == "ferry"][0]
    check(args_of("ferry-shards") == ["migrate"], f"ferry-shards args {args_of('ferry-shards')}")
    check(args_of("ferry-resources") == ["migrate", "--phase", "resources"],
          f"ferry-resources args {args_of('ferry-resources')}")
    check(args_of("ferry-finalize") == ["finalize"], f"ferry-finalize args {args_of('ferry-finalize')}")
    init = " ".join(" ".join(c.get("args", [])) for c in pod_spec(jobs["ferry-resources"]).get("initContainers", []))
    check("ferry plan --out" in init, "ferry-resources: no init container making the plan")


def main():
    ferry, kdir = sys.argv[1], sys.argv[2]
    _, docs = render(kdir)
    if "--render" in sys.argv[3:]:
        print(yaml.safe_dump_all(docs, sort_keys=False), end="")
        return 0
    names, codes = ferry_contract(ferry)
    known = names | {"JOB_COMPLETION_INDEX"}
    by_kind = index_manifests(docs)
    configmaps = {n: d.get("data", {}) for (k, n), d in by_kind.items() if k == "ConfigMap"}
    pvcs = {n: d for (k, n), d in by_kind.items() if k == "PersistentVolumeClaim"}
    jobs = {n: d for (k, n), d in by_kind.items() if k == "Job"}
    for n in ("ferry-resources", "ferry-shards", "ferry-finalize"):
        check(n in jobs, f"no Job {n}")
    if errors:
        return report()
    secret_name = check_secret_and_config(kdir, by_kind, configmaps, known)
    seen = {"plan": set(), "state": set(), "claim": set()}
    for jname, job in jobs.items():
        vols = {v["name"]: v for v in pod_spec(job).get("volumes", [])}
        for c in containers(job):
            check_container(jname, c, vols, configmaps, known, secret_name, seen)
    check(all(len(v) == 1 for v in seen.values()), f"the Jobs disagree on the plan, state dir or PVC: {seen}")
    for claim in seen["claim"]:
        check(claim in pvcs, f"PVC {claim} not in the manifests")
        check("ReadWriteMany" in pvcs.get(claim, {}).get("spec", {}).get("accessModes", []),
              f"PVC {claim}: shards on several nodes need ReadWriteMany")
    check_jobs(jobs, configmaps, codes)
    return report()


def report():
    for e in errors:
        print("FAIL:", e)
    if not errors:
        print("PASS: configs/kubernetes matches ferry's contract")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
