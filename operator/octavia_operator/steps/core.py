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
    running = ctx.status.get("release")
    problem = release_change_problem(running, ctx.spec.release)
    if problem:
        ctx.spec = None   # nothing of the new release is rendered or applied
        return Result(c.FALSE, problem[0], problem[1])
    return Result.ok("Valid", "the spec is valid")


def release_change_problem(running: str | None, wanted: str) -> tuple[str, str] | None:
    """Octavia upgrades one release at a time and never downgrades: (reason, message) when going from
    ``running`` (what the services run, status.release) to ``wanted`` is not allowed."""
    from ..spec import RELEASES
    if not running or running == wanted or running not in RELEASES:
        return None
    have, want = RELEASES.index(running), RELEASES.index(wanted)
    if want < have:
        return ("DowngradeRefused", f"spec.release {wanted} is older than {running}, which the services run: Octavia "
                "cannot downgrade its database; set spec.release back to {running}".replace("{running}", running))
    if want > have + 1:
        return ("ReleaseSkipped", f"spec.release {wanted} skips {', '.join(RELEASES[have + 1:want])}: Octavia upgrades "
                f"one release at a time; go to {RELEASES[have + 1]} first")
    return None


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
