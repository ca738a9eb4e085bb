# The patchgate image (docker-compose.yml runs it as the worker). Python side only; brokers come from
# their own images. Two stages: the builder turns the checkout into a wheel; the runtime installs that
# wheel (non-editable, with its dependencies, all available as manylinux wheels: no compiler needed)
# and nothing else: no sources, no test tools, no embedded demo services.

FROM python:3.11-slim AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY processors ./processors
COPY edge ./edge
COPY schemas ./schemas
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder /dist /dist
RUN pip install --no-cache-dir /dist/*.whl \
    && rm -rf /dist \
    && useradd --system --uid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin patchgate
USER 10001
WORKDIR /tmp
# worker: /livez, /readyz and Prometheus /metrics (PATCHGATE_METRICS_PORT) and Faust's web server
# (PATCHGATE_WEB_PORT); `patchgate api`: the HTTP API and report page (PATCHGATE_API_PORT)
EXPOSE 9464 6066 8080
# The worker's liveness probe (its event loop beats; slim has no curl: Python asks). Liveness, not
# readiness: a worker waiting for Redis or the broker is alive and must not be restarted for it. It
# listens on loopback (PATCHGATE_METRICS_BIND 127.0.0.1 or 0.0.0.0). A container running another
# command (api, edge, notify) sets its own health check.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PATCHGATE_METRICS_PORT', '9464') + '/livez', timeout=4)"]
ENTRYPOINT ["patchgate"]
CMD ["worker"]
