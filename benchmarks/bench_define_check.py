#!/usr/bin/env python3
# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the define check adds to a run: every changed domain's current and planned XML defined into a
throwaway embedded libvirt in a child process, for 1, 50 and 500 domains.

cold: a new, empty cache directory (the first run on a host, or after QEMU or libvirt changed: the
embedded driver probes QEMU's capabilities); warm: the same cache again (every later run).
Usage: .venv/bin/python benchmarks/bench_define_check.py [--sizes 1 50 500] [--repeat 3]
Needs root (like the modules) and QEMU; not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = tempfile.mkdtemp(prefix='kvmio-bench-import-')
os.makedirs(os.path.join(LINK, 'ansible_collections', 'kvmio'))
os.symlink(REPO, os.path.join(LINK, 'ansible_collections', 'kvmio', 'tuning'))
sys.path.insert(0, LINK)
sys.path.insert(0, os.path.join(REPO, 'tests'))

# pylint: disable=wrong-import-position
from ansible_collections.kvmio.tuning.plugins.module_utils._define_check import check_defines  # noqa: E402
from helpers import domain_xml as dx  # noqa: E402


def domains(count):
    """(name, current XML, planned XML) as kvm_disk_tune plans them: a cache and io set on each disk."""
    items = []
    for index in range(count):
        name = 'bench-%04d' % index
        disks = [dx.disk('/var/lib/libvirt/images/%s-%d.qcow2' % (name, n), 'vd' + 'abc'[n], 'virtio')
                 for n in range(3)]
        current = dx.domain(name, disks).replace('<name>', '<uuid>%s</uuid>\n  <name>' % uuid.uuid4(), 1)
        items.append((name, current, current.replace('type="qcow2"', 'type="qcow2" cache="none" io="native"')))
    return items


def timed(items, cache_dir):
    start = time.perf_counter()
    check = check_defines(items, cache_dir=cache_dir)
    elapsed = time.perf_counter() - start
    if check.refused or len(check.checked) != len(items):
        raise SystemExit('unexpected verdicts: %s' % check)
    return elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[1, 50, 500])
    parser.add_argument('--repeat', type=int, default=3)
    opts = parser.parse_args(argv)
    results = []
    print('%8s %10s %10s %14s' % ('domains', 'cold s', 'warm s', 'warm ms/domain'))
    for size in opts.sizes:
        items = domains(size)
        cache_dir = tempfile.mkdtemp(prefix='kvmio-bench-check-', dir='/var/tmp')
        try:
            cold = timed(items, os.path.join(cache_dir, 'cache'))
            warm = statistics.median(timed(items, os.path.join(cache_dir, 'cache')) for _ in range(opts.repeat))
        finally:
            shutil.rmtree(cache_dir)
        print('%8d %10.2f %10.2f %14.2f' % (size, cold, warm, warm * 1000 / size))
        results.append({'domains': size, 'cold_s': round(cold, 3), 'warm_s': round(warm, 3)})
    return results


if __name__ == '__main__':
    main()
