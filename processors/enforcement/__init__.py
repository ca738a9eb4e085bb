"""Staged enforcement: the stage table, pauses, and the verdicts and notifications they produce.

Everything here is a pure function of its inputs (state, policy, a point in event time), so a
replay of the same input gives the same verdicts.
"""
