# Gradserve: the gradient-computation service in one image.
#
#   docker build -t gradserve .
#   docker run --rm -p 8000:8000 -e GRADSERVE_API_KEYS=change-me gradserve
#
# Two stages: the builder makes a wheel of the project and installs it with its `server` extra into
# /opt/venv; the final image gets only that venv. setuptools, wheel and pip stay in the builder.
# No `# syntax=` line on purpose: it would make BuildKit pull a frontend image from a registry.

FROM python:3.11-slim AS builder
LABEL org.opencontainers.image.title="gradserve-builder"

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Build tools get their own venv; the runtime venv is created without pip and filled from outside.
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --quiet "setuptools>=68" wheel \
 && python -m venv --without-pip /opt/venv
ENV PIP="/opt/build/bin/pip --python /opt/venv/bin/python"

WORKDIR /src

# Dependencies first, as exact pins (deploy/docker/requirements.lock, generated from pyproject.toml
# by deploy/docker/lock.py): every build installs the same versions, and this slow layer is reused
# until the lock itself changes, not on every source edit.
COPY deploy/docker/requirements.lock /tmp/requirements.lock
RUN $PIP install --quiet --no-deps -r /tmp/requirements.lock

# Then the project itself, as a wheel, without resolving anything again: `pip check` fails the
# build if the lock misses or contradicts a requirement of the project or of a locked package.
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY service ./service
COPY client ./client
RUN /opt/build/bin/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir /wheels . \
 && $PIP install --quiet --no-deps "$(ls /wheels/gradserve-*.whl)" \
 && $PIP check


FROM python:3.11-slim

LABEL org.opencontainers.image.title="gradserve" \
      org.opencontainers.image.description="Gradient-computation microservice: torch.autograd.grad over HTTP" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# A fixed numeric uid/gid, so that Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --gid 10001 gradserve \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin gradserve

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
EXPOSE 8000

# slim has no curl: probe with the standard library. urlopen raises on any non-2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4)"]

# Binding 0.0.0.0 is what a container needs. Without GRADSERVE_API_KEYS the server warns about it
# at start-up (and serves unauthenticated): set keys for anything reachable beyond your machine.
CMD ["gradserve", "serve", "--host", "0.0.0.0", "--port", "8000"]
