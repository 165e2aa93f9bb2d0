# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Hosts larger and odder than the corpus capabilities, built in the same shape."""

from __future__ import annotations

from ansible_collections.kvmio.tuning.plugins.module_utils._topology import HostTopology


def synthetic_host(nodes, cores_per_node, threads=2, offline=()):
    """Thread t of core c is CPU t * total_cores + c (Linux's numbering, as in the corpus hosts)."""
    total = nodes * cores_per_node
    cells, siblings = {}, {}
    for node in range(nodes):
        cells[node] = []
        for core in range(node * cores_per_node, (node + 1) * cores_per_node):
            group = frozenset(t * total + core for t in range(threads))
            for cpu in group:
                cells[node].append(cpu)
                siblings[cpu] = group
        cells[node].sort()
    every = {c for cpus in cells.values() for c in cpus}
    return HostTopology(cells=cells, siblings=siblings, online=every - set(offline))
