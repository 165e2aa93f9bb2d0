# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""kvm_io_bench: mode=host runs qemu-img bench on scratch images in the user's storage for each cache mode and
preallocation; mode=guest hands over to ``_guest_bench_runner`` (fio in a throwaway guest)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time

from ._disk_policy import ODIRECT_CACHES
from ._errors import PlanError
from ._fio import WORKLOADS as GUEST_WORKLOADS
from ._guest_bench import BENCH_CACHES
from ._guest_bench_runner import GUEST_ARGUMENT_SPEC, GuestBench
from ._guest_image import module_process_runner
from ._image_plan import human_size, parse_size
from ._libvirt import LIBVIRT_ARGUMENT_SPEC
from ._qemu_img import QemuImg, module_runner
from ._storage_probe import filesystem_of, probe_odirect, read_mounts

# name: (write, block size, step between requests)
WORKLOADS = {
    'write': (True, 4096, 65536),        # 4K writes, each into a new cluster: allocating writes
    'read': (False, 4096, 65536),        # 4K reads spread over the image
    'seqwrite': (True, 65536, 65536),    # 64K sequential writes
}
CACHES = ('writethrough', 'writeback', 'none', 'directsync')
# qemu-img bench reports milliseconds: a shorter run is mostly rounding error.
MEASURABLE_SECONDS = 0.05
MAX_GROWTH_ROUNDS = 2


HOST_DEFAULTS = {'size': '256M', 'caches': list(CACHES), 'workloads': ['write', 'read'], 'time_limit': 300}
GUEST_DEFAULTS = {'time_limit': 1800}


def argument_spec():
    spec = dict(LIBVIRT_ARGUMENT_SPEC)
    spec.update({
        'mode': {'type': 'str', 'choices': ['host', 'guest'], 'default': 'host'},
        'path': {'type': 'path', 'required': True},
        'size': {'type': 'str'},
        'count': {'type': 'int', 'default': 4000},
        'depth': {'type': 'int', 'default': 16},
        'caches': {'type': 'list', 'elements': 'str', 'choices': list(BENCH_CACHES)},
        'preallocations': {'type': 'list', 'elements': 'str', 'choices': ['off', 'metadata', 'falloc'],
                           'default': ['off', 'metadata']},
        'workloads': {'type': 'list', 'elements': 'str', 'choices': list(WORKLOADS) + list(GUEST_WORKLOADS)},
        'time_limit': {'type': 'int'},
    })
    spec.update(GUEST_ARGUMENT_SPEC)
    return spec


def _with_defaults(params, defaults):
    filled = dict(params)
    for key, value in defaults.items():
        if filled.get(key) is None:
            filled[key] = value
    return filled


class BenchRun:
    """Dispatches on O(mode): qemu-img bench on the host (below), or fio in a guest (``_guest_bench_runner``)."""

    def __init__(self, module):
        self.module = module
        if module.params['mode'] == 'guest':
            self.params = _with_defaults(module.params, GUEST_DEFAULTS)
        else:
            self.params = _with_defaults(module.params, HOST_DEFAULTS)
        self.qemu_img = QemuImg(module_runner(module))

    def run(self):
        if self.params['mode'] == 'guest':
            return GuestBench(self.params, module_process_runner(self.module), self.module.warn,
                              check_mode=self.module.check_mode).run()
        wrong = [w for w in self.params['workloads'] if w not in WORKLOADS]
        wrong += [c for c in self.params['caches'] if c not in CACHES]
        if wrong:
            raise PlanError('%s apply to mode=guest only (mode=host measures caches %s and workloads %s)'
                            % (', '.join(wrong), ', '.join(CACHES), ', '.join(WORKLOADS)))
        return self._run_host()

    def _check(self, size):
        path = self.params['path']
        if not os.path.isdir(path):
            raise PlanError('path %s is not a directory (name the storage pool directory to measure)' % path)
        if self.params['count'] < 1 or self.params['depth'] < 1:
            raise PlanError('count and depth must be 1 or more')
        usage = shutil.disk_usage(path)
        needed = 2 * size + (64 << 20)
        if usage.total == 0:        # ramfs and friends report no size: nothing to check against
            self.module.warn('%s reports no capacity (ramfs?); free space was not checked' % path)
        elif usage.free < needed:
            raise PlanError('only %s free in %s; the benchmark needs %s (two scratch images of size %s); '
                            'nothing was written' % (human_size(usage.free), path, human_size(needed),
                                                     human_size(size)))

    def _measure(self, image, size, cache, io, prealloc, workload):
        """(seconds, requests) of one qemu-img bench run on a fresh image. A run too short for
        qemu-img's millisecond clock (page-cached reads) is repeated with 10x the requests, as long
        as writes still land in new clusters of the checked scratch size (reads may wrap around)."""
        write, block, step = WORKLOADS[workload]
        count = self.params['count']
        rounds = 0
        while True:
            self.qemu_img.create(image, size, 'qcow2', {'preallocation': prealloc})
            try:
                seconds = self.qemu_img.bench(image, 'qcow2', cache, io, count, self.params['depth'], block,
                                              step, write)
            finally:
                os.unlink(image)
            if seconds >= MEASURABLE_SECONDS or rounds == MAX_GROWTH_ROUNDS or (write and step * count * 10 > size):
                return seconds, count
            count *= 10
            rounds += 1

    def _run_host(self):
        params = self.params
        size = parse_size(params['size'])
        span = max(step for _w, _b, step in WORKLOADS.values()) * params['count']
        size = max(size, span + (1 << 20))
        self._check(size)
        combos = [(c, p) for p in params['preallocations'] for c in params['caches']]
        _mp, fstype = filesystem_of(os.path.realpath(params['path']), read_mounts())
        result = {'changed': False, 'mode': 'host', 'filesystem': fstype, 'results': [], 'skipped': []}
        if self.module.check_mode:
            result['skipped'] = ['check mode: %d combinations not run' % (len(combos) * len(params['workloads']))]
            return result
        scratch = tempfile.mkdtemp(prefix='.kvmio-bench-', dir=params['path'])
        deadline = time.monotonic() + params['time_limit']
        try:
            probe = os.path.join(scratch, 'probe')
            with open(probe, 'wb') as handle:
                handle.write(b'\0' * 4096)
            odirect, why = probe_odirect(probe)
            result['odirect'] = odirect
            for cache, prealloc in combos:
                io = 'native' if cache in ODIRECT_CACHES else 'threads'
                if cache in ODIRECT_CACHES and odirect is not True:
                    result['skipped'].append('cache=%s: O_DIRECT does not work here (%s)' % (cache, why))
                    continue
                for workload in params['workloads']:
                    if time.monotonic() > deadline:
                        result['skipped'].append('%s/%s/%s: time_limit of %d s reached'
                                                 % (cache, prealloc, workload, params['time_limit']))
                        continue
                    seconds, count = self._measure(os.path.join(scratch, 'bench.qcow2'), size, cache, io,
                                                   prealloc, workload)
                    block = WORKLOADS[workload][1]
                    result['results'].append({
                        'cache': cache, 'io': io, 'preallocation': prealloc, 'workload': workload, 'count': count,
                        'seconds': seconds, 'iops': round(count / seconds) if seconds else None,
                        'mb_per_s': round(count * block / seconds / 1e6, 1) if seconds else None})
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        writes = [r for r in result['results'] if r['workload'] == 'write' and r['cache'] != 'writethrough']
        if writes:
            best = max(writes, key=lambda r: r['iops'] or 0)
            result['recommendation'] = {k: best[k] for k in ('cache', 'io', 'preallocation', 'iops')}
        default = [r for r in result['results'] if r['workload'] == 'write' and r['cache'] == 'writethrough'
                   and r['preallocation'] == 'off']
        if default and writes:
            result['speedup_vs_default'] = round(result['recommendation']['iops'] / default[0]['iops'], 1)
        return result
