# toolcatalog operator image:  docker build -t ghcr.io/toolcatalog/toolcatalog:0.1.0 .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /build
COPY pyproject.toml README.md ./
COPY operator/toolcatalog ./operator/toolcatalog
RUN pip install . && rm -rf /build

# A numeric non-root user, so that the pod's runAsNonRoot can be verified.
RUN groupadd --gid 10001 toolcatalog \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin toolcatalog
USER 10001:10001
WORKDIR /

EXPOSE 8080 9090
ENTRYPOINT ["toolcatalog"]
CMD ["run", "--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz", "--metrics-port=9090"]
