#!/usr/bin/env python3
"""Checks that the container image and the Kubernetes manifests use pgmorph as it is.

Run by scripts/check-deploy, with the rendered manifests of each overlay:

    check_deploy.py REPO DEPLOY_DIR RENDERED_DIR [PGMORPH_BINARY]

- every key of each overlay's pgmorph.toml is a field of the config structs in host/src/config
  (read from the Rust source), and the file parses as TOML;
- every flag given to `pgmorph` (the Deployment's args, the Dockerfile's CMD) is a flag of that
  subcommand in host/src/main.rs, and of `pgmorph <subcommand> --help` when a binary is given;
- every PGMORPH_ variable set is one host/src reads;
- the paths and ports agree: the config file, plugin_dir, password_file and sslrootcert lie in
  mounted volumes, `[metrics] listen` is the port the probes, the Service and EXPOSE use;
- one replica, strategy Recreate, readiness on /health, liveness not on /health;
- each plugin an overlay copies is one the image ships, and each `[plugins.<file>]` names one;
- with a binary, `pgmorph status` reads each config past its parsing and validation (it stops
  at a password or certificate file, which exists only in the pod, before connecting anywhere).

Prints one line per problem and exits 1 if there is any.
"""

import base64
import os
import re
import shlex
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

problems = []


def problem(where, text):
    problems.append(f"{where}: {text}")


def shown(path, repo):
    """`path` relative to the repository when it lies in it."""
    try:
        return str(path.relative_to(repo))
    except ValueError:
        return str(path)


# ---- what the code accepts ----------------------------------------------------------------

def rust_structs(config_dir):
    """`struct name -> {field: type}` of every struct in host/src/config."""
    structs = {}
    for path in sorted(config_dir.glob("*.rs")):
        text = path.read_text()
        for m in re.finditer(r"pub struct (\w+) \{(.*?)\n\}", text, re.S):
            fields = dict(re.findall(r"^\s*pub (\w+): ([^\n]+),$", m.group(2), re.M))
            structs[m.group(1)] = fields
    return structs


def check_toml_keys(where, table, struct, structs, prefix=""):
    fields = structs[struct]
    for key, value in table.items():
        name = prefix + key
        if key not in fields:
            problem(where, f"config key {name} is not a field of {struct} in host/src/config")
            continue
        kind = fields[key]
        nested = next((s for s in structs if re.search(rf"\b{s}\b", kind)), None)
        if nested is None:
            continue
        if not isinstance(value, dict):
            problem(where, f"config key {name} must be a table ({nested})")
        elif kind.startswith("BTreeMap<"):
            for k, v in value.items():
                if not isinstance(v, dict):
                    problem(where, f"config key {name}.{k} must be a table ({nested})")
                else:
                    check_toml_keys(where, v, nested, structs, f"{name}.{k}.")
        else:
            check_toml_keys(where, value, nested, structs, f"{name}.")


def subcommand_flags(main_rs, subcommand):
    """The long flags of a `Command` variant in main.rs (clap derives `--no-watch` from
    `no_watch`), plus the global ones."""
    text = main_rs.read_text()
    variant = "".join(w.capitalize() for w in subcommand.split("-"))
    m = re.search(rf"^    {variant} \{{(.*?)^    \}},", text, re.S | re.M)
    if not m:
        return None
    flags = {"--" + f.replace("_", "-") for f in re.findall(r"^\s*(\w+): ", m.group(1), re.M)}
    glob = re.search(r"struct Cli \{(.*?)^\}", text, re.S | re.M)
    flags |= {"--" + f.replace("_", "-") for f in re.findall(r"^\s*(\w+): Option", glob.group(1), re.M)}
    return flags | {"--help"}


def check_command(where, argv, repo, binary):
    """argv: the arguments after `pgmorph`."""
    if not argv:
        problem(where, "no pgmorph subcommand given")
        return
    sub = argv[0]
    flags = subcommand_flags(repo / "host/src/main.rs", sub)
    if flags is None:
        problem(where, f"pgmorph has no subcommand {sub!r} in host/src/main.rs")
        return
    used = [a.split("=")[0] for a in argv[1:] if a.startswith("--")]
    for flag in used:
        if flag not in flags:
            problem(where, f"pgmorph {sub} has no flag {flag} in host/src/main.rs")
    if binary:
        out = subprocess.run([binary, sub, "--help"], capture_output=True, text=True)
        for flag in used:
            if not re.search(rf"(^|\s){re.escape(flag)}\b", out.stdout):
                problem(where, f"`pgmorph {sub} --help` does not list {flag}")


def code_reads(repo, variable):
    for path in (repo / "host/src").rglob("*.rs"):
        if f'"{variable}"' in path.read_text():
            return True
    return False


# ---- the image ----------------------------------------------------------------------------

def dockerfile_facts(path):
    text = path.read_text().replace("\\\n", " ")
    final = text[text.rfind("\nFROM ") :]
    facts = {"env": {}, "expose": [], "entrypoint": None, "cmd": None}
    for line in final.splitlines():
        words = line.split(None, 1)
        if len(words) < 2:
            continue
        op, rest = words[0].upper(), words[1]
        if op == "ENV":
            facts["env"].update(dict(kv.split("=", 1) for kv in shlex.split(rest)))
        elif op == "EXPOSE":
            facts["expose"] += [int(p.split("/")[0]) for p in rest.split()]
        elif op in ("ENTRYPOINT", "CMD"):
            facts[op.lower()] = yaml.safe_load(rest)
    facts["plugins"] = set(re.findall(r"-p pgmorph-plugin-([\w-]+)", text))
    facts["shipped"] = set(re.findall(r"\b[\w]+:([\w-]+)\b", " ".join(
        re.findall(r"for p in ([^;]+);", text))))
    return facts


def check_image(repo, dockerfile, binary):
    where = shown(dockerfile, repo)
    facts = dockerfile_facts(dockerfile)
    if facts["entrypoint"] != ["pgmorph"]:
        problem(where, f"ENTRYPOINT is {facts['entrypoint']}, not [\"pgmorph\"]")
    check_command(f"{where} CMD", facts["cmd"] or [], repo, binary)
    for var in facts["env"]:
        if var.startswith("PGMORPH_") and not code_reads(repo, var):
            problem(where, f"ENV {var}: host/src never reads it")
    for name in facts["plugins"]:
        if not (repo / "plugins" / name / "Cargo.toml").exists():
            problem(where, f"builds plugin {name}, which plugins/ does not have")
    if facts["shipped"] != facts["plugins"]:
        problem(where, f"builds {sorted(facts['plugins'])} but installs {sorted(facts['shipped'])}")
    return facts


# ---- the manifests ------------------------------------------------------------------------

def under(path, mounts):
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)


def check_overlay(repo, overlay, rendered, image, binary):
    where = shown(overlay, repo)
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    services = [d for d in docs if d["kind"] == "Service"]
    # The files each ConfigMap or Secret of the overlay holds (a config with a secret plugin
    # setting may live in a Secret).
    held = {}
    for d in docs:
        if d["kind"] == "ConfigMap":
            held[("configMap", d["metadata"]["name"])] = d.get("data", {})
        elif d["kind"] == "Secret":
            files = {k: base64.b64decode(v).decode() for k, v in d.get("data", {}).items()}
            held[("secret", d["metadata"]["name"])] = {**files, **d.get("stringData", {})}
    if len(deployments) != 1:
        problem(where, f"renders {len(deployments)} Deployments; one connector is one Deployment")
        return
    dep = deployments[0]
    spec = dep["spec"]
    if spec.get("replicas", 1) != 1:
        problem(where, f"replicas is {spec.get('replicas')}: a connector runs in one process")
    if spec.get("strategy", {}).get("type") != "Recreate":
        problem(where, "strategy must be Recreate (the old pod stops before the new one starts)")
    pod = spec["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    containers = {c["name"]: c for c in pod["containers"]}
    main = containers.get("pgmorph")
    if main is None:
        problem(where, "no container named pgmorph")
        return
    argv = main.get("args") or image["cmd"] or []
    check_command(f"{where} args", argv, repo, binary)
    mounts = {m["mountPath"]: m for m in main.get("volumeMounts", [])}
    for env in main.get("env", []):
        if env["name"].startswith("PGMORPH_") and not code_reads(repo, env["name"]):
            problem(where, f"env {env['name']}: host/src never reads it")
    env = {**image["env"], **{e["name"]: e.get("value") for e in main.get("env", [])}}
    for var in ("PGMORPH_CACHE_DIR", "PGMORPH_STATE_DIR"):
        path = env.get(var)
        if not path:
            problem(where, f"{var} is not set: pgmorph would write under $HOME")
        elif path not in mounts or mounts[path].get("readOnly"):
            problem(where, f"{var}={path} is not a writable volume")
    if not main.get("securityContext", {}).get("readOnlyRootFilesystem"):
        problem(where, "the pgmorph container should have readOnlyRootFilesystem")

    # The config file and what it names.
    config_path = argv[argv.index("--config") + 1] if "--config" in argv else None
    if not config_path:
        problem(where, "pgmorph is not given --config")
        return
    config_dir, config_file = os.path.split(config_path)
    mount = mounts.get(config_dir)
    if not mount:
        problem(where, f"nothing is mounted at {config_dir}, the folder of --config")
        return
    source = volumes[mount["name"]]
    if "configMap" in source:
        key = ("configMap", source["configMap"].get("name"))
    else:
        key = ("secret", source.get("secret", {}).get("secretName"))
    if key not in held:
        problem(where, f"{config_dir} is not a ConfigMap or Secret of the overlay")
        return
    text = held[key].get(config_file)
    if text is None:
        problem(where, f"{key[0]} {key[1]} has no key {config_file}")
        return
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        problem(where, f"{config_file} is not valid TOML: {e}")
        return
    check_toml_keys(f"{where}/{config_file}", config, "Config", rust_structs(repo / "host/src/config"))

    secret_mounts = [p for p, m in mounts.items() if "secret" in volumes[m["name"]]]
    for side in ("source", "destination"):
        section = config.get(side, {})
        pw = section.get("password_file")
        if pw and not under(pw, secret_mounts):
            problem(where, f"{side}.password_file {pw} is not in a mounted Secret")
        for cert in re.findall(r"sslrootcert=([^&\s]+)", section.get("url", "")):
            if cert != "system" and not under(cert, list(mounts)):
                problem(where, f"{side} sslrootcert {cert} is not in a mounted volume")
        if re.search(r"://[^/@]*:[^/@]*@", section.get("url", "")) or "password=" in section.get("url", ""):
            problem(where, f"{side}.url holds a password: use password_file (a Secret)")

    listen = config.get("metrics", {}).get("listen")
    ports = {p.get("name"): p["containerPort"] for p in main.get("ports", [])}
    if not listen:
        problem(where, "[metrics] listen is not set: the probes and the Service need it")
    else:
        host, _, port = listen.rpartition(":")
        if host not in ("0.0.0.0", "[::]"):
            problem(where, f"metrics.listen {listen}: the probes reach the pod's address, listen on 0.0.0.0")
        if ports.get("metrics") != int(port):
            problem(where, f"metrics.listen port {port} is not the container port 'metrics' {ports.get('metrics')}")
        if int(port) not in image["expose"]:
            problem(where, f"metrics.listen port {port} is not EXPOSEd by the Dockerfile")
    ready = main.get("readinessProbe", {}).get("httpGet", {})
    alive = main.get("livenessProbe", {}).get("httpGet", {})
    if ready.get("path") != "/health" or ready.get("port") not in ("metrics", ports.get("metrics")):
        problem(where, "the readiness probe must be GET /health on the metrics port")
    if not alive or alive.get("path") == "/health":
        problem(where, "the liveness probe must not be /health (503 for the whole snapshot)")
    for svc in services:
        for p in svc["spec"]["ports"]:
            if p.get("targetPort") not in ("metrics", ports.get("metrics")):
                problem(where, f"Service {svc['metadata']['name']} targets port {p.get('targetPort')}")

    # Plugins: copied by the init container, named by the config.
    plugin_dir = config.get("plugin_dir")
    init = {c["name"]: c for c in pod.get("initContainers", [])}.get("plugins")
    files = {}
    if init:
        listed = next((e.get("value", "") for e in init.get("env", []) if e["name"] == "PLUGINS"), "")
        for item in listed.split():
            file, _, plugin = item.partition("=")
            files[file] = plugin or file
            if (plugin or file) not in image["shipped"]:
                problem(where, f"plugin {plugin or file} is not one the image ships")
    if files and plugin_dir is None:
        problem(where, "plugins are copied but the config sets no plugin_dir")
    if plugin_dir is not None and plugin_dir not in mounts:
        problem(where, f"plugin_dir {plugin_dir} is not a mounted volume")
    for name in config.get("plugins", {}):
        if name not in files:
            problem(where, f"[plugins.{name}] configures a plugin the pod does not get")

    # The real parser, when a binary is at hand: status loads and validates the config, then
    # stops at a password or certificate file (absent here) before connecting.
    if binary and "/run/secrets/" not in text:
        print(f"{where}: no file under /run/secrets/ to stop `pgmorph status` before it connects: "
              "not asking the binary")
    elif binary:
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / config_file
            copy.write_text(text.replace("/run/secrets/", f"{tmp}/absent/"))
            out = subprocess.run([binary, "status", "--config", str(copy)], capture_output=True,
                                 text=True, env={**os.environ, "PGMORPH_STATE_DIR": tmp}, timeout=60)
            said = out.stdout + out.stderr
            # Past Config::load, it stops on a file of the pod that is absent here.
            if out.returncode == 78 or "config file" in said or f"{tmp}/absent/" not in said:
                problem(where, f"`pgmorph status` on {config_file}: {said.strip()}")


def main():
    repo, deploy, rendered = (Path(a).resolve() for a in sys.argv[1:4])
    binary = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else None
    image = check_image(repo, deploy / "Dockerfile", binary)
    overlays = sorted(p for p in (deploy / "kubernetes/overlays").iterdir() if p.is_dir())
    if not overlays:
        problem(str(deploy), "no overlay in kubernetes/overlays")
    for overlay in overlays:
        check_overlay(repo, overlay, rendered / f"{overlay.name}.yaml", image, binary)
    for p in problems:
        print(f"error: {p}")
    print(f"{len(overlays)} overlays, the Dockerfile and their pgmorph flags and config keys: "
          f"{len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
