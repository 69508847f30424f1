# Image of the octavia-operator (entrypoint `octavia-operator`); the same image also carries
# `octavia-hostagent`, which the operator's host-agent DaemonSet runs (as root, with
# NET_ADMIN), hence iptables below.
#
#   docker build -t ghcr.io/octavia-operator/octavia-operator:0.1.0 .
#
# Build stage: install the project and its dependencies into a virtualenv.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY hostagent/ hostagent/
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install . \
 && /opt/venv/bin/octavia-operator --help >/dev/null \
 && /opt/venv/bin/octavia-hostagent --help >/dev/null

# Runtime stage: the virtualenv, iptables for the host agent, a non-root user.
FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 octavia-operator \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin octavia-operator
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# Numeric, so that runAsNonRoot can verify it.
USER 10001:10001
ENTRYPOINT ["octavia-operator"]
CMD ["run", "--all-namespaces"]
