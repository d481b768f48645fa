# The totpd server image: Python 3.11, hash-pinned dependencies, gRPC stubs generated at
# build time from protos/ (they are never committed), running as an unprivileged user.
#
#   docker build -t totpd .
#   docker compose up --build        (see docker-compose.yml and the README)

# -- stubs: generate clients/python/totpd/v1 from the proto -----------------------------
FROM python:3.11-slim AS stubs
WORKDIR /src
COPY requirements/dev.lock requirements/dev.lock
# Only the code generators and what they import, with the versions and hashes of dev.lock.
RUN awk '/^[a-z0-9]/ { keep = ($1 ~ /^(grpcio|grpcio-tools|protobuf|setuptools|typing-extensions|mypy-protobuf|types-protobuf)==/) } keep && !/^ *#/' \
        requirements/dev.lock > /tmp/codegen.lock \
    && pip install --no-cache-dir --disable-pip-version-check --require-hashes --no-deps \
        -r /tmp/codegen.lock
COPY protos protos
COPY clients/python clients/python
# The same protoc run as `make generate` (the mypy plugins are on PATH here).
RUN python -m grpc_tools.protoc -Iprotos \
        --python_out=clients/python --mypy_out=clients/python \
        --grpc_python_out=clients/python --mypy_grpc_out=clients/python \
        protos/totpd/v1/totp_service.proto protos/buf/validate/validate.proto

# -- runtime -------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
# Dependencies first (their own layer): exactly the pinned, hashed runtime lock.
COPY requirements/runtime.lock requirements/runtime.lock
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements/runtime.lock
# Then the two distributions of the totpd namespace: totpd-client (the stubs) and the
# server. Their dependencies are all in the lock already.
COPY pyproject.toml README.md ./
COPY server server
COPY --from=stubs /src/clients/python clients/python
RUN pip install --no-cache-dir --no-deps --no-build-isolation ./clients/python . \
    && cd / && rm -rf /build

# An unprivileged user; its data dir only matters for the embedded Redis (no
# TOTPD_REDIS_URL), which the Compose file does not use.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/totpd --create-home totpd
USER 10001:10001
WORKDIR /var/lib/totpd
ENV TOTPD_LISTEN=0.0.0.0:50051 \
    TOTPD_DATA_DIR=/var/lib/totpd
EXPOSE 50051 9464
# SIGTERM drains calls in flight (TOTPD_SHUTDOWN_GRACE_SECONDS) and exits 0.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "totpd"]
