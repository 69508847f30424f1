"""Release-matched defaults: container images and the octavia.conf dialect per OpenStack release.

Images default to the project's own Octavia image (images/octavia/Dockerfile), one per release, tagged
``<release>-<operator version>``: it installs images/octavia/requirements.txt with that release's pinned
constraints, the same files the tests install, and CI runs the operator's pod specs in it. Its venv sits at
Kolla's path (/var/lib/kolla/venv), so Kolla's images, brought through spec.images, take the same command
lines; what is known of them from Kolla's sources is in docs/kolla-evidence.md. Every container states its
command explicitly; no image entrypoint machinery (kolla_start, config.json) is used.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import __version__
from .spec import ImagesSpec

IMAGE_REGISTRY = "ghcr.io/octavia-operator"
OCTAVIA_IMAGE = f"{IMAGE_REGISTRY}/octavia"
OPERATOR_IMAGE = f"ghcr.io/octavia-operator/octavia-operator:{__version__}"
MARIADB_IMAGE = "docker.io/library/mariadb:11.4"
RABBITMQ_IMAGE = "docker.io/library/rabbitmq:4.1-management"
VALKEY_IMAGE = "docker.io/valkey/valkey:8.1"


@dataclass(frozen=True)
class Release:
    name: str
    octavia_version: str  # the Octavia series images/octavia/constraints-<release>.txt pins
    # the WSGI entry point of the API: a module (2025.2 and later) or the pbr script (before)
    api_wsgi_module: str | None = "octavia.wsgi.api:application"
    # where the Octavia console scripts live: the project's image and Kolla's images alike
    bin_dir: str = "/var/lib/kolla/venv/bin"
    # [neutron] takes keystoneauth adapter options (valid_interfaces, cafile) since 2023.2
    neutron_ksa_options: bool = True


RELEASES: dict[str, Release] = {
    "2025.1": Release("2025.1", "16", api_wsgi_module=None),
    "2025.2": Release("2025.2", "17"),
    "2026.1": Release("2026.1", "18"),
}


@dataclass(frozen=True)
class Images:
    api: str
    worker: str
    health_manager: str
    housekeeping: str
    db_sync: str
    host_agent: str
    mariadb: str
    rabbitmq: str
    valkey: str
    pull_policy: str


def octavia_image(release: str) -> str:
    """The project's Octavia image for ``release`` (built by images/build.sh)."""
    return f"{OCTAVIA_IMAGE}:{RELEASES[release].name}-{__version__}"


def images(release: str, overrides: ImagesSpec) -> Images:
    octavia = octavia_image(release)
    api = overrides.api or octavia
    return Images(
        api=api,
        worker=overrides.worker or octavia,
        health_manager=overrides.healthManager or octavia,
        housekeeping=overrides.housekeeping or octavia,
        db_sync=overrides.dbSync or api,
        host_agent=overrides.hostAgent or OPERATOR_IMAGE,
        mariadb=overrides.mariadb or MARIADB_IMAGE,
        rabbitmq=overrides.rabbitmq or RABBITMQ_IMAGE,
        valkey=overrides.valkey or VALKEY_IMAGE,
        pull_policy=overrides.pullPolicy,
    )
