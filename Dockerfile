# syntax=docker/dockerfile:1
# One image for every genqueue process: api, worker, beat, simulator, migrate, keys.
# The compose file picks the process with `command:` (a `genqueue` subcommand) and owns the
# healthchecks, because each process needs a different one.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# The venv lives at the same path in both stages so its shebangs stay valid after the copy.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# 1) Third-party dependencies only, read from pyproject.toml: this (slow) layer is reused
#    until the dependency list changes, not on every source edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
 && pip install -r /tmp/requirements.txt

# 2) The project itself (no dependency resolution: step 1 already did it). The whole context is
#    copied, filtered by .dockerignore, so a package added to pyproject.toml cannot be silently
#    left out of the image; this stage is discarded, only the installed venv moves on.
COPY . .
RUN pip install --no-deps . \
 && genqueue --help > /dev/null

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN groupadd --system --gid 10001 genqueue \
 && useradd --system --uid 10001 --gid genqueue --home-dir /var/lib/genqueue --create-home \
      --shell /usr/sbin/nologin genqueue

COPY --from=build /opt/venv /opt/venv

# Writable working directory for the non-root user (celery beat keeps its schedule file here).
WORKDIR /var/lib/genqueue
USER 10001:10001

EXPOSE 8000 5001

ENTRYPOINT ["genqueue"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
