"""spec.api.expose: the Ingress, HTTPRoute or LoadBalancer Service in front of the API, and the URL clients
outside the cluster use (the public catalog endpoint follows it, step "identity")."""
from __future__ import annotations

from kubernetes.client.exceptions import ApiException

from ..backends.kube import NotFound
from ..builders import kube as kb
from ..errors import StepError
from .runner import Context, Result

KINDS = {"Ingress": ("networking.k8s.io/v1", "Ingress"), "HTTPRoute": ("gateway.networking.k8s.io/v1", "HTTPRoute"),
         "LoadBalancer": ("v1", "Service")}


def step_expose(ctx: Context) -> Result:
    spec = ctx.spec
    assert spec is not None
    inp = kb.Inputs(ctx.name, ctx.namespace, ctx.uid, spec)
    _remove_other_exposures(ctx, spec.api.expose.type if spec.api.expose else None)
    ex = spec.api.expose
    if ex is None:
        return Result.ok("NotExposed", "the API is reachable inside the cluster only (spec.api.expose)")
    objs = kb.expose_objects(inp)
    try:
        for obj in objs:
            action, _ = ctx.kube.apply(obj)
            if action == "created":
                ctx.event("Normal", "Exposed", f"created {obj['kind']} {obj['metadata']['name']}")
    except (ApiException, NotFound) as exc:
        if ex.type == "HTTPRoute" and (isinstance(exc, NotFound) or exc.status == 404):
            raise StepError("GatewayAPIMissing", "the Gateway API (gateway.networking.k8s.io/v1 HTTPRoute) is not "
                            "installed in this cluster: install its CRDs and a Gateway, or use type Ingress or "
                            "LoadBalancer", retry=True) from None
        raise
    address = None
    if ex.type == "LoadBalancer":
        live = ctx.kube.get("v1", "Service", objs[0]["metadata"]["name"], ctx.namespace) or {}
        ingress = ((live.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        address = next((i.get("hostname") or i.get("ip") for i in ingress if i.get("hostname") or i.get("ip")), None)
    url = kb.expose_url(inp, address)
    ctx.out.public_url = url
    if url is None:
        raise StepError("WaitingForAddress", f"Service {objs[0]['metadata']['name']} has no load-balancer address "
                        "yet (no public catalog endpoint until it has)", retry=True)
    ctx.status_updates["publicEndpoint"] = url
    public = spec.identity.endpoints.public
    note = f" (the catalog's public endpoint is identity.endpoints.public, {public})" if public and public != url else ""
    return Result.ok("Exposed", f"clients outside the cluster use {url} ({ex.type}){note}")


def _remove_other_exposures(ctx: Context, keep: str | None) -> None:
    """A changed or removed spec.api.expose: the object of the previous type goes (only ours). Looked
    for only when status.exposedAs says there was another one, so a converged deployment reads nothing."""
    previous = ctx.status.get("exposedAs")
    if previous != keep:
        ctx.status_updates["exposedAs"] = keep
    if keep is None:
        ctx.status_updates["publicEndpoint"] = None
    if not previous or previous == keep or previous not in KINDS:
        return
    api_version, kind = KINDS[previous]
    name = kb.n.Names(ctx.name).api_service + ("-external" if previous == "LoadBalancer" else "")
    try:
        live = ctx.kube.get(api_version, kind, name, ctx.namespace)
    except NotFound:
        return
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    if live is not None and any(r.get("uid") == ctx.uid for r in live["metadata"].get("ownerReferences") or []):
        ctx.kube.delete(api_version, kind, name, ctx.namespace)
        ctx.event("Normal", "Exposed", f"removed {kind} {name} (spec.api.expose changed)")
