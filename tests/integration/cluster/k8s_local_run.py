#!/usr/bin/env python3
"""Runs configs/kubernetes as local processes: a stand-in for a cluster, to test the manifests' contract.

Usage: k8s_local_run.py <path to ferry> <configs/kubernetes> --data DIR [--set NAME=VALUE ...]

Renders the kustomization (k8s_contract.render) and runs its three Jobs in the order configs/kubernetes/run
gives them (ferry-resources, then ferry-shards, then ferry-finalize), each pod as the processes of its
containers (init containers first, then the ferry container) with the environment the manifests give:
the ConfigMap's data (--set overrides, e.g. the emulators' URLs), secretKeyRef values taken from this
process's environment under the key's name (as the Secret would hold them), JOB_COMPLETION_INDEX set to the
pod's index, and the PVC's mount path mapped to DIR (paths in values under the mount are rewritten). The
image's entrypoint is ferry (configs/Dockerfile); `ferry` on PATH is the given binary.
The Job semantics the manifests rely on are honoured: completions and parallelism (the shards run at once
as separate processes), retries (backoffLimit, backoffLimitPerIndex), podFailurePolicy onExitCodes
(FailJob, FailIndex). Each pod's output goes to DIR/pods/<job>-<index>-<attempt>.log.
Exit 0 when every Job completed; 1 otherwise, naming the Job.
"""
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import k8s_contract  # noqa: E402


def pod_processes(job, index, configmaps, data_dir, ferry, overrides):
    """[(argv, env)] for the pod's containers, init containers first."""
    spec = k8s_contract.pod_spec(job)
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    procs = []
    for c in k8s_contract.containers(job):
        mounts = [m["mountPath"].rstrip("/") + "/" for m in c.get("volumeMounts", [])
                  if "persistentVolumeClaim" in vols.get(m["name"], {})]

        def local(v):
            for m in mounts:
                if v.startswith(m):
                    return os.path.join(data_dir, v[len(m):])
            return v
        env = {"PATH": os.path.dirname(os.path.abspath(ferry)) + ":/usr/bin:/bin", "HOME": data_dir}
        for name, (how, v) in k8s_contract.container_env(c, configmaps).items():
            if how == "secret":
                env[name] = os.environ[v[1]]
            elif how == "field":
                env[name] = str(index)
            else:
                env[name] = local(overrides.get(name, v))
        if "command" in c:
            argv = list(c["command"]) + list(c.get("args", []))
        else:
            argv = [os.path.abspath(ferry)] + list(c.get("args", []))
        procs.append((argv, env))
    return procs


def fail_action(job, code):
    for r in job["spec"].get("podFailurePolicy", {}).get("rules", []):
        if code in r.get("onExitCodes", {}).get("values", []):
            return r["action"]
    return None


def start_pod(job, index, attempt, ctx):
    """A pod about to run: its containers left to run (in order), the current process, its log file."""
    name = job["metadata"]["name"]
    log = open(os.path.join(ctx["data"], "pods", f"{name}-{index}-{attempt}.log"), "w")
    cwd = os.path.join(ctx["data"], "pods", f"{name}-{index}-{attempt}.cwd")
    os.makedirs(cwd)
    return {"index": index, "attempt": attempt, "log": log, "cwd": cwd,
            "left": pod_processes(job, index, ctx["configmaps"], ctx["data"], ctx["ferry"], ctx["set"]),
            "proc": None}


def step_pod(pod):
    """Advances a pod; returns None while it runs, else its exit code (0: every container succeeded)."""
    while True:
        if pod["proc"] is not None:
            rc = pod["proc"].poll()
            if rc is None:
                return None
            pod["proc"] = None
            if rc != 0:
                pod["log"].close()
                return rc
        if not pod["left"]:
            pod["log"].close()
            return 0
        argv, env = pod["left"].pop(0)
        pod["log"].write(f"# {' '.join(argv)}\n")
        pod["log"].flush()
        pod["proc"] = subprocess.Popen(argv, env=env, cwd=pod["cwd"], stdout=pod["log"], stderr=subprocess.STDOUT)


def run_job(job, ctx):
    name, spec = job["metadata"]["name"], job["spec"]
    indexed = spec.get("completionMode") == "Indexed"
    completions = spec.get("completions", 1)
    parallelism = spec.get("parallelism", 1)
    per_index = spec.get("backoffLimitPerIndex") if indexed else None
    job_limit = spec.get("backoffLimit", 6)
    pending = list(range(completions))
    failures = {i: 0 for i in pending}
    running, failed_job_failures = [], 0
    while pending or running:
        while pending and len(running) < parallelism:
            i = pending.pop(0)
            running.append(start_pod(job, i, failures[i], ctx))
        time.sleep(0.05)
        for pod in list(running):
            rc = step_pod(pod)
            if rc is None:
                continue
            running.remove(pod)
            i = pod["index"]
            print(f"k8s_local_run: {name} index {i} attempt {pod['attempt']} exit {rc}", flush=True)
            if rc == 0:
                continue
            action = fail_action(job, rc)
            failures[i] += 1
            failed_job_failures += 1
            if (action == "FailJob" or (not indexed and failed_job_failures > job_limit) or
                    action == "FailIndex" or (indexed and failures[i] > per_index)):
                # (a failed index: the shards Job cannot complete and finalize never starts; stop here)
                for other in running:
                    if other["proc"] is not None:
                        other["proc"].kill()
                        other["proc"].wait()
                return False
            pending.append(i)
    return True


def main():
    ferry, kdir = sys.argv[1], sys.argv[2]
    args = sys.argv[3:]
    data = args[args.index("--data") + 1]
    sets = dict(a.split("=", 1) for a in (args[i + 1] for i, a in enumerate(args) if a == "--set"))
    _, docs = k8s_contract.render(kdir)
    if k8s_contract.errors:
        print("\n".join(k8s_contract.errors))
        return 1
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    jobs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Job"}
    os.makedirs(os.path.join(data, "pods"), exist_ok=True)
    ctx = {"data": data, "configmaps": configmaps, "ferry": ferry, "set": sets}
    for name in ("ferry-resources", "ferry-shards", "ferry-finalize"):
        if not run_job(jobs[name], ctx):
            print(f"k8s_local_run: job {name} failed")
            return 1
        print(f"k8s_local_run: job {name} complete", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
