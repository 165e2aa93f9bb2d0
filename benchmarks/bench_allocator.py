#!/usr/bin/env python3
# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How long the host-wide pinning allocator takes: 200 domains on a 256-CPU, 8-node SMT-2 host.

Usage: .venv/bin/python benchmarks/bench_allocator.py [--domains 200] [--repeat 20]
Prints the best and median time of a fresh plan and of a re-plan that keeps every pin. Not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = tempfile.mkdtemp(prefix='kvmio-bench-import-')
os.makedirs(os.path.join(LINK, 'ansible_collections', 'kvmio'))
os.symlink(REPO, os.path.join(LINK, 'ansible_collections', 'kvmio', 'tuning'))
sys.path.insert(0, LINK)
sys.path.insert(0, os.path.join(REPO, 'tests'))

# pylint: disable=wrong-import-position
from ansible_collections.kvmio.tuning.plugins.module_utils._pinning import DomainNeed, PinPolicy, allocate  # noqa: E402
from helpers.topology import synthetic_host  # noqa: E402


def timed(func, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--domains', type=int, default=200)
    parser.add_argument('--repeat', type=int, default=20)
    opts = parser.parse_args(argv)
    topology = synthetic_host(nodes=8, cores_per_node=16)
    policy = PinPolicy(reserved=frozenset({0, 128}))
    needs = [DomainNeed('vm%03d' % i, vcpus=1 + i % 2, iothreads=1) for i in range(opts.domains)]
    best, median, (placements, unplaced) = timed(lambda: allocate(topology, needs, policy), opts.repeat)
    fresh = median
    print('%d domains on %d CPUs / %d nodes: fresh plan best %.1f ms, median %.1f ms (%d placed, %d unplaced)'
          % (opts.domains, len(topology.cpus), len(topology.cells), best * 1000, median * 1000, len(placements),
             len(unplaced)))
    kept = [DomainNeed(n.name, n.vcpus, n.iothreads, current_vcpu_pins=placements[n.name].vcpus)
            for n in needs if n.name in placements]
    best, median, _ = timed(lambda: allocate(topology, kept, policy), opts.repeat)
    print('re-plan keeping every pin: best %.1f ms, median %.1f ms' % (best * 1000, median * 1000))
    return {'domains': opts.domains, 'cpus': len(topology.cpus), 'nodes': len(topology.cells),
            'fresh_ms': round(fresh * 1000, 2), 'replan_ms': round(median * 1000, 2), 'placed': len(placements)}


if __name__ == '__main__':
    main()
