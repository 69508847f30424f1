"""octavia-operator command line: ``run`` (the operator), ``render`` (offline preview), ``crd``."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Iterable

import yaml

from .spec import GROUP, KIND


def _load_resources(path: str) -> list[dict[str, Any]]:
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
    with stream:
        docs = [d for d in yaml.safe_load_all(stream) if d]
    return [d for d in docs if isinstance(d, dict) and d.get("kind") == KIND and str(d.get("apiVersion", "")).startswith(GROUP + "/")]


def render_resource(resource: dict[str, Any], namespace: str | None = None) -> list[dict[str, Any]]:
    """Every Kubernetes object the operator would create for ``resource``, with placeholders
    where values come from the cloud or are generated (secrets)."""
    from .builders import kube
    from .spec import parse_spec

    md = resource.get("metadata") or {}
    ns = md.get("namespace") or namespace or "default"
    spec = parse_spec(resource.get("spec") or {})
    inp = kube.Inputs(name=md.get("name") or "octavia", namespace=ns, uid=md.get("uid") or "<uid>", spec=spec)
    return kube.generated_secret_placeholders(inp) + kube.build(inp)


def dump_all(objs: Iterable[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(list(objs), sort_keys=False, width=120, explicit_start=True)


def cmd_render(args: argparse.Namespace) -> int:
    import pydantic

    try:
        resources = _load_resources(args.filename)
    except OSError as exc:
        print(f"error: cannot read {args.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except yaml.YAMLError as exc:
        print(f"error: {args.filename} is not valid YAML: {exc}", file=sys.stderr)
        return 2
    if not resources:
        print(f"error: {args.filename} contains no {KIND} ({GROUP}/...)", file=sys.stderr)
        return 2
    out = []
    for res in resources:
        try:
            out += render_resource(res, args.namespace)
        except pydantic.ValidationError as exc:
            name = (res.get("metadata") or {}).get("name", "?")
            print(f"error: {KIND} {name} is invalid:", file=sys.stderr)
            for e in exc.errors():
                loc = ".".join(str(p) for p in e["loc"]) or "spec"
                print(f"  spec.{loc}: {e['msg'].removeprefix('Value error, ')}", file=sys.stderr)
            return 2
    sys.stdout.write(dump_all(out))
    return 0


def cmd_crd(args: argparse.Namespace) -> int:
    from .crd import dump_crd
    sys.stdout.write(dump_crd())
    return 0


OWN_FLAGS = {"--metrics-port": "metrics_port", "--lease": "lease", "--lease-namespace": "lease_namespace",
             "--lease-duration": "lease_duration", "--renew-deadline": "renew_deadline",
             "--retry-period": "retry_period"}


def _split_run_args(rest: list[str]) -> tuple[dict[str, str], list[str]]:
    """This command's own flags (metrics, leader election) apart from kopf's."""
    own: dict[str, str] = {}
    kopf_args: list[str] = []
    it = iter(rest)
    for a in it:
        flag, eq, value = a.partition("=")
        if flag in OWN_FLAGS:
            if not eq:
                value = next(it, "")
            if not value:
                raise SystemExit(f"octavia-operator run: {flag} needs a value")
            own[OWN_FLAGS[flag]] = value
        else:
            kopf_args.append(a)
    return own, kopf_args


def _standby_liveness(kopf_args: list[str]) -> Any:
    """While waiting for the Lease, answer 200 on kopf's --liveness URL (kopf serves it once it runs)."""
    import contextlib
    import http.server
    import threading
    from urllib.parse import urlsplit

    url = next((a.partition("=")[2] for a in kopf_args if a.startswith("--liveness=")), None)
    if url is None and "--liveness" in kopf_args:
        i = kopf_args.index("--liveness")
        url = kopf_args[i + 1] if i + 1 < len(kopf_args) else None
    if not url:
        return contextlib.nullcontext()
    parts = urlsplit(url)

    class Alive(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(200 if self.path.split("?")[0] == (parts.path or "/") else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"standby": true}')

        def log_message(self, *a: Any) -> None:
            pass

    @contextlib.contextmanager
    def serving() -> Any:
        server = http.server.ThreadingHTTPServer((parts.hostname or "0.0.0.0", parts.port or 80), Alive)
        thread = threading.Thread(target=server.serve_forever, name="standby-liveness", daemon=True)
        thread.start()
        try:
            yield
        finally:
            server.shutdown()
            server.server_close()
    return serving()


def cmd_run(args: argparse.Namespace, rest: list[str]) -> int:
    import logging
    import os

    from kopf.cli import main as kopf_main

    if "--help" in rest or "-h" in rest:
        print("Leader election between replicas (octavia-operator's own flags; kopf's follow):\n"
              "  --lease NAME            hold the coordination.k8s.io Lease NAME while acting; stand by otherwise\n"
              "  --lease-namespace NS    its namespace (default: $POD_NAMESPACE)\n"
              "  --lease-duration S      15   --renew-deadline S  10   --retry-period S  2\n"
              "Metrics:\n"
              "  --metrics-port PORT     serve Prometheus metrics on PORT/metrics (default 8081; 0: off)\n")
    own, rest = _split_run_args(rest)
    port = int(own.get("metrics_port", os.environ.get("OCTAVIA_OPERATOR_METRICS_PORT", "8081")))
    if port:
        from . import metrics
        metrics.serve(port)   # standbys serve it too: their gauges are empty until they lead
    election = None
    if "lease" in own:
        if any(a.startswith("--peering") for a in rest):
            raise SystemExit("octavia-operator run: --lease replaces kopf's --peering; give one of them")
        from .handlers import kube
        from .leader import LeaderElection, default_identity
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(name)-20s [%(levelname)-8s] %(message)s")
        election = LeaderElection(
            kube(), own.get("lease_namespace") or os.environ.get("POD_NAMESPACE") or "default", own["lease"],
            default_identity(), float(own.get("lease_duration", 15)), float(own.get("renew_deadline", 10)),
            float(own.get("retry_period", 2)))
        with _standby_liveness(rest):   # a standby is alive: its liveness probe must not kill it
            election.acquire()

        def lost(reason: str) -> None:
            logging.getLogger("octavia_operator.leader").error("leader election: lost the lead (%s); exiting "
                                                              "at once so that only one operator acts", reason)
            logging.shutdown()
            os._exit(75)
        election.keep(lost)
        if "--standalone" not in rest:   # the Lease is the only election: kopf must not look for peers
            rest = [*rest, "--standalone"]
    argv = ["run", "-m", "octavia_operator.handlers", *rest]
    try:
        kopf_main(args=argv, prog_name="octavia-operator", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        if election is not None:
            election.release()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="octavia-operator",
        description="Installs and runs OpenStack Octavia on Kubernetes: the operator itself (run), an offline "
                    "preview of what it creates for an OctaviaDeployment (render), and its "
                    "CustomResourceDefinition (crd).")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the operator (kopf's flags: --namespace/-n NS, --all-namespaces/-A, "
                               "--standalone, --liveness URL, --verbose, --debug; leader election between "
                               "replicas: --lease NAME [--lease-namespace NS, default $POD_NAMESPACE] "
                               "[--lease-duration 15] [--renew-deadline 10] [--retry-period 2])",
                   add_help=False)
    p = sub.add_parser("render", help="print, offline, every Kubernetes object the operator would create")
    p.add_argument("-f", "--filename", required=True, help="file with OctaviaDeployment resources ('-' = stdin)")
    p.add_argument("-n", "--namespace", help="namespace for resources that do not name one (default: default)")
    sub.add_parser("crd", help="print the CustomResourceDefinition")
    if argv and argv[0] == "run":
        return cmd_run(argparse.Namespace(), argv[1:])
    args = parser.parse_args(argv)
    if args.command == "render":
        return cmd_render(args)
    return cmd_crd(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
