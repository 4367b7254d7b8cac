"""Atomic writes: the one helper every writer of asbsr goes through."""

from __future__ import annotations

import os

import pytest

from asbsr.files import atomic_path, atomic_write_text


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "deep" / "table.csv"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half a ta")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.csv"]


def test_the_file_gets_the_permissions_of_a_new_file_and_the_suffix_is_kept(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "figure.png", suffix=".tmp.png") as temporary:
            assert temporary.name.endswith(".tmp.png") and temporary.parent == tmp_path
            temporary.write_bytes(b"png")
    finally:
        os.umask(umask)
    assert (tmp_path / "figure.png").stat().st_mode & 0o777 == 0o644
    assert atomic_write_text(tmp_path / "a.json", "{}").read_text() == "{}"


def test_every_writer_uses_the_helper():
    """No module of asbsr renames a temporary file by itself (the DIV2K download's resumable
    ``.part`` file is the one deliberate exception: it must survive an interruption)."""
    from pathlib import Path

    import asbsr

    root = Path(asbsr.__file__).resolve().parent
    own = {str(p.relative_to(root)) for p in root.rglob("*.py") if "os.replace(" in p.read_text()}
    assert own == {"files.py", os.path.join("lab", "download.py")}
