"""Webhook delivery of notifications (``patchgate notify``)."""
