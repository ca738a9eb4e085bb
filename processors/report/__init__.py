"""The per-tenant server report (domain.md §7), shared by the HTTP API, the report page and the CLI."""

from processors.report.model import PauseSummary, ReplyNow, ServerRow, build_row, pause_summary, reply_now
from processors.report.reader import ReportReader, TenantSummary

__all__ = ["PauseSummary", "ReplyNow", "ReportReader", "ServerRow", "TenantSummary", "build_row", "pause_summary",
           "reply_now"]
