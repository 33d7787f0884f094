# toolcatalog operator image.
#
#   make image                  # podman, here: test/image/build.sh (a Debian bookworm base made with
#                               # debootstrap, since no registry can be reached)
#   docker build -t toolcatalog:0.1.0 .           # anywhere else, on python:3.11-slim-bookworm
#
# Two stages on the same base: `build` makes wheels for the dependencies and for the package and
# installs them into a virtual environment at /opt/toolcatalog; the runtime stage gets only that
# venv (without pip; no wheels, compiler, sources, tests or dev/ package) and runs as 10001:10001.
# Works with either base: python3 is /usr/local/bin/python3 in the official image and
# /usr/bin/python3 (with python3-venv) in Debian's, and the venv points at the base's own.
#
# A private CA for the package index (a proxy's, or a mirror's) can be given to the build stage as
# a secret, never stored in a layer:   --secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt
# An index other than the default:     --build-arg PIP_INDEX_URL=...   (build stage only)
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ----------------------------------------------------------------------------------------------- build
FROM ${BASE_IMAGE} AS build

ARG PIP_INDEX_URL=""
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

RUN python3 -m venv /opt/toolcatalog

WORKDIR /src
# 1. The dependencies (and the build backend), from pyproject.toml alone: this layer is rebuilt only
#    when pyproject.toml changes, not when the operator's code does.
COPY pyproject.toml ./
RUN --mount=type=secret,id=pip-ca \
    set -eu; \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    [ -n "$PIP_INDEX_URL" ] || unset PIP_INDEX_URL; \
    [ -n "$PIP_EXTRA_INDEX_URL" ] || unset PIP_EXTRA_INDEX_URL; \
    python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); \
print("\n".join(p["project"]["dependencies"] + p["build-system"]["requires"]))' > requirements.txt; \
    /opt/toolcatalog/bin/pip wheel --quiet --wheel-dir /wheels -r requirements.txt; \
    python3 -c 'import tomllib; \
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > runtime.txt; \
    /opt/toolcatalog/bin/pip install --quiet --no-index --find-links /wheels -r runtime.txt

# 2. The package itself, offline (its build backend comes from /wheels), into the same venv; then the
#    venv loses pip and setuptools, which the operator does not use. Last, the operator's entry point
#    and its handlers (what `toolcatalog run` loads) must import. (The kubectl plugin and its
#    `kubernetes` client are the `kubectl` extra: not in the image.)
COPY README.md ./
COPY operator/toolcatalog ./operator/toolcatalog
RUN set -eu; \
    /opt/toolcatalog/bin/pip wheel --quiet --no-index --find-links /wheels --no-deps --wheel-dir /wheels . ; \
    /opt/toolcatalog/bin/pip install --quiet --no-index --find-links /wheels --no-deps toolcatalog; \
    /opt/toolcatalog/bin/pip check; \
    /opt/toolcatalog/bin/python -m pip uninstall --quiet --yes pip setuptools; \
    /opt/toolcatalog/bin/python -c 'import toolcatalog.cli, toolcatalog.handlers'; \
    /opt/toolcatalog/bin/toolcatalog --help > /dev/null

# --------------------------------------------------------------------------------------------- runtime
FROM ${BASE_IMAGE}

# A numeric non-root user (as deploy/base/deployment.yaml runs it), with a passwd entry for the tools
# that look the user up; no home directory: the root filesystem is read-only, only /tmp is writable.
RUN groupadd --system --gid 10001 toolcatalog \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin toolcatalog

COPY --from=build /opt/toolcatalog /opt/toolcatalog

# Bytecode was compiled at install time (the root filesystem is read-only at run time); HOME and
# TMPDIR point at /tmp, the one writable path, for anything that wants a home or temporary files.
ENV PATH=/opt/toolcatalog/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp

LABEL org.opencontainers.image.title="toolcatalog" \
      org.opencontainers.image.description="Kubernetes operator that keeps an accurate, current catalog of the tools MCP servers expose" \
      org.opencontainers.image.licenses="Apache-2.0"

USER 10001:10001
WORKDIR /
# liveness, readiness, metrics, and the admission webhook when it is on (deploy/overlays/webhook)
EXPOSE 8080 8081 9090 9443
ENTRYPOINT ["toolcatalog"]
# What deploy/base/deployment.yaml passes (the manifests say it again, explicitly).
CMD ["run", "--all-namespaces", "--standalone", "--liveness=http://0.0.0.0:8080/healthz", \
     "--readiness=http://0.0.0.0:8081/readyz", "--metrics-port=9090", "--log-format=json"]
