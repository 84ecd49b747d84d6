# syntax=docker/dockerfile:1
# ccpulse image: `ccpulse worker`, `ccpulse wallboard`, `ccpulse simulate`, … (the entrypoint
# is the ccpulse CLI; the command picks the subcommand).

# --- build: install the package and its dependencies into a virtualenv -------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# A compiler only for dependencies that ship no wheel for this platform; it stays in this
# stage and never reaches the runtime image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# What `pip install .` needs: the project metadata and the package (with its static files).
COPY pyproject.toml README.md ./
COPY stream ./stream
RUN pip install .
# The per-event modules compiled with Cython into the installed package (a tenth more
# events/s; scripts/build_compiled.py). Cython stays in this stage.
COPY scripts/build_compiled.py ./scripts/
RUN pip install "cython>=3.0" "setuptools>=68" \
 && python scripts/build_compiled.py --target \
        "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/stream" \
 && pip uninstall -y cython

# --- runtime -------------------------------------------------------------------------
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# An unprivileged user with a fixed uid/gid (the k8s manifests run as 10001) and the
# state directory it owns.
RUN groupadd --system --gid 10001 ccpulse \
 && useradd --system --uid 10001 --gid ccpulse --home-dir /var/lib/ccpulse --no-create-home \
        --shell /usr/sbin/nologin ccpulse \
 && mkdir -p /var/lib/ccpulse /etc/ccpulse \
 && chown ccpulse:ccpulse /var/lib/ccpulse

COPY --from=build /opt/venv /opt/venv

USER 10001:10001
WORKDIR /var/lib/ccpulse
ENV CCPULSE_DATA_DIR=/var/lib/ccpulse

# 6066: worker /metrics, /healthz, /readyz and the JSON API; 8080: wallboard.
EXPOSE 6066 8080
VOLUME ["/var/lib/ccpulse"]

ENTRYPOINT ["ccpulse"]
CMD ["--help"]
