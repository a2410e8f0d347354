"""The shared plumbing: atomic writes, text helpers, loopback check."""

from __future__ import annotations

import os

import fsspec
import pytest

from include.util.fs import write_atomically
from include.util.net import is_loopback
from include.util.text import metric_key, parse_bool, rows_text


def test_write_atomically_replaces_whole_files_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "deep" / "file.json"
    write_atomically(target, "first")
    write_atomically(target, b"second")
    assert target.read_bytes() == b"second" and os.listdir(target.parent) == ["file.json"]

    def refuse(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, "third")
    assert target.read_bytes() == b"second" and os.listdir(target.parent) == ["file.json"]


def test_write_atomically_puts_once_on_an_object_store():
    memory = fsspec.filesystem("memory")
    write_atomically("/bucket/reports/a.json", "{}", filesystem=memory)
    assert memory.cat_file("/bucket/reports/a.json") == b"{}"


def test_text_helpers():
    assert rows_text([1, 2]) == "1, 2" and rows_text(list(range(8)), shown=3) == "0, 1, 2 and 5 more"
    assert metric_key("holdout_roc_auc", "plan", "a=b+c") == "holdout_roc_auc.plan.a_b_c"
    assert parse_bool(" ON ") is True and parse_bool("") is False and parse_bool(False) is False
    with pytest.raises(ValueError, match="flag must be one of"):
        parse_bool("maybe", "flag")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("http://127.0.0.2:5080", True),
        ("http://[::1]:80/x", True),
        ("0.0.0.0", False),
        ("example.com", False),
        ("http://10.0.0.1", False),
    ],
)
def test_is_loopback(value, expected):
    assert is_loopback(value) is expected
