"""The first steps: validate the spec, connect to the cloud."""
from __future__ import annotations

import pydantic

from .. import conditions as c
from .runner import Context, Result
from ..errors import StepError
from ..spec import parse_spec

def step_spec(ctx: Context) -> Result:
    try:
        ctx.spec = parse_spec(ctx.raw_spec)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors())
        return Result(c.FALSE, "InvalidSpec", problems)
    return Result.ok("Valid", "the spec is valid")


def step_cloud(ctx: Context) -> Result:
    if ctx.cloud_factory is None:
        raise StepError("NoCloudClient", "the operator was started without an OpenStack client factory")
    conn = ctx.cloud_factory(ctx)
    ctx.out.cloud = conn
    from ..backends.openstack import session
    info = session.probe(conn)
    ctx.out.cloud_info = info
    return Result.ok("Connected", f"authenticated to {info['auth_url']} as {info['user']} "
                                  f"(project {info['project']}, region {info['region']})")
