"""The worker's policy watcher follows a Kubernetes ConfigMap update: the kubelet's ``..data`` swap.

A ConfigMap volume holds ``policy.toml -> ..data/policy.toml`` and ``..data -> ..<timestamp>``; an
update writes a new ``..<timestamp>`` folder and renames a new ``..data`` symlink over the old one
(one atomic step), then deletes the old folder. The file the worker watches is never written in place.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from processors.worker.policies import PolicySource

PACKAGED = resources.files("processors").joinpath("data", "policy.toml").read_text("utf-8")
LEAD_7 = "upcoming_lead_days = 7 "
LEAD_3 = "upcoming_lead_days = 3 "  # the same length: only the file's identity tells it changed


def kubelet_write(volume: Path, version: str, files: dict[str, str]) -> None:
    """Write ``files`` as the kubelet does: a new timestamped folder, then the ``..data`` swap."""
    folder = volume / f"..{version}"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
        link = volume / name
        if not link.is_symlink():
            link.symlink_to(Path("..data") / name)
    old = os.readlink(volume / "..data") if (volume / "..data").is_symlink() else None
    (volume / "..data_tmp").symlink_to(folder.name)
    os.replace(volume / "..data_tmp", volume / "..data")
    if old is not None:
        for child in (volume / old).iterdir():
            child.unlink()
        (volume / old).rmdir()


def test_a_configmap_swap_reloads_the_policy(tmp_path: Path) -> None:
    assert LEAD_7 in PACKAGED
    kubelet_write(tmp_path, "2026_12_07_06_00_00.1", {"policy.toml": PACKAGED})
    source = PolicySource(tmp_path / "policy.toml", check_interval=0)
    assert source.current.enforcement.upcoming_lead_days == 7
    before = os.stat(tmp_path / "policy.toml")

    kubelet_write(tmp_path, "2026_12_07_06_05_00.2", {"policy.toml": PACKAGED.replace(LEAD_7, LEAD_3)})
    os.utime(tmp_path / "policy.toml", ns=(before.st_atime_ns, before.st_mtime_ns))  # same size, same mtime

    assert source.maybe_reload() is True
    assert source.current.enforcement.upcoming_lead_days == 3
    assert source.maybe_reload() is False  # nothing changed since


def test_a_swap_to_a_bad_policy_keeps_the_loaded_one(tmp_path: Path) -> None:
    kubelet_write(tmp_path, "1", {"policy.toml": PACKAGED})
    source = PolicySource(tmp_path / "policy.toml", check_interval=0)
    kubelet_write(tmp_path, "2", {"policy.toml": "[enforcement\n"})
    assert source.maybe_reload() is False
    assert source.current.enforcement.upcoming_lead_days == 7
