"""HTTP API, report page and OpenAPI document (``patchgate api``)."""
