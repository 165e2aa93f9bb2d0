#!/usr/bin/env python3
# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a guest gets from each disk configuration: fio inside a throwaway guest, per configuration.

Runs kvm_io_bench's guest mode (the module's own code, from this checkout): for each configuration a
fresh scratch image in --dir, a transient domain booting the benchmark guest (Debian kernel, busybox,
fio; built once into /var/cache/kvmio/guest), four fio workloads, figures read from the serial console.
Configurations are interleaved (A B C A B C) over --repetitions; the table shows, per workload, the
median as a ratio to a disk as virt-install makes it (thin qcow2, virtio-blk, no cache attribute =
writeback, threads) with the range over the repetitions, then the medians themselves.

Configurations (the issue 16 table): the virt-install baseline; explicit writethrough; SATA and IDE;
metadata preallocation without a cache attribute, without and with an iothread; the collection's plan
(what kvm_disk_tune's cache=auto/io=auto and qcow2_create's preallocation give on this storage) without
and with an iothread; the plan on virtio-scsi without and with an iothread; directsync+native+iothread.

Usage: .venv/bin/python benchmarks/bench_guest.py [--dir /var/tmp] [--repetitions 3] [--runtime 10]
       [--uri qemu:///system] [--accelerator auto|kvm|tcg] [--preset standard|quick] [--no-ide]
Prints a table and writes benchmarks/results/guest.json. Not a test: nothing is asserted. The default
--uri runs libvirt's embedded driver in this process (no daemon touched).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _import_collection():
    """Imports this checkout as ansible_collections.kvmio.tuning (a link in a temporary directory)."""
    root = tempfile.mkdtemp(prefix='kvmio-import-')
    os.makedirs(os.path.join(root, 'ansible_collections', 'kvmio'))
    os.symlink(REPO, os.path.join(root, 'ansible_collections', 'kvmio', 'tuning'))
    sys.path.insert(0, root)
    return root


def _embedded_uri():
    root = tempfile.mkdtemp(prefix='kvmio-embed-', dir='/tmp')      # short: QEMU's monitor socket path
    os.makedirs(os.path.join(root, 'etc'))
    with open(os.path.join(root, 'etc', 'qemu.conf'), 'w', encoding='utf-8') as handle:
        handle.write('user = "root"\ngroup = "root"\n')
    return 'qemu:///embed?root=%s' % root, root


def params_for(opts, argument_spec, defaults):
    params = {key: spec.get('default') for key, spec in argument_spec.items()}
    params.update(defaults)
    params.update({'mode': 'guest', 'uri': opts.uri, 'path': opts.work, 'alternatives': opts.preset,
                   'repetitions': opts.repetitions, 'runtime': opts.runtime, 'size': opts.size,
                   'accelerator': opts.accelerator, 'kvm_boot_timeout': opts.kvm_boot_timeout,
                   'time_limit': opts.time_limit, 'vcpus': opts.vcpus,
                   'candidates': [] if opts.no_ide else [{'name': 'ide', 'bus': 'ide', 'cache': 'default',
                                                          'io': 'default', 'iothread': False,
                                                          'preallocation': 'off', 'format': 'qcow2'}]})
    return params


def _cell(row):
    if not row:
        return '-'
    if row.get('ratio') is None:
        return '%g' % row['median']
    low, high = row['min'] / row['median'] * row['ratio'], row['max'] / row['median'] * row['ratio']
    return '%.2f (%.2f-%.2f)' % (row['ratio'], low, high)


def print_table(result):
    workloads = result['workloads']
    measured = result.get('measured', {})
    print('fio in a guest: %s, %s on %s (O_DIRECT %s), %d vCPUs, %d repetitions interleaved, %d s per workload'
          % (measured.get('accelerator', '?').upper(), result['filesystem'], opts_dir(result),
             'works' if result.get('odirect') else 'refused', measured.get('vcpus', 0), measured.get('repetitions', 0),
             measured.get('runtime_seconds', 0)))
    print('ratio of the median to %s (range over repetitions)' % result['baseline'])
    width = max(len(c['name']) for c in result['candidates']) + 2
    print(''.join(['%-*s' % (width, 'configuration')] + ['%-20s' % w for w in workloads]))
    for cand in result['candidates']:
        print(''.join(['%-*s' % (width, cand['name'])] + ['%-20s' % _cell(cand['results'].get(w)) for w in workloads]))
    print('\nmedians (IOPS; MB/s for seqwrite) and median p99 latency (ms)')
    for cand in result['candidates']:
        cells = []
        for w in workloads:
            row = cand['results'].get(w)
            cells.append('%-20s' % ('%.0f / %.1f ms' % (row['median'], (row['p99_us'] or 0) / 1000.0) if row else '-'))
        print(''.join(['%-*s' % (width, cand['name'])] + cells))
    print('\nconfigurations:')
    for cand in result['candidates']:
        print('  %-*s bus=%s cache=%s (%s) io=%s iothread=%s preallocation=%s' % (
            width, cand['name'], cand['bus'], cand['cache'], cand['effective_cache'], cand['io'],
            'yes' if cand['iothread'] else 'no', cand['preallocation']))
    print('fastest per workload: %s' % ', '.join('%s %s (%.2fx)' % (w, f['name'], f['ratio'] or 0)
                                                  for w, f in result['fastest'].items()))
    for name, rows in result.get('collection', {}).items():
        print('%s: %s' % (name, ', '.join(
            '%s %.2fx of baseline%s, %.2fx of fastest' % (w, v['ratio_to_baseline'],
                                                          ' (slower beyond noise)' if v['slower_than_baseline'] else '',
                                                          v['ratio_to_fastest']) for w, v in rows.items())))
    if result['skipped'] or result['notes']:
        print('skipped/notes: %s' % '; '.join(result['skipped'] + result['notes']))


def opts_dir(result):
    return result.get('storage_dir', '?')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dir', default='/var/tmp')
    parser.add_argument('--uri', default=None, help='libvirt URI (default: an embedded driver of its own)')
    parser.add_argument('--repetitions', type=int, default=3)
    parser.add_argument('--runtime', type=int, default=10)
    parser.add_argument('--size', default='512M')
    parser.add_argument('--preset', default='standard', choices=['none', 'quick', 'standard'])
    parser.add_argument('--accelerator', default='auto', choices=['auto', 'kvm', 'tcg'])
    parser.add_argument('--kvm-boot-timeout', type=int, default=20)
    parser.add_argument('--time-limit', type=int, default=4 * 3600)
    parser.add_argument('--vcpus', type=int, default=2)
    parser.add_argument('--no-ide', action='store_true')
    parser.add_argument('--output', default=os.path.join(REPO, 'benchmarks', 'results', 'guest.json'))
    opts = parser.parse_args(argv)
    link_root = _import_collection()
    embed_root = None
    if opts.uri is None:
        opts.uri, embed_root = _embedded_uri()
    # pylint: disable=import-outside-toplevel
    from ansible_collections.kvmio.tuning.plugins.module_utils._bench_runner import argument_spec
    from ansible_collections.kvmio.tuning.plugins.module_utils._guest_bench import GUEST_DEFAULTS
    from ansible_collections.kvmio.tuning.plugins.module_utils._guest_bench_runner import GuestBench
    from ansible_collections.kvmio.tuning.plugins.module_utils._guest_image import process_runner
    work = tempfile.mkdtemp(prefix='kvmio-bench-guest-', dir=opts.dir)
    os.chmod(work, 0o755)       # QEMU under libvirtd runs as libvirt-qemu
    opts.work = work
    started = time.monotonic()
    try:
        result = GuestBench(params_for(opts, argument_spec(), GUEST_DEFAULTS), process_runner(),
                            lambda text: print('warning: %s' % text, file=sys.stderr)).run()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(link_root, ignore_errors=True)
        if embed_root:
            shutil.rmtree(embed_root, ignore_errors=True)
    result['elapsed_seconds'] = round(time.monotonic() - started, 1)
    result['storage_dir'] = opts.dir
    result['load_average_after'] = os.getloadavg()
    print_table(result)
    print('elapsed %.0f s (%d guest boots)' % (result['elapsed_seconds'], len(result['runs'])))
    os.makedirs(os.path.dirname(opts.output), exist_ok=True)
    with open(opts.output, 'w', encoding='utf-8') as handle:
        json.dump(result, handle, indent=2)
    print('wrote %s' % opts.output)
    return result


if __name__ == '__main__':
    main()
