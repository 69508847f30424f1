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


def cmd_run(args: argparse.Namespace, rest: list[str]) -> int:
    from kopf.cli import main as kopf_main

    argv = ["run", "-m", "octavia_operator.handlers", *rest]
    try:
        kopf_main(args=argv, prog_name="octavia-operator", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
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
                               "--standalone, --liveness URL, --peering NAME, --verbose, --debug)",
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
