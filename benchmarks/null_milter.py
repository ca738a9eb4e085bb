"""A milter that accepts everything: the floor of any milter's cost through Postfix.

Run: ``python benchmarks/null_milter.py /path/to/milter.sock`` (prints ``ready`` once listening).
It speaks the same protocol code as ``patchgate edge milter`` (negotiation, no-reply flags, macro
lists) but decides nothing, so ``bench_postfix.py`` can separate what Postfix spends on having a
milter at all from what patchgate's decision adds.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge import eventloop
from edge.milter.server import AcceptAll, MilterServer


async def serve(path: str) -> None:
    server = MilterServer(AcceptAll())
    await server.listen_unix(path, group="postfix")  # 0660: Postfix's smtpd connects as postfix
    print("ready", flush=True)
    await asyncio.Event().wait()  # until terminated


if __name__ == "__main__":
    eventloop.run(serve(sys.argv[1]))  # the same loop as patchgate edge milter
