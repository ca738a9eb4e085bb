"""Replayable traffic: the shipped 120-day sample and the driver that feeds it to a running worker."""
