"""``patchgate whatif``: before enforcing, predict from recorded metadata whose mail would be deferred
or rejected, from when and how much, by running the worker's own logic and the edge's own decision
over the recording (see :mod:`processors.whatif.simulate`)."""
