"""The per-tenant server report (per server: build, status, stage, dates, recommended builds),
shared by the HTTP API, the report page and the CLI.

- :mod:`processors.report.model`: pure row building (report fields, reply now, daily estimates);
- :mod:`processors.report.reader`: pipelined Redis reads (one round trip per chunk of servers);
- :mod:`processors.report.render`: text table, CSV and JSON;
- :mod:`processors.report.cli`: ``patchgate report``.

Nothing is imported here, so ``patchgate`` start-up does not load Redis for other subcommands.
"""
