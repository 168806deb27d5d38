# One image, two runtimes: the ECS worker (default) and the Lambda function (when Lambda runs
# it, AWS_LAMBDA_RUNTIME_API is set and the entry point starts the runtime interface client).

FROM python:3.11-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements.lock ./
RUN pip install --no-cache-dir --requirement requirements.lock
COPY pyproject.toml README.md ./
COPY worker ./worker
RUN pip install --no-cache-dir --no-deps .
# The CA bundle that signs every RDS certificate: the worker verifies the database with it
# (DATABASE_SSL_MODE=verify-full, DATABASE_SSL_ROOT_CERT). Loaded once here, so a download
# that is not a PEM bundle fails the build.
ARG RDS_CA_BUNDLE_URL=https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem
RUN python -c "import ssl, sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2]); ssl.create_default_context(cafile=sys.argv[2])" \
        "$RDS_CA_BUNDLE_URL" /opt/rds-global-bundle.pem

FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HEALTH_PORT=8080 \
    DATABASE_SSL_MODE=verify-full \
    DATABASE_SSL_ROOT_CERT=/etc/ssl/certs/rds-global-bundle.pem
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin worker
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/rds-global-bundle.pem /etc/ssl/certs/rds-global-bundle.pem
# On ECS the root filesystem is read-only and /tmp an ephemeral volume: declared here, the
# volume starts as the image's /tmp (world-writable), not as an empty root-owned 0755 mount.
VOLUME ["/tmp"]
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["vendor-onboarding", "healthcheck"]
ENTRYPOINT ["python", "-m", "worker.runtimes.entrypoint"]
CMD ["run"]
