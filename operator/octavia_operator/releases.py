"""Release-matched defaults: container images and the octavia.conf dialect per OpenStack release.

Images default to the Kolla project's published images (quay.io/openstack.kolla), whose
tags are ``<release>-<distro>-<codename>``. Every container states its command explicitly,
so Kolla's entrypoint machinery (kolla_start, config.json) is not used. See
docs/research-images.md for the sources.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import __version__
from .spec import ImagesSpec

KOLLA_REGISTRY = "quay.io/openstack.kolla"
OPERATOR_IMAGE = f"ghcr.io/octavia-operator/octavia-operator:{__version__}"
MARIADB_IMAGE = "docker.io/library/mariadb:11.4"
RABBITMQ_IMAGE = "docker.io/library/rabbitmq:4.1-management"


@dataclass(frozen=True)
class Release:
    name: str
    kolla_tag: str
    octavia_version: str  # the Octavia series the images carry (pip install "octavia==<this>.*" to test)
    # the WSGI entry point of the API: a module (2025.2 and later) or the pbr script (before)
    api_wsgi_module: str | None = "octavia.wsgi.api:application"
    # where the Octavia console scripts live inside the Kolla images
    bin_dir: str = "/var/lib/kolla/venv/bin"
    # [neutron] takes keystoneauth adapter options (valid_interfaces, cafile) since 2023.2
    neutron_ksa_options: bool = True


RELEASES: dict[str, Release] = {
    "2025.1": Release("2025.1", "2025.1-ubuntu-noble", "16", api_wsgi_module=None),
    "2025.2": Release("2025.2", "2025.2-ubuntu-noble", "17"),
    "2026.1": Release("2026.1", "2026.1-ubuntu-noble", "18"),
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
    pull_policy: str


def images(release: str, overrides: ImagesSpec) -> Images:
    tag = RELEASES[release].kolla_tag

    def kolla(name: str) -> str:
        return f"{KOLLA_REGISTRY}/{name}:{tag}"

    api = overrides.api or kolla("octavia-api")
    return Images(
        api=api,
        worker=overrides.worker or kolla("octavia-worker"),
        health_manager=overrides.healthManager or kolla("octavia-health-manager"),
        housekeeping=overrides.housekeeping or kolla("octavia-housekeeping"),
        db_sync=overrides.dbSync or api,
        host_agent=overrides.hostAgent or OPERATOR_IMAGE,
        mariadb=overrides.mariadb or MARIADB_IMAGE,
        rabbitmq=overrides.rabbitmq or RABBITMQ_IMAGE,
        pull_policy=overrides.pullPolicy,
    )
