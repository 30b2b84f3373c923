# ScrapeShield container image.
#
#   podman build -t scrapeshield .                     (or docker build)
#   podman run -p 8080:8080 -v ./conf:/etc/scrapeshield:ro -e SCRAPESHIELD_UPSTREAM=http://app:8000 scrapeshield
#
# Configuration is by environment (SCRAPESHIELD_<FLAG>, see `scrapeshield run --help`) or by
# arguments after the image name (`run --upstream ...`). Mount the policy's DIRECTORY at
# /etc/scrapeshield, not the file: editors and ConfigMaps replace a file by renaming, which a
# single-file bind mount never sees. Secrets: SCRAPESHIELD_SECRET_FILE pointing at a mounted
# file, or SCRAPESHIELD_CHALLENGE_KEYS. docs/deploy.md has the whole story.
#
# BASE is any Debian-family image with python3 >= 3.12 and its venv module; the default is the
# official one. The tests build BASE from Debian packages (deploy/container/build-base).
# HEALTHCHECK reads the admin port from SCRAPESHIELD_ADMIN: set the admin address there, not as a flag.
ARG BASE=docker.io/library/python:3.13-slim-trixie

FROM ${BASE} AS build
# Behind a TLS-inspecting egress proxy, point pip at its CA bundle (mounted into the build with
# `-v`, or a secret); unset, pip uses its own. Only the build stage sees it.
ARG PIP_CERT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/scrapeshield
# The compiled core, built below (addons/scrapeshield/accel.py; ~4x the Python code's decisions
# per second) needs mypyc, a C compiler and Python's headers: in this stage only, installed before
# the sources are copied so the layer stays cached. ACCEL=0 ships the Python code.
ARG ACCEL=1
RUN if [ "$ACCEL" != 0 ]; then \
      include=$(python3 -c 'import sysconfig; print(sysconfig.get_path("include"))'); \
      headers=; [ -f "$include/Python.h" ] || headers=python3-dev; \
      apt-get update -q && apt-get install -q -y --no-install-recommends gcc libc6-dev $headers >/dev/null; \
    fi
# Dependencies first, from the lock: this layer is rebuilt only when the lock changes.
COPY requirements.lock /src/requirements.lock
RUN /opt/scrapeshield/bin/pip install -q -r /src/requirements.lock
COPY pyproject.toml README.md LICENSE /src/
COPY policies /src/policies
COPY addons /src/addons
RUN /opt/scrapeshield/bin/pip wheel -q --no-deps -w /src/dist /src \
 && /opt/scrapeshield/bin/pip install -q --no-deps /src/dist/scrapeshield-*.whl \
 && if [ "$ACCEL" != 0 ]; then \
      /opt/scrapeshield/bin/pip freeze > /tmp/runtime.txt \
      && /opt/scrapeshield/bin/pip install -q -c /src/requirements.lock "$(ls /src/dist/scrapeshield-*.whl)[accel]" \
      && /opt/scrapeshield/bin/python -m scrapeshield.accelbuild build \
      && /opt/scrapeshield/bin/pip freeze | grep -vxFf /tmp/runtime.txt | cut -d= -f1 \
         | xargs -r /opt/scrapeshield/bin/pip uninstall -q -y; \
    fi \
 && /opt/scrapeshield/bin/pip check \
 && /opt/scrapeshield/bin/pip uninstall -q -y pip \
 && find /opt/scrapeshield -name __pycache__ -prune -exec rm -rf {} + \
 && /opt/scrapeshield/bin/python -m compileall -q /opt/scrapeshield/lib

FROM ${BASE}
LABEL org.opencontainers.image.title="ScrapeShield" \
      org.opencontainers.image.description="Anti-scraping sidecar reverse proxy" \
      org.opencontainers.image.licenses="MIT"
# A fixed uid/gid, so mounted secrets can be made readable by exactly this user.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/scrapeshield --no-create-home \
        --shell /usr/sbin/nologin shield \
 && mkdir -p /etc/scrapeshield /var/lib/scrapeshield \
 && chown shield:shield /var/lib/scrapeshield
COPY --from=build /opt/scrapeshield /opt/scrapeshield
# A policy that works when none is mounted: the starter, in monitor mode (decides, enforces nothing).
COPY policies/starter.yaml /etc/scrapeshield/policy.yaml
ENV PATH=/opt/scrapeshield/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/scrapeshield \
    SCRAPESHIELD_LISTEN=0.0.0.0:8080 \
    SCRAPESHIELD_ADMIN=0.0.0.0:9090 \
    SCRAPESHIELD_POLICY=/etc/scrapeshield/policy.yaml \
    SCRAPESHIELD_CONFDIR=/var/lib/scrapeshield
USER 10001:10001
WORKDIR /var/lib/scrapeshield
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/opt/scrapeshield/bin/python", "-c", "import os, urllib.request; port = os.environ['SCRAPESHIELD_ADMIN'].rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2)"]
# The shield is PID 1 (the shell execs it): it handles SIGTERM (graceful stop) and SIGHUP (reload)
# itself. Its logs and decision lines share one stream, stdout, for the container runtime.
ENTRYPOINT ["/bin/sh", "-c", "exec scrapeshield \"$@\" 2>&1", "scrapeshield"]
CMD ["run"]
