# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""kvm_io_bench: mode=host runs qemu-img bench on scratch images in the user's storage for each cache mode and
preallocation; mode=guest hands over to ``_guest_bench_runner`` (fio in a throwaway guest).

The measured directory may be one other users can write (a shared pool), so nothing is written by a
name in it: the host mode's scratch files live in a private work directory (``_image_workdir.WorkDir``:
made 0700 under a random name, held by its descriptor), qemu-img reaches them as ``/dev/fd/N/NAME``, and
a user who renames the work directory or plants a look-alike with links in it changes nothing."""

from __future__ import annotations

import os
import shutil
import time

from ._disk_policy import AUTO_CACHES, MEASURABLE_CACHES, DiskInfo, DiskSettings, decide_disk, effective_settings
from ._errors import PlanError
from ._fio import WORKLOADS as GUEST_WORKLOADS
from ._guest_bench import GUEST_ARGUMENT_SPEC
from ._host_probe import host_support
from ._image_plan import human_size, parse_size
from ._image_workdir import WorkDir, open_directory, remove_dead_workdirs
from ._libvirt import LIBVIRT_ARGUMENT_SPEC, library_version
from ._qemu_img import QemuImg, module_runner
from ._storage_probe import SHARED_FILESYSTEMS, filesystem_of, probe_odirect_fd, read_mounts
from ._support import StorageFacts
from ._trusted_files import UntrustedPath, resolve_trusted_links

# name: (write, block size, step between requests)
WORKLOADS = {
    'write': (True, 4096, 65536),        # 4K writes, each into a new cluster: allocating writes
    'read': (False, 4096, 65536),        # 4K reads spread over the image
    'seqwrite': (True, 65536, 65536),    # 64K sequential writes
}
# 'default': no cache attribute and no io attribute, as virt-install makes a disk (QEMU runs writeback
# and threads): the baseline every ratio is taken against.
CACHES = MEASURABLE_CACHES
BASELINE = ('default', 'off')
# qemu-img bench reports milliseconds: a shorter run is mostly rounding error.
MEASURABLE_SECONDS = 0.05
MAX_GROWTH_ROUNDS = 2
# The private work directory in the measured directory is named '.bench.kvmio-<random>.tmp'.
WORKDIR_NAME = 'bench'
SCRATCH_IMAGE = 'bench.qcow2'
PROBE_FILE = 'probe'


HOST_DEFAULTS = {'size': '256M', 'caches': list(CACHES), 'workloads': ['write', 'read'], 'time_limit': 300}


def argument_spec():
    """Both modes' options (kvm_io_bench picks BenchRun or _guest_bench_runner.GuestBenchRun by O(mode))."""
    spec = dict(LIBVIRT_ARGUMENT_SPEC)
    spec.update({
        'mode': {'type': 'str', 'choices': ['host', 'guest'], 'default': 'host'},
        'path': {'type': 'path', 'required': True},
        'size': {'type': 'str'},
        'count': {'type': 'int', 'default': 4000},
        'depth': {'type': 'int', 'default': 16},
        'caches': {'type': 'list', 'elements': 'str', 'choices': list(CACHES)},
        'preallocations': {'type': 'list', 'elements': 'str', 'choices': ['off', 'metadata', 'falloc'],
                           'default': ['off', 'metadata']},
        # seqwrite exists in both modes (64K writes with qemu-img bench, 1M writes with fio in a guest).
        'workloads': {'type': 'list', 'elements': 'str',
                      'choices': list(WORKLOADS) + [w for w in GUEST_WORKLOADS if w not in WORKLOADS]},
        'time_limit': {'type': 'int'},
    })
    spec.update(GUEST_ARGUMENT_SPEC)
    return spec


class BenchRun:
    """kvm_io_bench mode=host: qemu-img bench on scratch images."""

    def __init__(self, module):
        self.module = module
        self.params = dict(module.params)
        for key, value in HOST_DEFAULTS.items():
            if self.params.get(key) is None:
                self.params[key] = value
        self.qemu_img = QemuImg(module_runner(module))

    def run(self):
        wrong = [w for w in self.params['workloads'] if w not in WORKLOADS]
        if wrong:
            raise PlanError('workloads %s apply to mode=guest only (mode=host measures %s)'
                            % (', '.join(wrong), ', '.join(WORKLOADS)))
        return self._run_host()

    def _resolve(self):
        """``path`` with its links resolved, each followed only when root or this user made it, in
        directories only they can change (``_trusted_files``, as qcow2_create resolves an image's path):
        a link another user planted would make root write scratch files, and check free space, where
        that user chose."""
        path = self.params['path']
        try:
            return resolve_trusted_links(path, 'path %s' % path)
        except UntrustedPath as err:
            raise PlanError('path %s is not followed: %s (only a link that root or the user running the module made, '
                            'in directories only they can change, is followed); nothing was written'
                            % (path, err.details.get('untrusted', err.msg))) from None
        except OSError as err:
            raise PlanError('cannot resolve path %s: %s; nothing was written' % (path, err.strerror)) from None

    def _check(self, size, real):
        path = self.params['path']
        if not os.path.isdir(real):
            raise PlanError('path %s is not a directory (name the storage pool directory to measure)' % path)
        if self.params['count'] < 1 or self.params['depth'] < 1:
            raise PlanError('count and depth must be 1 or more')
        usage = shutil.disk_usage(real)
        needed = 2 * size + (64 << 20)
        if usage.total == 0:        # ramfs and friends report no size: nothing to check against
            self.module.warn('%s reports no capacity (ramfs?); free space was not checked' % real)
        elif usage.free < needed:
            raise PlanError('only %s free in %s; the benchmark needs %s (two scratch images of size %s); '
                            'nothing was written' % (human_size(usage.free), real, human_size(needed),
                                                     human_size(size)))

    def _measure(self, work, size, cache, io, prealloc, workload):
        """(seconds, requests) of one qemu-img bench run on a fresh image. A run too short for
        qemu-img's millisecond clock (page-cached reads) is repeated with 10x the requests, as long
        as writes still land in new clusters of the checked scratch size (reads may wrap around)."""
        write, block, step = WORKLOADS[workload]
        count = self.params['count']
        rounds = 0
        image = work.file_path(SCRATCH_IMAGE)
        while True:
            self.qemu_img.create(image, size, 'qcow2', {'preallocation': prealloc}, pass_fds=[work.fd])
            try:
                seconds = self.qemu_img.bench(image, 'qcow2', cache, io, count, self.params['depth'], block,
                                              step, write, pass_fds=[work.fd])
            finally:
                os.unlink(SCRATCH_IMAGE, dir_fd=work.fd)
            if seconds >= MEASURABLE_SECONDS or rounds == MAX_GROWTH_ROUNDS or (write and step * count * 10 > size):
                return seconds, count
            count *= 10
            rounds += 1

    def _run_host(self):
        params = self.params
        size = parse_size(params['size'])
        span = max(step for _w, _b, step in WORKLOADS.values()) * params['count']
        size = max(size, span + (1 << 20))
        real = self._resolve()
        self._check(size, real)
        combos = [(c, p) for p in params['preallocations'] for c in params['caches']]
        _mp, fstype = filesystem_of(real, read_mounts())
        # No 'path' key: AnsibleModule.exit_json would add that path's stat (mode, owner, size) to the result.
        result = {'changed': False, 'mode': 'host', 'filesystem': fstype, 'results': [], 'skipped': []}
        if self.module.check_mode:
            result['skipped'] = ['check mode: %d combinations not run' % (len(combos) * len(params['workloads']))]
            return result
        try:
            dir_fd = open_directory(real)       # one component at a time: a link put on the way since fails
        except OSError as err:
            raise PlanError('cannot open %s: %s; nothing was written' % (params['path'], err.strerror)) from None
        deadline = time.monotonic() + params['time_limit']
        try:
            remove_dead_workdirs(dir_fd, real, WORKDIR_NAME)      # scratch images of a killed run
            with WorkDir(dir_fd, real, WORKDIR_NAME) as work:
                self._run_all(work, real, size, combos, deadline, result)
        finally:
            os.close(dir_fd)
        self._summarise(result)
        return result

    def _probe(self, work, real):
        """StorageFacts of the measured directory, from a probe file written and read through the work
        directory's descriptor (the O_DIRECT open of ``_storage_probe``, by descriptor)."""
        fd = work.open(PROBE_FILE, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, b'\0' * 4096)
            odirect, why = probe_odirect_fd(fd, os.path.join(real, PROBE_FILE))
        finally:
            os.close(fd)
        mountpoint, fstype = filesystem_of(real, read_mounts())
        path = os.path.join(work.path, PROBE_FILE)
        return StorageFacts(path=path, kind='file', fstype=fstype, mountpoint=mountpoint, odirect=odirect,
                            shared=fstype in SHARED_FILESYSTEMS, image_format='raw', chain=(path,), detail=why)

    def _run_all(self, work, real, size, combos, deadline, result):
        params = self.params
        storage = self._probe(work, real)
        result['odirect'] = storage.odirect
        host = host_support(self.qemu_img.version(), library_version())
        for cache, prealloc in combos:
            settings, problem = candidate_settings(cache, storage.path, storage, host)
            if problem:
                result['skipped'].append('cache=%s: %s' % (cache, problem))
                continue
            cache, io = settings['cache'], settings['io']
            for workload in params['workloads']:
                if time.monotonic() > deadline:
                    result['skipped'].append('%s/%s/%s: time_limit of %d s reached'
                                             % (cache, prealloc, workload, params['time_limit']))
                    continue
                seconds, count = self._measure(work, size, cache, io, prealloc, workload)
                block = WORKLOADS[workload][1]
                result['results'].append({
                    'cache': cache, 'io': io, 'baseline': settings['baseline'], 'preallocation': prealloc,
                    'workload': workload, 'count': count,
                    'seconds': seconds, 'iops': round(count / seconds) if seconds else None,
                    'mb_per_s': round(count * block / seconds / 1e6, 1) if seconds else None})

    @staticmethod
    def _summarise(result):
        # Every row ran with settings decide_disk accepts; the recommendation is the fastest of what
        # cache=auto may choose (a host bench cannot see what writethrough costs a guest).
        writes = [r for r in result['results'] if r['workload'] == 'write' and not r['baseline']
                  and r['cache'] in AUTO_CACHES]
        if writes:
            best = max(writes, key=lambda r: r['iops'] or 0)
            result['recommendation'] = {k: best[k] for k in ('cache', 'io', 'preallocation', 'iops')}
        default = [r for r in result['results'] if r['workload'] == 'write' and r['baseline']
                   and r['preallocation'] == BASELINE[1]]
        if default and writes and default[0]['iops']:
            result['speedup_vs_default'] = round(result['recommendation']['iops'] / default[0]['iops'], 1)
        return result


def candidate_settings(cache, path, storage, host):
    """({'cache', 'io', 'baseline'}, '') as the tuner would set a disk on this storage with ``cache``
    and ``io=auto`` (or, for 'default', as virt-install leaves it); (None, why) when it refuses."""
    disk = DiskInfo(target='vda', bus='virtio', path=path, image_format='qcow2')
    if cache == 'default':
        eff = effective_settings(disk, {}, host)
        return {'cache': eff['cache'], 'io': eff['io'], 'baseline': True}, ''
    decision = decide_disk(disk, DiskSettings(cache=cache, io='auto'), storage, host)
    if decision.errors:
        return None, '; '.join(decision.errors)
    return {'cache': decision.final['cache'], 'io': decision.final['io'], 'baseline': False}, ''
