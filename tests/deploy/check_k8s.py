#!/usr/bin/env python3
"""check_k8s.py -- what can be checked of deploy/k8s/ and deploy/Containerfile
without a Kubernetes cluster or an image builder (neither runs on the
machines this project is built on; deploy/README.md says what that leaves
unverified):

 - every manifest parses (YAML), and is an object Kubernetes would take the
   shape of (apiVersion, kind, metadata.name);
 - every flag the StatefulSet gives the node, and every config line of the
   ConfigMap, is an option of `peercached --help`, and together they pass
   `peercached --check-config` (with the pod's variables filled in);
 - every $(VAR) in the args is defined in the container's env;
 - the ports agree: --listen and --join with the client port, --http with
   the http port, the probes' port and paths with the HTTP endpoint
   (/readyz, /healthz), the Prometheus annotations with /metrics on it,
   the Services' ports with the container's, the Containerfile's EXPOSE;
 - names agree: serviceName and --join with the headless Service, the
   ConfigMap and Secret volumes with those objects, the PDB and Services'
   selectors with the pods' labels, the kustomization with the files;
 - resources: the memory request covers --memory plus --max-buffer-memory.

Usage: check_k8s.py PEERCACHED REPO_ROOT. Exit 0, or 1 with every finding.
"""
import os
import re
import subprocess
import sys
import tempfile

import yaml

problems = []


def bad(msg):
    problems.append(msg)


def size_bytes(s):
    m = re.fullmatch(r"(\d+)\s*(b|kb|mb|gb|Ki|Mi|Gi)?", str(s).strip(), re.I)
    if not m:
        raise ValueError(s)
    mult = {None: 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30,
            "ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30}[(m.group(2) or "").lower() or None]
    return int(m.group(1)) * mult


def main():
    node, root = sys.argv[1], sys.argv[2]
    kdir = os.path.join(root, "deploy", "k8s")
    helptext = subprocess.run([node, "--help"], capture_output=True, text=True).stdout
    options = set(re.findall(r"^  --([a-z0-9-]+)", helptext, re.M))
    envs = set(re.findall(r"env (PEERCACHE_[A-Z0-9_]+)", helptext))
    if "http" not in options or "check-config" not in options:
        bad("peercached --help lacks --http or --check-config: wrong binary?")

    docs = {}
    for f in sorted(os.listdir(kdir)):
        if not f.endswith(".yaml"):
            continue
        with open(os.path.join(kdir, f)) as fh:
            try:
                for d in yaml.safe_load_all(fh):
                    if d is None:
                        continue
                    for key in ("apiVersion", "kind"):
                        if key not in d:
                            bad(f"{f}: an object without {key}")
                    if d.get("kind") != "Kustomization" and not d.get("metadata", {}).get("name"):
                        bad(f"{f}: a {d.get('kind')} without metadata.name")
                    docs.setdefault(d.get("kind"), []).append((f, d))
            except yaml.YAMLError as e:
                bad(f"{f}: not YAML: {e}")

    def one(kind, name=None):
        found = [d for f, d in docs.get(kind, []) if name is None or d["metadata"]["name"] == name]
        if len(found) != 1:
            bad(f"expected one {kind}{' ' + name if name else ''}, found {len(found)}")
            return {}
        return found[0]

    sts = one("StatefulSet")
    cm = one("ConfigMap")
    pdb = one("PodDisruptionBudget")
    secret = one("Secret")
    kust = one("Kustomization")
    services = [d for f, d in docs.get("Service", [])]
    pod = sts.get("spec", {}).get("template", {})
    labels = pod.get("metadata", {}).get("labels", {})
    spec = pod.get("spec", {})
    c = [x for x in spec.get("containers", []) if x.get("name") == "peercached"]
    if len(c) != 1:
        bad("the StatefulSet has no container named peercached")
        return
    c = c[0]

    # Flags and variables.
    args = c.get("args", [])
    env = {e["name"] for e in c.get("env", [])}
    flags = {}
    for a in args:
        m = re.fullmatch(r"--([a-z0-9-]+)(?:=(.*))?", a)
        if not m:
            bad(f"arg {a!r} is not --name=value")
            continue
        if m.group(1) not in options:
            bad(f"--{m.group(1)} is not an option of peercached")
        flags[m.group(1)] = m.group(2) or ""
        for var in re.findall(r"\$\((\w+)\)", a):
            if var not in env:
                bad(f"arg {a!r} uses $({var}), which the container's env does not define")
    for e in env:
        if e.startswith("PEERCACHE_") and e not in envs:
            bad(f"env {e} is not one peercached reads")
    conf = cm.get("data", {}).get("peercached.conf", "")
    settings = {}
    for line in conf.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if name not in options:
            bad(f"ConfigMap: '{name}' is not an option of peercached")
        settings[name] = value
    if flags.get("config") != "/etc/peercache/peercached.conf":
        bad("--config is not the ConfigMap's file at /etc/peercache/peercached.conf")

    # The pod's command line, variables filled in, as the node checks it.
    with tempfile.TemporaryDirectory() as tmp:
        cfgfile = os.path.join(tmp, "peercached.conf")
        with open(cfgfile, "w") as fh:
            fh.write(conf)
        run = [node]
        for a in args:
            a = a.replace("$(POD_IP)", "127.0.0.1").replace("$(POD_NAME)", "peercache-0")
            a = a.replace("/etc/peercache/peercached.conf", cfgfile)
            run.append(a)
        r = subprocess.run(run + ["--check-config"], capture_output=True, text=True)
        if r.returncode != 0 or "configuration OK" not in r.stdout:
            bad(f"peercached --check-config with the pod's arguments: {r.stderr.strip()}")

    # Ports.
    ports = {p["name"]: p for p in c.get("ports", [])}
    client, http = ports.get("client", {}), ports.get("http", {})
    cport, hport = client.get("containerPort"), http.get("containerPort")
    for flag, want in (("listen", cport), ("http", hport)):
        if not flags.get(flag, "").endswith(f":{want}"):
            bad(f"--{flag}={flags.get(flag)} is not on port {want}")
    if not any(p.get("protocol") == "UDP" and p.get("containerPort") == cport
               for p in ports.values()):
        bad("no UDP port for gossip on the client port")
    probes = {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for probe, path in probes.items():
        g = c.get(probe, {}).get("httpGet", {})
        if g.get("path") != path:
            bad(f"{probe} asks {g.get('path')}, not {path}")
        if g.get("port") not in ("http", hport):
            bad(f"{probe} is not on the http port")
    ann = pod.get("metadata", {}).get("annotations", {})
    if ann.get("prometheus.io/port") != str(hport) or ann.get("prometheus.io/path") != "/metrics":
        bad("the Prometheus annotations do not name the http port and /metrics")
    headless = [s for s in services if s["spec"].get("clusterIP") == "None"]
    if len(headless) != 1:
        bad("expected one headless Service")
    else:
        h = headless[0]
        if sts["spec"].get("serviceName") != h["metadata"]["name"]:
            bad("the StatefulSet's serviceName is not the headless Service")
        if flags.get("join") != f"{h['metadata']['name']}:{cport}":
            bad(f"--join={flags.get('join')} is not the headless Service on the client port")
        if not h["spec"].get("publishNotReadyAddresses"):
            bad("the headless Service must list pods that are not ready (they join through it)")
    for s in services:
        if s["spec"].get("selector") != labels:
            bad(f"Service {s['metadata']['name']} does not select the pods")
        for p in s["spec"].get("ports", []):
            target = p.get("targetPort", p.get("port"))
            if target not in ports and not any(x.get("containerPort") == target for x in ports.values()):
                bad(f"Service {s['metadata']['name']} port {p.get('name')} targets {target}, "
                    "which the container does not open")
    if pdb.get("spec", {}).get("selector", {}).get("matchLabels") != labels:
        bad("the PodDisruptionBudget does not select the pods")
    with open(os.path.join(root, "deploy", "Containerfile")) as fh:
        cf = fh.read()
    for port in (f"{cport}/tcp", f"{cport}/udp", f"{hport}/tcp"):
        if port not in cf:
            bad(f"the Containerfile does not EXPOSE {port}")
    if not re.search(r"^USER\s+(?!0\b|root\b)", cf, re.M):
        bad("the Containerfile does not run as a non-root USER")

    # Names.
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    if vols.get("config", {}).get("configMap", {}).get("name") != cm.get("metadata", {}).get("name"):
        bad("the config volume is not the ConfigMap")
    if vols.get("secrets-in", {}).get("secret", {}).get("secretName") != secret.get("metadata", {}).get("name"):
        bad("the secrets-in volume is not the Secret of secret.example.yaml")
    for key in ("cluster.key", "client.token"):
        if key not in secret.get("stringData", {}):
            bad(f"secret.example.yaml has no {key}")
    for flag in ("cluster-key", "token-file"):
        if not flags.get(flag, "").startswith("/run/peercache/"):
            bad(f"--{flag} is not read from the copied secrets (/run/peercache)")
    listed = set(kust.get("resources", []))
    on_disk = {f for f in os.listdir(kdir) if f.endswith(".yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    if listed != on_disk:
        bad(f"kustomization.yaml lists {sorted(listed)}, the directory holds {sorted(on_disk)}")

    # Resources.
    try:
        need = size_bytes(settings.get("memory", "64mb")) + size_bytes(settings.get("max-buffer-memory", "0"))
        req = size_bytes(c.get("resources", {}).get("requests", {}).get("memory", "0"))
        lim = size_bytes(c.get("resources", {}).get("limits", {}).get("memory", "0"))
        if req < need or lim < req:
            bad(f"memory request {req} / limit {lim} do not cover --memory + --max-buffer-memory ({need})")
    except ValueError as e:
        bad(f"a memory size that does not parse: {e}")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if grace < 30:
        bad("terminationGracePeriodSeconds leaves no time for a leave and its hand-off")


main()
for p in problems:
    print("check_k8s:", p)
print(f"check_k8s: {'FAILED' if problems else 'ok'} ({len(problems)} finding(s))")
sys.exit(1 if problems else 0)
