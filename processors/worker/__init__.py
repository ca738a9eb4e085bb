"""The stream processor: ``patchgate worker`` (a Faust app) around :class:`~.processing.BatchProcessor`."""
