#!/usr/bin/env python3
# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""4K writes on qcow2 images of each preallocation mode, under each cache mode, with qemu-img bench.

Each run gets a fresh image (made with the collection's qcow2 planning options) in --dir, then
`qemu-img bench -w -c COUNT -d DEPTH -s 4k -S 64k` writes 4K into a new 64K cluster each time: the
allocating writes a guest makes when it fills a new disk. Ratios are to a disk as virt-install makes it:
a thin image without a cache attribute, which QEMU (>= 1.2) runs writeback with aio=threads. A
preallocated raw file with O_DIRECT is the storage's limit. This is a host measurement: it does not see
the guest's bus, iothreads or flushes (benchmarks/bench_guest.py measures a guest).

Usage: .venv/bin/python benchmarks/bench_qcow2_preallocation.py [--dir /var/tmp] [--count 20000] [--depth 16]
Prints a table and writes benchmarks/results/qcow2_preallocation.json. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHES = (('writethrough', 'threads'), ('writeback', 'threads'), ('none', 'native'))
PREALLOCATIONS = ('off', 'metadata', 'falloc', 'full')


def bench(path, fmt, cache, aio, count, depth):
    out = subprocess.run(['qemu-img', 'bench', '-w', '-f', fmt, '-t', cache, '-i', aio, '-c', str(count),
                          '-d', str(depth), '-s', '4k', '-S', '64k', path],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r'Run completed in ([0-9.]+) seconds', out).group(1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dir', default='/var/tmp')
    parser.add_argument('--count', type=int, default=20000)
    parser.add_argument('--depth', type=int, default=16)
    opts = parser.parse_args(argv)
    size = str(opts.count * 64 * 1024 + (64 << 20))
    rows = []
    with tempfile.TemporaryDirectory(prefix='kvmio-bench-', dir=opts.dir) as work:
        for prealloc in PREALLOCATIONS:
            for cache, aio in CACHES:
                path = os.path.join(work, 'img.qcow2')
                subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'preallocation=%s' % prealloc,
                                path, size], check=True)
                rows.append({'image': 'qcow2 ' + prealloc, 'cache': cache, 'io': aio,
                             'seconds': bench(path, 'qcow2', cache, aio, opts.count, opts.depth)})
                os.unlink(path)
        raw = os.path.join(work, 'img.raw')
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'raw', '-o', 'preallocation=full', raw, size], check=True)
        rows.append({'image': 'raw full (limit)', 'cache': 'none', 'io': 'native',
                     'seconds': bench(raw, 'raw', 'none', 'native', opts.count, opts.depth)})
    default = next(r['seconds'] for r in rows if r['image'] == 'qcow2 off' and r['cache'] == 'writeback')
    limit = rows[-1]['seconds']
    print('%d 4K allocating writes, queue depth %d, in %s' % (opts.count, opts.depth, opts.dir))
    print('%-18s %-22s %8s %9s %14s %12s' % ('image', 'cache/io', 'seconds', 'IOPS', 'x default', 'of limit'))
    for row in rows:
        row['iops'] = round(opts.count / row['seconds'])
        row['speedup_vs_default'] = round(default / row['seconds'], 1)
        row['fraction_of_limit'] = round(limit / row['seconds'], 2)
        print('%-18s %-22s %8.2f %9d %13.1fx %11.0f%%' % (row['image'], row['cache'] + '/' + row['io'],
                                                      row['seconds'], row['iops'], row['speedup_vs_default'],
                                                      100 * row['fraction_of_limit']))
    print('(writeback goes through the host page cache, so it can beat the O_DIRECT limit until that cache fills)')
    os.makedirs(os.path.join(REPO, 'benchmarks', 'results'), exist_ok=True)
    with open(os.path.join(REPO, 'benchmarks', 'results', 'qcow2_preallocation.json'), 'w', encoding='utf-8') as out:
        json.dump(rows, out, indent=2)
    return rows


if __name__ == '__main__':
    main()
