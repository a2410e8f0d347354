"""The model-server processes an integration test started, found and ended even when a deployer lost track of them."""

from __future__ import annotations

import psutil


def serving_processes() -> list[psutil.Process]:
    """Live servers started by this test process (they stay its children despite their own session).

    Returns the ``psutil.Process`` of each ``include.serving`` child, zombies left out; never
    raises for a child that exits while it is looked at.
    """
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "include.serving" in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def kill_serving_processes() -> list[psutil.Process]:
    """Kill every server :func:`serving_processes` finds and wait up to 10 s for them to go.

    Returns the servers it killed, so that a fixture can fail on any a test left running.
    Raises ``psutil.Error`` when one cannot be killed.
    """
    leftovers = serving_processes()
    for process in leftovers:
        process.kill()
    psutil.wait_procs(leftovers, timeout=10)
    return leftovers
