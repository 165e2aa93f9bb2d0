#!/usr/bin/env python3
# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every benchmark of the collection in one run: outcome, tool speed, allocator scale.

- outcome: 4K allocating-write IOPS of each image/cache policy, as a ratio to the default (thin qcow2,
  writethrough) and to the storage's own limit (a preallocated raw file with O_DIRECT);
- tool speed: one kvm_disk_tune call vs a virt-xml loop vs a bare libvirt-python loop (needs libvirtd);
- allocator scale: 200 domains on a 256-CPU, 8-node host;
- live apply: a blockdev-reopen per disk chain, and the pause of a save/restore (needs libvirtd);
- define check: what defining every planned XML into a throwaway embedded libvirt adds to a run.

Usage: .venv/bin/python benchmarks/run_all.py [--quick]   (--quick: smaller counts, for a smoke run)
Prints each table and writes benchmarks/results/all.json. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# pylint: disable=wrong-import-position
import bench_allocator  # noqa: E402
import bench_define_check  # noqa: E402
import bench_kvm_disk_tune  # noqa: E402
import bench_live_apply  # noqa: E402
import bench_qcow2_preallocation  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true')
    opts = parser.parse_args()
    results = {}
    print('== outcome: 4K allocating writes per policy ==')
    results['outcome'] = bench_qcow2_preallocation.main(['--count', '2000' if opts.quick else '20000'])
    print('\n== tool speed: kvm_disk_tune vs virt-xml vs a bare libvirt-python loop ==')
    results['tool_speed'] = bench_kvm_disk_tune.main(
        ['--sizes', '20', '--virt-xml-sample', '5'] if opts.quick else ['--sizes', '50', '500', '--virt-xml-sample', '30'])
    print('\n== allocator scale ==')
    results['allocator'] = bench_allocator.main(['--repeat', '5' if opts.quick else '20'])
    print('\n== live apply: reopen and save/restore pause ==')
    results['live_apply'] = bench_live_apply.main(
        ['--domains', '1', '--memory', '128', '--fill', '16'] if opts.quick else ['--domains', '2'])
    print('\n== define check cost ==')
    results['define_check'] = bench_define_check.main(['--sizes', '1', '50'] if opts.quick else [])
    os.makedirs(os.path.join(HERE, 'results'), exist_ok=True)
    with open(os.path.join(HERE, 'results', 'all.json'), 'w', encoding='utf-8') as handle:
        json.dump(results, handle, indent=2)
    print('\nwrote %s' % os.path.join(HERE, 'results', 'all.json'))


if __name__ == '__main__':
    main()
