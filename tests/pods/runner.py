"""Run the pods the operator puts on kwok nodes as real containers (podman, runc), for the tests.

kwok only pretends to run pods. ``PodRunner.start(pod)`` runs a pod that the API server holds (its
first container, or the one named) as the kubelet would, in the image the pod names:

- command, args and env come from the pod spec (env values, Secret/ConfigMap keys, spec.nodeName);
- every volume (ConfigMap, Secret, emptyDir, hostPath) is materialised on the host, with its items,
  modes and fsGroup ownership, and bound at its mount path (read-only where the mount says so);
- ``securityContext``: runAsUser/runAsGroup, fsGroup as a supplementary group, a read-only root
  filesystem (without podman's extra tmpfs mounts), dropped and added capabilities, no new privileges;
- the network: a ``hostNetwork`` pod runs in the network namespace that plays its node, any other pod
  in a namespace of its own. In both, a port bridge (pods.portbridge) makes 127.0.0.1:<port> reach the
  servers that play the cloud and the Services, and host names resolve as the tests map them (/etc/hosts);
- images are never pulled (--pull never): they are the ones images/build.sh built locally.

A test tool, not a product feature: no restarts, no probes, one container per start.
"""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

PODMAN = ["podman", "--runtime", "runc"]
RUN_LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
TESTS_DIR = Path(__file__).resolve().parent.parent


class PodError(RuntimeError):
    pass


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    p = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise PodError(f"podman {' '.join(args[:3])}...: rc={p.returncode}: {p.stderr.strip()[-800:]}")
    return p


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise PodError(f"ip {' '.join(args)}: {p.stderr.strip()}")
    return p


@dataclass
class Container:
    name: str
    pod: str
    netns: str
    runner: "PodRunner"

    def state(self) -> dict[str, Any]:
        p = podman("inspect", "--format", "{{json .State}}", self.name, check=False)
        import json
        return json.loads(p.stdout) if p.returncode == 0 else {}

    def running(self) -> bool:
        return bool(self.state().get("Running"))

    def logs(self) -> str:
        p = podman("logs", self.name, check=False)
        return p.stdout + p.stderr

    def wait(self, timeout: float = 300) -> int:
        p = podman("wait", self.name, check=False, timeout=timeout + 10)
        try:
            return int(p.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise PodError(f"podman wait {self.name}: {p.stdout} {p.stderr}") from None

    def exec(self, *argv: str, timeout: float = 60, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
        flags = [x for k, v in (env or {}).items() for x in ("--env", f"{k}={v}")]
        return podman("exec", *flags, self.name, *argv, check=False, timeout=timeout)

    def stop(self) -> None:
        podman("stop", "-t", "10", self.name, check=False, timeout=60)

    def kill(self) -> None:
        """SIGKILL, as when a node dies or the OOM killer strikes: no graceful shutdown."""
        podman("kill", "-s", "KILL", self.name, check=False, timeout=60)


@dataclass
class PodRunner:
    """``api``: a tests.kube Api (admin) to read Secrets and ConfigMaps. ``into``: ports every pod
    namespace forwards to the host, {port inside: "host:port"}. ``hosts``: names every container
    resolves, {name: address}. ``host_paths``: where a hostPath volume's path really lives on the
    host (anything not mapped is refused: the tests never touch the machine's own directories)."""

    api: Any
    workdir: Path
    into: dict[int, str] = field(default_factory=dict)
    hosts: dict[str, str] = field(default_factory=dict)
    host_paths: dict[str, str] = field(default_factory=dict)
    prefix: str = "t"
    _netns: dict[str, subprocess.Popen] = field(default_factory=dict)
    _containers: list[Container] = field(default_factory=list)
    _outs: list[subprocess.Popen] = field(default_factory=list)

    # -------------------------------------------------------------- network namespaces
    def netns(self, name: str) -> str:
        """A network namespace with loopback up and the port bridge into the host; made once."""
        if name in self._netns:
            return name
        if not Path(f"/run/netns/{name}").exists():
            ip("netns", "add", name)
        ip("-n", name, "link", "set", "lo", "up")
        self._netns[name] = self._bridge(name, into=[f"{p}={t}" for p, t in self.into.items()])
        return name

    def node_netns(self, node: str) -> str:
        return self.netns(f"{self.prefix}-node-{node}"[:60])

    def _bridge(self, ns: str, into: list[str] = (), out: list[str] = ()) -> subprocess.Popen:
        argv = [sys.executable, "-m", "pods.portbridge", "--netns", ns]
        for spec in into:
            argv += ["--into", spec]
        for spec in out:
            argv += ["--out", spec]
        env = {**os.environ, "PYTHONPATH": str(TESTS_DIR)}
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            raise PodError(f"port bridge in {ns} did not start: {line} {proc.stderr.read()[-500:]}")
        return proc

    def expose(self, ns: str, host_port: int, port: int) -> None:
        """127.0.0.1:host_port here reaches 127.0.0.1:port inside ``ns`` (a Service, for the test)."""
        self._outs.append(self._bridge(ns, out=[f"{host_port}={port}"]))

    # -------------------------------------------------------------- volumes
    def _object_data(self, kind: str, name: str, namespace: str) -> dict[str, bytes]:
        obj = self.api.get("secrets" if kind == "secret" else "configmaps", name, namespace)
        if obj is None:
            raise PodError(f"{kind} {namespace}/{name} does not exist (the kubelet would not start the pod)")
        if kind == "secret":
            return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data

    def _materialise(self, pod: Mapping[str, Any], root: Path,
                     host_paths: Mapping[str, str] | None = None) -> dict[str, Path]:
        spec = pod["spec"]
        ns = pod["metadata"]["namespace"]
        fs_group = (spec.get("securityContext") or {}).get("fsGroup")
        out: dict[str, Path] = {}
        for vol in spec.get("volumes") or []:
            name = vol["name"]
            path = root / name
            if "configMap" in vol or "secret" in vol:
                kind = "configMap" if "configMap" in vol else "secret"
                src = vol[kind]
                obj_name = src.get("name") or src.get("secretName")
                data = self._object_data("secret" if kind == "secret" else "configmap", obj_name, ns)
                default_mode = src.get("defaultMode", 0o644)
                items = src.get("items") or [{"key": k, "path": k} for k in data]
                path.mkdir(parents=True)
                for item in items:
                    if item["key"] not in data:
                        raise PodError(f"{kind} {obj_name} has no key {item['key']}")
                    f = path / item["path"]
                    f.parent.mkdir(parents=True, exist_ok=True)
                    f.write_bytes(data[item["key"]])
                    mode = item.get("mode", default_mode)
                    if fs_group is not None:      # the kubelet's SetVolumeOwnership (read-only volumes)
                        os.chown(f, 0, fs_group)
                        mode |= 0o440
                    os.chmod(f, mode)
                os.chmod(path, 0o755 if fs_group is None else 0o2755)
                if fs_group is not None:
                    os.chown(path, 0, fs_group)
            elif "emptyDir" in vol:
                # one per pod, shared by its containers (the API and its driver agent share sockets)
                path = self.workdir / f"pod-{pod['metadata']['name']}" / name
                if path.exists():
                    out[name] = path
                    continue
                path.mkdir(parents=True)
                if fs_group is not None:
                    os.chown(path, 0, fs_group)
                    os.chmod(path, 0o2777)
                else:
                    os.chmod(path, 0o777)
            elif "hostPath" in vol:
                hp = vol["hostPath"]
                real = {**self.host_paths, **(host_paths or {})}.get(hp["path"])
                if real is None:
                    raise PodError(f"hostPath {hp['path']} is not mapped for the test (host_paths)")
                real_p = Path(real)
                if hp.get("type") == "FileOrCreate" and not real_p.exists():
                    real_p.parent.mkdir(parents=True, exist_ok=True)
                    real_p.touch()
                elif hp.get("type") in ("DirectoryOrCreate", None, "") and not real_p.exists():
                    real_p.mkdir(parents=True)
                out[name] = real_p
                continue
            else:
                raise PodError(f"volume {name}: kind not supported by the test runner: {sorted(vol)}")
            out[name] = path
        return out

    # -------------------------------------------------------------- env
    def _env(self, pod: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, str]:
        ns = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for e in container.get("env") or []:
            if "value" in e:
                env[e["name"]] = str(e["value"])
                continue
            src = e.get("valueFrom") or {}
            if "fieldRef" in src:
                fp = src["fieldRef"]["fieldPath"]
                values = {"spec.nodeName": pod["spec"].get("nodeName", ""),
                          "metadata.name": pod["metadata"]["name"], "metadata.namespace": ns}
                if fp not in values:
                    raise PodError(f"env {e['name']}: fieldRef {fp} not supported by the test runner")
                env[e["name"]] = values[fp]
            elif "secretKeyRef" in src or "configMapKeyRef" in src:
                kind = "secret" if "secretKeyRef" in src else "configmap"
                ref = src.get("secretKeyRef") or src.get("configMapKeyRef")
                data = self._object_data(kind, ref["name"], ns)
                if ref["key"] in data:
                    env[e["name"]] = data[ref["key"]].decode()
                elif not ref.get("optional"):
                    raise PodError(f"env {e['name']}: {kind} {ref['name']} has no key {ref['key']}")
            else:
                raise PodError(f"env {e['name']}: source not supported: {sorted(src)}")
        return env

    # -------------------------------------------------------------- run
    def start(self, pod: Mapping[str, Any], container: str | None = None, *, netns: str | None = None,
              node: str | None = None, host_paths: Mapping[str, str] | None = None) -> Container:
        """Start one container of ``pod`` (a Pod, or a pod template with metadata namespace/name and
        spec.nodeName). ``node``: the node it runs on (default spec.nodeName). ``host_paths``: this pod's
        hostPath mapping, over the runner's (each node has its own)."""
        spec = pod["spec"]
        # an init container by name (the caller runs them first, in order, as the kubelet does)
        c = next(x for x in [*spec["containers"], *(spec.get("initContainers") or [])]
                 if container in (None, x["name"]))
        pod_name = pod["metadata"]["name"]
        node = node or spec.get("nodeName")
        if netns is None:
            if spec.get("hostNetwork"):
                if not node:
                    raise PodError(f"pod {pod_name} uses the host network but has no node")
                netns = self.node_netns(node)
            else:
                netns = self.netns(f"{self.prefix}-pod-{pod_name}"[:60])
        else:
            self.netns(netns)
        cname = f"{self.prefix}-{pod_name}-{c['name']}"[:120]
        podman("rm", "-f", cname, check=False)
        root = self.workdir / cname
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        volumes = self._materialise(pod, root, host_paths)

        psc = spec.get("securityContext") or {}
        csc = c.get("securityContext") or {}
        argv = [*PODMAN, "run", "-d", "--name", cname, "--pull", "never", *RUN_LIMITS,
                "--network", f"ns:/run/netns/{netns}", "--hostname", (node if spec.get("hostNetwork") else pod_name)[:63],
                "--read-only-tmpfs=false"]
        uid = csc.get("runAsUser", psc.get("runAsUser"))
        gid = csc.get("runAsGroup", psc.get("runAsGroup"))
        if uid is not None:
            argv += ["--user", str(uid) if gid is None else f"{uid}:{gid}"]
        if psc.get("fsGroup") is not None:
            argv += ["--group-add", str(psc["fsGroup"])]
        if csc.get("readOnlyRootFilesystem"):
            argv += ["--read-only"]
        if csc.get("allowPrivilegeEscalation") is False:
            argv += ["--security-opt", "no-new-privileges"]
        caps = csc.get("capabilities") or {}
        for cap in caps.get("drop") or []:
            argv += ["--cap-drop", cap]
        for cap in caps.get("add") or []:
            argv += ["--cap-add", cap]
        for host, addr in self.hosts.items():
            argv += ["--add-host", f"{host}:{addr}"]
        for k, v in self._env(pod, c).items():
            argv += ["--env", f"{k}={v}"]
        for m in c.get("volumeMounts") or []:
            src = volumes[m["name"]]
            if m.get("subPath"):
                src = src / m["subPath"]
            argv += ["--volume", f"{src}:{m['mountPath']}:{'ro' if m.get('readOnly') else 'rw'}"]
        command = list(c.get("command") or [])
        args = list(c.get("args") or [])
        if command:
            argv += ["--entrypoint", command[0], c["image"], *command[1:], *args]
        else:
            argv += [c["image"], *args]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise PodError(f"podman run {cname}: {p.stderr.strip()[-800:]}")
        out = Container(name=cname, pod=pod_name, netns=netns, runner=self)
        self._containers.append(out)
        return out

    def cleanup(self) -> None:
        for c in self._containers:
            podman("rm", "-f", "-t", "5", c.name, check=False, timeout=60)
        for proc in [*self._outs, *self._netns.values()]:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for ns in self._netns:
            ip("netns", "del", ns, check=False)
        self._netns.clear()
        self._outs.clear()
        self._containers.clear()


def wait_http(url: str, timeout: float = 120, ok: tuple[int, ...] = (200,), headers: Mapping[str, str] | None = None,
              container: Container | None = None) -> tuple[int, bytes]:
    """GET ``url`` until it answers one of ``ok`` (container: fail early, with its logs, if it exits)."""
    import urllib.error
    import urllib.request
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url, headers=dict(headers or {}))
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=10) as r:
                body = r.read()
                if r.status in ok:
                    return r.status, body
                last = (r.status, body[:300])
        except urllib.error.HTTPError as e:
            last = (e.code, e.read()[:300])
            if e.code in ok:
                return e.code, b""
        except OSError as e:
            last = e
        if container is not None and not container.running():
            raise PodError(f"{container.name} exited: {container.state().get('ExitCode')}\n{container.logs()[-3000:]}")
        time.sleep(1)
    raise PodError(f"{url} did not answer {ok} in {timeout:.0f}s (last: {last})"
                   + (f"\n{container.logs()[-3000:]}" if container else ""))
