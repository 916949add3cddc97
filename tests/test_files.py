"""Atomic outputs: the file appears whole or not at all, with the mode a plain ``open`` gives."""
from __future__ import annotations

import os

import pytest

from sagin_jax.files import atomic_path, atomic_write_text


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_an_atomic_output_has_the_mode_that_open_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
        atomic_write_text(tmp_path / "atomic.txt", "x")
    finally:
        os.umask(old)
    mode = lambda name: (tmp_path / name).stat().st_mode & 0o777  # noqa: E731
    assert mode("atomic.txt") == mode("plain.txt") == 0o666 & ~umask


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.csv") as tmp:
            tmp.write_text("partial")
            raise RuntimeError("interrupted")
    assert sorted(os.listdir(tmp_path)) == []
