# The patchgate worker image (docker-compose.yml). Python side only; brokers come from their images.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY processors ./processors
COPY edge ./edge
COPY schemas ./schemas
RUN pip install --no-cache-dir -e .
ENV PATCHGATE_SCHEMAS_DIR=/app/schemas
USER nobody
ENTRYPOINT ["patchgate"]
CMD ["worker"]
