# Image of the octavia-operator (entrypoint `octavia-operator`); the same image also carries
# `octavia-hostagent`, which the operator's host-agent DaemonSet runs (as root, with NET_ADMIN),
# hence iptables below. CI builds it with images/build.sh and runs the host agent's pod spec in it.
#
#   docker build -t ghcr.io/octavia-operator/octavia-operator:0.1.0 .
#
# Build arguments:
#   BASE      the Debian 12 base image (CI: a debootstrap root filesystem imported into podman)
#   PIP_OPTS  extra pip options (CI: --no-index --find-links /wheels, a wheelhouse bound at build time)
ARG BASE=docker.io/library/debian:bookworm-slim
FROM ${BASE}
ARG PIP_OPTS=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv ca-certificates iptables \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 octavia-operator \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin octavia-operator
COPY pyproject.toml README.md /src/
COPY operator/ /src/operator/
COPY hostagent/ /src/hostagent/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install ${PIP_OPTS} /src \
 && rm -rf /src \
 && /opt/venv/bin/octavia-operator --help >/dev/null \
 && /opt/venv/bin/octavia-hostagent --help >/dev/null
# MALLOC_ARENA_MAX: the reconcile's steps run on threads, and glibc gives each thread an arena of its own that
# keeps what it freed; two arenas keep the operator's memory near what it uses (bench/README.md, scale)
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    MALLOC_ARENA_MAX=2
# Numeric, so that runAsNonRoot can verify it.
USER 10001:10001
ENTRYPOINT ["octavia-operator"]
CMD ["run", "--all-namespaces"]
