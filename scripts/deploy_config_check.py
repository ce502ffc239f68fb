#!/usr/bin/env python3
"""Helper of scripts/validate-deploy.sh: runs `transcoder config check` on the
configuration deploy/ gives each transcoder process.

For the image alone (the Dockerfile's ENTRYPOINT and CMD), for every compose
service and every container of a rendered overlay (`kubectl kustomize`) that
runs the image `transcoder`, it rebuilds what the process gets:

- its arguments: compose `entrypoint`/`command` or Kubernetes `command`/`args`
  over the image's ENTRYPOINT and CMD;
- its environment: the image's ENV, then the container's. A value from a
  Secret or ConfigMap of the overlay is read from it; one from an object the
  overlay does not define (a Secret created by hand) gets a placeholder shaped
  like that setting's default; an absent `optional` one is left out, as the
  kubelet does;
- its files: ConfigMap and Secret volumes (a Secret created by hand gives an
  empty TOML document) and compose bind mounts, written under a scratch
  folder, to which `--config` and TRANSCODER_CONFIG are pointed.

Then, with `env -i`, that environment and PATH alone, it runs

    transcoder ARGS --help                   (the subcommand and options parse)
    transcoder [--config FILE]... config check

and fails, naming the place and the container, on any non-zero exit. The
settings `config check` prints go to OUT.json, for check_deploy_consistency.py.

    deploy_config_check.py --bin BIN --dockerfile FILE --out OUT.json NAME=FILE...

Each NAME=FILE is a compose file (it has `services`) or a rendered overlay.
"""

import argparse
import base64
import itertools
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

PLACEHOLDER_FILE = "# placeholder: this Secret is not part of the overlay\n"


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def load_compose(path):
    """A compose file, with ${VAR:-default} interpolated as if no variable were set (`$$` is `$`)."""
    text = Path(path).read_text(encoding="utf-8")
    text = re.sub(r"\$\$|\$\{\w+(?::?[-?]([^}]*))?\}", lambda m: "$" if m.group(0) == "$$" else m.group(1) or "", text)
    return yaml.safe_load(text)


def ours(image):
    """Does this image reference name the transcoder image (any registry, tag)?"""
    return isinstance(image, str) and re.split(r"[:@]", image.rsplit("/", 1)[-1])[0] == "transcoder"


def pod_spec(obj):
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Pod":
        return spec
    if obj.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    template = spec.get("template")
    return (template.get("spec") or {}) if isinstance(template, dict) else None


def quantity(text):
    """A Kubernetes quantity (500m, 2, 512Mi, 1G) as a number."""
    number, suffix = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text).strip()).groups()
    return float(number) * {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
                            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}[suffix]


def object_data(objects):
    """(kind, name) -> {key: text} of the ConfigMaps and Secrets."""
    data = {}
    for o in objects:
        if o["kind"] in ("ConfigMap", "Secret"):
            raw = o.get("data") or {}
            if o["kind"] == "Secret":
                raw = {k: base64.b64decode(v).decode() for k, v in raw.items()}
            data[(o["kind"], o["metadata"]["name"])] = {**raw, **(o.get("stringData") or {})}
    return data


def sources_of(volume):
    """(kind, name, source) of the ConfigMaps and Secrets a volume shows."""
    if "configMap" in volume:
        yield "ConfigMap", volume["configMap"]["name"], volume["configMap"]
    if "secret" in volume:
        yield "Secret", volume["secret"]["secretName"], volume["secret"]
    for source in (volume.get("projected") or {}).get("sources") or []:
        for kind in ("configMap", "secret"):
            if kind in source:
                yield kind[0].upper() + kind[1:], source[kind]["name"], source[kind]


def parse_settings(text):
    """section -> key -> value of the scalars `config check` prints."""
    settings, section = {}, None
    for line in text.splitlines():
        if m := re.fullmatch(r"    (\w+): \w+ \{", line):
            section = settings.setdefault(m.group(1), {})
        elif section is not None and (m := re.fullmatch(r"        (\w+): (.+),", line)):
            try:
                section[m.group(1)] = json.loads(m.group(2))
            except ValueError:
                section[m.group(1)] = m.group(2)
    return settings


def image(dockerfile):
    """ENV, ENTRYPOINT, CMD and WORKDIR of the Dockerfile's last stage."""
    text = Path(dockerfile).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    img = {}
    for line in "\n".join(lines).replace("\\\n", " ").splitlines():
        word, _, rest = line.strip().partition(" ")
        expand = lambda s: re.sub(r"\$\{?(\w+)\}?", lambda m: {**img["arg"], **img["env"]}.get(m.group(1), ""), s)
        if word.upper() == "FROM":
            img = {"arg": {}, "env": {}, "entrypoint": [], "cmd": [], "workdir": "/"}
        elif word.upper() == "ARG":
            name, _, default = rest.partition("=")
            img["arg"][name.strip()] = default.strip()
        elif word.upper() == "ENV":
            tokens = shlex.split(rest)
            pairs = [t.split("=", 1) for t in tokens] if "=" in tokens[0] else [(tokens[0], " ".join(tokens[1:]))]
            img["env"].update((k, expand(v)) for k, v in pairs)
        elif word.upper() in ("ENTRYPOINT", "CMD"):
            img[word.lower()] = json.loads(rest)
        elif word.upper() == "WORKDIR":
            img["workdir"] = os.path.join(img["workdir"], expand(rest))
    return img


def config_paths(argv, env):
    """The files of `--config F`/`--config=F`, else of TRANSCODER_CONFIG (`:`-separated lists)."""
    values = []
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif arg.startswith("--config="):
            values.append(arg.split("=", 1)[1])
    return [f for v in values or [env.get("TRANSCODER_CONFIG", "")] for f in v.split(":") if f]


def process(where, command, args, img, env, workdir):
    """A process of the image: `command`/`args` replace ENTRYPOINT/CMD as Kubernetes and compose do."""
    full = list(command or img["entrypoint"]) + list(args if args is not None else ([] if command else img["cmd"]))
    return {"where": where, "argv": full[1:], "program": full[0] if full else "", "env": {**img["env"], **env},
            "files": {}, "workdir": workdir or img["workdir"], "secret_keys": [], "placeholders": [], "problems": []}


def expand(text, env):
    """Kubernetes' $(VAR) references in `args` and `env` values."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), str(text))


def k8s_env(p, c, containers, data, placeholder):
    """The container's envFrom and env, over the image's ENV, as the kubelet sets them."""
    env = p["env"]
    for src in c.get("envFrom") or []:
        kind, ref = ("ConfigMap", src["configMapRef"]) if "configMapRef" in src else ("Secret", src["secretRef"])
        if (kind, ref["name"]) not in data and not ref.get("optional"):
            p["problems"].append(f"envFrom {kind} {ref['name']}: not in the overlay, so its variables are unknown")
        env.update({src.get("prefix", "") + k: v for k, v in data.get((kind, ref["name"]), {}).items()})
    for e in c.get("env") or []:
        value, source = e.get("value", ""), e.get("valueFrom") or {}
        ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
        if ref:
            kind = "Secret" if "secretKeyRef" in source else "ConfigMap"
            p["secret_keys"] += [[ref["name"], ref["key"]]] if kind == "Secret" else []
            obj = data.get((kind, ref["name"]))
            if obj is None and ref.get("optional"):
                continue
            if obj is None:
                value = placeholder(e["name"])
                p["placeholders"].append(f"{kind} {ref['name']} key {ref['key']}")
            elif ref["key"] in obj:
                value = obj[ref["key"]]
            else:  # no such key: the kubelet refuses the pod unless optional (the lint reports Secret keys)
                if kind == "ConfigMap" and not ref.get("optional"):
                    p["problems"].append(f"ConfigMap {ref['name']} has no key {ref['key']}")
                continue
        elif "resourceFieldRef" in source:  # e.g. limits.cpu, rounded up (node capacity when unset: 1 here)
            ref = source["resourceFieldRef"]
            owner = next((x for x in containers if x["name"] == ref.get("containerName")), c)
            group, _, name = ref["resource"].partition(".")
            limit = ((owner.get("resources") or {}).get(group) or {}).get(name)
            value = str(math.ceil(quantity(limit) / quantity(ref.get("divisor", "1")))) if limit else "1"
        elif source:
            value = "placeholder"  # fieldRef: the pod's name, namespace, ...
        env[e["name"]] = expand(value, env)


def k8s_files(p, c, volumes, data):
    """The files the container sees in its ConfigMap and Secret volumes; for an object the
    overlay does not define, a placeholder for each file `--config` names."""
    configs = [os.path.normpath(os.path.join(p["workdir"], f)) for f in config_paths(p["argv"], p["env"])]
    for mount in c.get("volumeMounts") or []:
        base, sub = mount["mountPath"].rstrip("/"), mount.get("subPath", "").strip("/")
        wanted = [sub if f == base else "/".join(filter(None, [sub, f[len(base) + 1:]]))
                  for f in configs if (f == base and sub) or f.startswith(base + "/")]  # paths in the volume
        for kind, name, src in sources_of(volumes.get(mount["name"], {})):
            items, obj = {i["key"]: i["path"] for i in src.get("items") or []}, data.get((kind, name))
            if obj is not None:
                files = {items.get(k, k): v for k, v in obj.items() if not items or k in items}
            else:
                files = {} if src.get("optional") else {f: PLACEHOLDER_FILE for f in items.values() or wanted}
            keys = {path: key for key, path in items.items()}
            used = [f"{kind} {name} key {keys.get(f, f)}" for f in wanted if f in files]
            p["secret_keys"] += [[name, keys.get(f, f)] for f in wanted if f in files and kind == "Secret"]
            p["placeholders"] += used if obj is None else []
            for f, text in files.items():
                if not sub or f == sub or f.startswith(sub + "/"):
                    p["files"][base + f[len(sub):] if sub else f"{base}/{f}"] = text


def k8s_processes(objects, img, placeholder):
    data = object_data(objects)
    for o in objects:
        pod = pod_spec(o)
        containers = (pod.get("initContainers") or []) + (pod.get("containers") or []) if pod else []
        for c in (c for c in containers if ours(c.get("image"))):
            p = process(f"{o['kind']}/{o['metadata']['name']} container {c['name']}", c.get("command"),
                        c.get("args"), img, {}, c.get("workingDir"))
            p.update(object=[o["kind"], o["metadata"]["name"]], container=c["name"])
            k8s_env(p, c, containers, data, placeholder)
            p["argv"] = [expand(a, p["env"]) for a in p["argv"]]
            k8s_files(p, c, {v["name"]: v for v in pod.get("volumes") or []}, data)
            yield p


def compose_processes(path, img, dockerfile):
    for name, svc in (load_compose(path).get("services") or {}).items():
        build = svc.get("build") if isinstance(svc.get("build"), dict) else {}
        context = Path(path).parent / build.get("context", ".")
        if not ours(svc.get("image")) and (context / build.get("dockerfile", "Dockerfile")).resolve() != dockerfile:
            continue
        split = lambda v: shlex.split(v) if isinstance(v, str) else v
        environment = svc.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(e.split("=", 1) if "=" in e else (e, None) for e in environment)
        env = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in environment.items() if v is not None}
        p = process(f"service {name}", split(svc.get("entrypoint")), split(svc.get("command")), img, env,
                    svc.get("working_dir"))
        p.update(object=["service", name], container=name)
        if "env_file" in svc:
            p["problems"].append("env_file: not read by this check; list the variables under `environment`")
        for volume in svc.get("volumes") or []:
            source, _, target = (f"{volume.get('source')}:{volume.get('target')}" if isinstance(volume, dict)
                                 else volume).partition(":")
            if source.startswith((".", "/")) and (Path(path).parent / source).is_file():
                target = target.split(":")[0]
                p["files"][target] = (Path(path).parent / source).read_text(encoding="utf-8")
        yield p


def run(binary, p, scratch):
    """Problems of one process: its arguments, then its configuration."""
    if Path(p["program"]).name != "transcoder":
        return [f"runs {p['program'] or 'nothing'}, not transcoder"], None, None
    root = Path(tempfile.mkdtemp(dir=scratch))
    cwd = Path(scratch) / "cwd"
    cwd.mkdir(exist_ok=True)
    for path, text in p["files"].items():
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_text(text, encoding="utf-8")
    inside = lambda f: str(root / os.path.normpath(os.path.join(p["workdir"], f)).lstrip("/"))
    env_i = lambda env: ["env", "-i", f"PATH={os.environ['PATH']}"] + [f"{k}={v}" for k, v in env.items()]
    out = subprocess.run(env_i(p["env"]) + [binary, *p["argv"], "--help"], capture_output=True, text=True, cwd=cwd)
    usage = (re.search(r"^Usage: transcoder (.*)$", out.stdout, re.M) or [None, "<COMMAND>"])[1].split()
    role = " ".join(itertools.takewhile(lambda w: w[0] not in "[<", usage))
    if out.returncode != 0 or "<COMMAND>" in usage:
        reason = (out.stderr.strip().splitlines() or ["a subcommand is missing"])[0]
        return [f"`transcoder {shlex.join(p['argv'])}` is refused by the binary: {reason}"], None, None
    env = dict(p["env"])
    if env.get("TRANSCODER_CONFIG"):
        env["TRANSCODER_CONFIG"] = ":".join(inside(f) for f in env["TRANSCODER_CONFIG"].split(":"))
    configs = [arg for f in config_paths(p["argv"], {}) for arg in ("--config", inside(f))]
    out = subprocess.run(env_i(env) + [binary, *configs, "config", "check"], capture_output=True, text=True, cwd=cwd)
    if out.returncode != 0:
        detail = " ".join(out.stderr.replace(str(root), "").replace(os.path.relpath(root, cwd), "").split())
        return [f"`transcoder config check` exits {out.returncode} on its configuration: {detail}"], role, None
    return [], role, parse_settings(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--dockerfile", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("places", nargs="+", metavar="NAME=FILE")
    args = ap.parse_args()
    args.bin = str(Path(args.bin).resolve())
    img = image(args.dockerfile)
    defaults = parse_settings(subprocess.run(["env", "-i", args.bin, "config", "check"], capture_output=True,
                                             text=True, check=True).stdout)

    def placeholder(name):
        """A value shaped like the setting's default (strings: non-empty)."""
        section, _, key = name.removeprefix("TRANSCODER__").lower().partition("__")
        value = defaults.get(section, {}).get(key)
        value = "placeholder" if value is None or value == "" else value
        return str(value).lower() if isinstance(value, bool) else str(value)

    places = {"image": {"kind": "image", "file": args.dockerfile}}
    found = [("image", process("Dockerfile ENTRYPOINT + CMD", None, None, img, {}, None))]
    found[0][1].update(object=["image", "Dockerfile"], container="image")
    for spec in args.places:
        name, _, path = spec.partition("=")
        docs = load_yaml(path)
        kind = "compose" if len(docs) == 1 and "services" in docs[0] else "k8s"
        places[name] = {"kind": kind, "file": path}
        if kind == "compose":
            procs = compose_processes(path, img, Path(args.dockerfile).resolve())
        else:
            procs = k8s_processes(docs, img, placeholder)
        found += [(name, p) for p in procs]
    report, failures = {"places": places, "processes": []}, 0
    with tempfile.TemporaryDirectory() as scratch:
        for place, p in found:
            problems, role, settings = run(args.bin, p, scratch)
            problems = p["problems"] + problems
            for problem in problems:
                print(f"FAIL {place}: {p['where']}: {problem}")
            failures += bool(problems)
            if not problems:
                note = f" (placeholders: {', '.join(p['placeholders'])})" if p["placeholders"] else ""
                print(f"ok   {place}: {p['where']}: transcoder {shlex.join(p['argv'])}: config check OK{note}")
            report["processes"].append({k: p[k] for k in ("where", "object", "container", "secret_keys")}
                                       | {"place": place, "role": role, "settings": None if problems else settings})
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    print(f"config check: {len(found) - failures} of {len(found)} transcoder processes pass")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
