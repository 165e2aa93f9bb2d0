# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""kvm_io_bench mode=guest: boot a throwaway guest per disk configuration and run fio in it.

The I/O side: the guest image (``_guest_image``), scratch images (qemu-img, qemu-io), the transient
libvirt domain, its serial console, the page cache, the clock, cleanup. The decisions (candidates,
validity, order, figures) are in ``_guest_bench``; fio jobs and console parsing in ``_fio``; the
domain XML in ``_guest_xml``. Usable without Ansible: ``GuestBench(params, run_command, warn).run()``.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
import uuid

from ._disk_xml import disk_info
from ._domain_xml import parse_domain
from ._errors import KvmioError, PlanError
from ._fio import DEFAULT_WORKLOADS, WORKLOADS, encode_jobs, job_figures, job_lines, parse_console, regions
from ._guest_bench import (BASELINE, BENCH_CACHES, BUSES, GUEST_DEFAULTS, baseline, check_candidate,
                           collection_candidates, compare, dedupe, domain_candidate, matrix_candidates,
                           preset_candidates, run_order, summarise, user_candidate, verdict)
from ._guest_image import guest_image, module_process_runner, stage_guest_image, user_guest_image, verify_staged
from ._guest_xml import GuestDisk, GuestSpec, guest_domain_xml
from ._host_probe import host_support
from ._image_plan import human_size, parse_size
from ._libvirt import LibvirtClient, libvirt
from ._qemu_img import QemuImg
from ._storage_probe import StorageProber, filesystem_of, read_mounts
from ._trusted_files import trusted_directory

DOMAIN_PREFIX = 'kvmio-bench-'
DEFAULT_REGION = '512M'
MAX_CONSOLE = 16 << 20
TCG_BOOT_TIMEOUT = 120          # seconds from start to the guest's /init under TCG, at most
JOB_SLACK = 30                  # seconds a job may take beyond its runtime (fio setup, output over the console)
PREFILL_CHUNK = 64 << 20


class _Terminated(KvmioError):
    """SIGTERM arrived: unwind so that every ``finally`` removes what it created."""


def _on_sigterm(_signum, _frame):
    raise _Terminated('terminated by SIGTERM; the benchmark guest and scratch files were removed')


def _kvm_usable(client):
    if not os.access('/dev/kvm', os.R_OK | os.W_OK):
        return False, '/dev/kvm is missing or not accessible'
    if "<domain type='kvm'" not in client.capabilities_xml():
        return False, 'libvirt offers no kvm domain type on this host'
    return True, ''


class GuestBench:
    """One guest-mode run. ``params``: the module's parameters; ``run_command(argv, cwd=None)``;
    ``warn(text)``."""

    def __init__(self, params, run_command, warn, check_mode=False):
        self.params = params
        self.run_command = run_command
        self.warn = warn
        self.check_mode = check_mode
        self.qemu_img = QemuImg(run_command)
        self.workloads = list(params.get('workloads') or DEFAULT_WORKLOADS)
        self.region = parse_size(params.get('size') or DEFAULT_REGION, 'size')
        self.image = None
        self._dom = None
        self._starting = None         # (client, name) of the guest being started

    # --- checks -----------------------------------------------------------------------------

    def _validate(self):
        params = self.params
        unknown = [w for w in self.workloads if w not in WORKLOADS]
        if unknown:
            raise PlanError('workloads %s are not guest workloads (choose from %s)'
                            % (', '.join(unknown), ', '.join(WORKLOADS)))
        if len(set(self.workloads)) != len(self.workloads):
            raise PlanError('workloads lists a workload twice')
        for key, low in (('runtime', 1), ('repetitions', 1), ('vcpus', 1), ('memory', 256), ('kvm_boot_timeout', 1)):
            if params[key] < low:
                raise PlanError('%s must be %d or more, not %d' % (key, low, params[key]))
        if self.region % (1 << 20):
            raise PlanError('size must be a whole number of MiB in guest mode (it is each workload\'s region)')
        if bool(params['kernel']) != bool(params['initrd']):
            raise PlanError('kernel and initrd go together: give both (a pair kvm_io_bench built) or neither')
        if params['disk'] and not params['domain']:
            raise PlanError('disk names a disk of domain: set domain too')
        if not os.path.isdir(params['path']):
            raise PlanError('path %s is not a directory (name the storage pool directory to measure)' % params['path'])

    def _check_space(self):
        path = self.params['path']
        needed = self.region * len(self.workloads) + (256 << 20)     # one image at a time, guest copies, slack
        usage = shutil.disk_usage(path)
        if usage.total == 0:
            self.warn('%s reports no capacity (ramfs?); free space was not checked' % path)
        elif usage.free < needed:
            raise PlanError('only %s free in %s; the guest benchmark needs %s (a %s scratch image and the guest); '
                            'nothing was written' % (human_size(usage.free), path, human_size(needed),
                                                     human_size(self.region * len(self.workloads))))
        return needed

    @staticmethod
    def _check_private(path):
        """The scratch images and the guest go into ``path`` by name (QEMU opens them by name), so it must
        be a directory only root or this user can change, as every directory above it (``_trusted_files``):
        in one others can write, a user could rename the run's directory and plant links in its place."""
        try:
            trusted_directory(path, 'path %s (mode=guest writes its scratch images there by name)' % path)
        except KvmioError as err:
            raise PlanError('%s; nothing was written' % err.msg, **err.details) from None

    # --- candidates ---------------------------------------------------------------------------

    def _domain_candidate(self, client):
        params = self.params
        dom = client.lookup(params['domain'])
        root = parse_domain(client.inactive_xml(dom), 'the XML of domain %s' % params['domain'])
        disks = [d for d in root.findall('devices/disk') if d.get('device', 'disk') == 'disk']
        infos = [disk_info(d, devices=root.find('devices')) for d in disks]
        if params['disk']:
            infos = [i for i in infos if params['disk'] in (i.target, i.path)]
        if len(infos) != 1:
            what = "disk '%s'" % params['disk'] if params['disk'] else 'a disk (it has %d: set disk)' % len(disks)
            raise PlanError('domain %s has no single %s to measure' % (params['domain'], what))
        return domain_candidate(infos[0])

    def _candidates(self, client, storage, host, guest_buses, probe_path):
        params = self.params
        plan, notes = collection_candidates(storage, host, probe_path)
        found = [baseline()] + plan if params['references'] else []
        if params['domain']:
            found.append(self._domain_candidate(client))
        if params['alternatives'] == 'matrix':
            found += matrix_candidates(params['caches'] or list(BENCH_CACHES[1:]), params['ios'], params['buses'],
                                       params['iothreads'], params['preallocations'] or ['off', 'metadata'])
        else:
            found += preset_candidates(params['alternatives'], plan[0])
        found += [user_candidate(i, entry) for i, entry in enumerate(params['candidates'])]
        if not found:
            raise PlanError('nothing to measure: with references=false, name a domain or give candidates')
        unique, dupes = dedupe(found)
        runnable, skipped = [], []
        for candidate in unique:
            why = check_candidate(candidate, storage, host, guest_buses, probe_path) if storage is not None else ''
            if why:
                skipped.append('%s: %s' % (candidate.name, why))
            else:
                runnable.append(candidate)
        return runnable, skipped, dupes + notes

    # --- one run ----------------------------------------------------------------------------

    def _make_image(self, path, candidate):
        options = {}
        if candidate.preallocation != 'off':
            options['preallocation'] = candidate.preallocation
        self.qemu_img.create(path, str(self.region * len(self.workloads)), candidate.image_format, options)
        for name, (offset, size) in regions(self.workloads, self.region).items():
            if not WORKLOADS[name].prefill:
                continue
            commands = []
            for start in range(offset, offset + size, PREFILL_CHUNK):
                commands += ['-c', 'write -q -P 90 %d %d' % (start, min(PREFILL_CHUNK, offset + size - start))]
            rc, out, err = self.run_command(['qemu-io', '-f', candidate.image_format] + commands + ['--', path])
            text = ('%s %s' % (out, err)).lower()
            if rc != 0 or 'error' in text or 'failed' in text:
                raise KvmioError('qemu-io could not write the read region of %s: %s' % (path, (err or out).strip()))
        return self._evict(path)

    @staticmethod
    def _evict(path):
        """Writes the image out and drops its pages from the host page cache, so each run starts cold.
        Only this file's pages: the cache of the host's real guests is left alone."""
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError as err:
            return 'not done (%s)' % err.strerror
        finally:
            os.close(fd)
        return 'done'

    def _boot(self, client, candidate, image, kernel, initrd, console, domain_type):
        jobs = job_lines(self.workloads, self.region, self.params['runtime'])
        spec = GuestSpec(name='%s%s' % (DOMAIN_PREFIX, uuid.uuid4().hex[:12]), kernel=kernel, initrd=initrd,
                         cmdline='console=ttyS0 quiet panic=-1 kvmio.bus=%s kvmio.jobs=%s'
                         % (candidate.bus, encode_jobs(jobs)),
                         console_log=console, domain_type=domain_type, vcpus=self.params['vcpus'],
                         memory_mib=self.params['memory'],
                         disk=GuestDisk(path=image, image_format=candidate.image_format, bus=candidate.bus,
                                        cache=candidate.cache, io=candidate.io, iothread=candidate.iothread))
        # The name first: a SIGTERM that lands while createXML runs (the domain exists, the call has not
        # returned) still lets _destroy find the guest.
        self._starting = (client, spec.name)
        self._dom = client.create_transient(guest_domain_xml(spec), spec.name)
        return spec.name

    def _wait(self, console, boot_timeout):
        """Reads the console until the guest is done or gone, or a time limit passes.
        Returns (console text, how it ended, {marker: seconds after start when first seen})."""
        started = time.monotonic()
        limit = boot_timeout + len(self.workloads) * (self.params['runtime'] + JOB_SLACK)
        data, seen = b'', {}
        with open(console, 'rb') as handle:
            while True:
                chunk = handle.read(MAX_CONSOLE - len(data))
                data += chunk
                elapsed = time.monotonic() - started
                for marker, key in ((b'', 'first_output'), (b'KVMIO-BOOTED', 'init'), (b'KVMIO-FIO', 'fio')):
                    if key not in seen and data and marker in data:
                        seen[key] = round(elapsed, 1)
                text = data.decode('utf-8', 'replace')
                if len(data) >= MAX_CONSOLE:
                    return text, 'the guest printed more than %d bytes' % MAX_CONSOLE, seen
                if b'KVMIO-DONE' in data:
                    return text, 'done', seen
                if 'init' not in seen and elapsed > boot_timeout:
                    return text, 'no boot', seen
                if elapsed > limit:
                    return text, 'the guest did not finish within %d s' % limit, seen
                if not self._alive():
                    data += handle.read(MAX_CONSOLE - len(data))
                    ended = 'done' if b'KVMIO-DONE' in data else 'the guest stopped before it finished'
                    return data.decode('utf-8', 'replace'), ended, seen
                if not chunk:
                    time.sleep(0.2)

    def _alive(self):
        try:
            return bool(self._dom.isActive())
        except libvirt.libvirtError:
            return False          # a transient domain is gone once it powers off

    def _destroy(self):
        dom, self._dom = self._dom, None
        starting, self._starting = self._starting, None
        if dom is None and starting is not None:
            client, name = starting
            try:
                dom = client.conn.lookupByName(name)
            except libvirt.libvirtError:
                return            # never started
        if dom is None:
            return
        try:
            if dom.isActive():
                dom.destroy()
        except libvirt.libvirtError:
            pass

    def _run_one(self, client, candidate, run_dir, staged, domain_type, boot_timeout):
        verify_staged(self.image, staged)
        image = os.path.join(run_dir, 'scratch.%s' % candidate.image_format)
        console = os.path.join(run_dir, 'console.log')
        began = time.monotonic()
        try:
            evicted = self._make_image(image, candidate)
            os.close(os.open(console, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
            prepared = time.monotonic()
            name = self._boot(client, candidate, image, staged[0], staged[1], console, domain_type)
            started = time.monotonic()
            text, ended, seen = self._wait(console, boot_timeout)
        finally:
            self._destroy()
            for path in (image, console):
                if os.path.lexists(path):
                    os.unlink(path)
        report = parse_console(text)
        figures = {w: job_figures(w, report.jobs[w]) if w in report.jobs else 'not run: %s' % ended
                   for w in self.workloads}
        run = {'candidate': candidate.name, 'domain': name, 'accelerator': 'kvm' if domain_type == 'kvm' else 'tcg',
               'seconds': round(time.monotonic() - began, 1), 'ended': ended, 'cache_drop': evicted,
               'phases': {'image': round(prepared - began, 1), 'start': round(started - prepared, 1),
                          'guest': round(time.monotonic() - started, 1)},
               'since_start': seen,
               'boot_seconds': report.booted_at, 'fio_start_seconds': report.fio_at, 'guest_disk': report.disk,
               'figures': figures, 'notes': report.notes + report.errors}
        if ended not in ('done', 'no boot'):
            run['console_tail'] = text[-2000:]
        return run, ended

    # --- the whole run ------------------------------------------------------------------------

    def _image(self):
        params = self.params
        if params['kernel']:
            return user_guest_image(params['kernel'], params['initrd'])
        return guest_image(params['cache_dir'], self.run_command, params['kernel_package'],
                           refresh=params['refresh_guest'])

    def run(self):
        self._validate()
        params = self.params
        _mp, fstype = filesystem_of(os.path.realpath(params['path']), read_mounts())
        # No 'path' key: AnsibleModule.exit_json would add that path's stat (mode, owner, size) to the result.
        result = {'changed': False, 'mode': 'guest', 'filesystem': fstype,
                  'workloads': self.workloads, 'skipped': [], 'notes': [], 'runs': []}
        if self.check_mode:
            return self._check_mode_result(result)
        self._check_space()
        self._check_private(params['path'])
        try:
            previous = signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:          # not the main thread: no handler, the finally blocks still clean up
            previous = None
        try:
            with LibvirtClient(params['uri']) as client:
                return self._run(client, result)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _check_mode_result(self, result):
        params = self.params
        with LibvirtClient(params['uri']) as client:
            host = host_support(client.hypervisor_version(), client.libvirt_version())
            candidates, skipped, notes = self._candidates(client, None, host, BUSES, params['path'])
        result['candidates'] = [c.describe() for c in candidates]
        result['skipped'] = skipped + ['check mode: %d configurations x %d workloads not run (storage not probed)'
                                       % (len(candidates), len(self.workloads))]
        result['notes'] = notes
        return result

    def _run(self, client, result):
        params = self.params
        image = self.image = self._image()
        result['changed'] = image.source == 'built'
        result['guest'] = image.as_dict()
        deadline = time.monotonic() + params['time_limit']
        run_dir = tempfile.mkdtemp(prefix='.kvmio-guest-', dir=params['path'])
        try:
            os.chmod(run_dir, 0o711)     # QEMU may run as another user (libvirt-qemu): it must reach the files
            staged = stage_guest_image(image, run_dir)
            probe = os.path.join(run_dir, 'probe')
            with open(probe, 'wb') as handle:
                handle.write(b'\0' * 4096)
            storage = StorageProber().facts(probe, 'raw')     # a plain file: nothing to follow
            os.unlink(probe)
            host = host_support(client.hypervisor_version(), client.libvirt_version())
            candidates, skipped, notes = self._candidates(client, storage, host, image.buses, probe)
            result.update(candidates=[c.describe() for c in candidates], odirect=storage.odirect)
            result['skipped'] += skipped
            result['notes'] += notes
            self._measure(client, candidates, run_dir, staged, deadline, result)
            measured = [r for r in result['runs'] if any(isinstance(f, dict) for f in r['figures'].values())]
            if result['runs'] and not measured:
                first = result['runs'][0]
                raise KvmioError('the benchmark guest measured nothing: %s (first run %s). Console: %s'
                                 % (first['ended'], first['candidate'], first.get('console_tail', '')[-800:]),
                                 runs=result['runs'])
        finally:
            self._destroy()
            shutil.rmtree(run_dir, ignore_errors=True)
        self._figures(candidates, result)
        return result

    def _accelerator(self, client):
        wanted = self.params['accelerator']
        if wanted == 'tcg':
            return 'qemu', 'tcg as requested'
        usable, why = _kvm_usable(client)
        if wanted == 'kvm' and not usable:
            raise PlanError('accelerator=kvm, but %s' % why)
        if not usable:
            return 'qemu', 'KVM is not available (%s): TCG' % why
        return 'kvm', ''

    def _measure(self, client, candidates, run_dir, staged, deadline, result):
        params = self.params
        domain_type, reason = self._accelerator(client)
        probing = domain_type == 'kvm' and params['accelerator'] == 'auto'
        for rep, candidate in run_order(candidates, params['repetitions']):
            if time.monotonic() > deadline:
                result['skipped'].append('%s (repetition %d): time_limit of %d s reached'
                                         % (candidate.name, rep + 1, params['time_limit']))
                continue
            boot_timeout = params['kvm_boot_timeout'] if domain_type == 'kvm' else TCG_BOOT_TIMEOUT
            run, ended = self._run_one(client, candidate, run_dir, staged, domain_type, boot_timeout)
            if ended == 'no boot' and probing:
                # Some hosts offer /dev/kvm on which a stock kernel hangs at boot (nested or paravirtual
                # KVM): give up on KVM and measure everything under TCG instead.
                domain_type = 'qemu'
                reason = ('KVM: the guest did not reach its init within %d s (a kernel that hangs under this '
                          "host's KVM); fell back to TCG" % params['kvm_boot_timeout'])
                run, ended = self._run_one(client, candidate, run_dir, staged, domain_type, TCG_BOOT_TIMEOUT)
            probing = False
            run['repetition'] = rep + 1
            result['runs'].append(run)
            if ended != 'done':
                result['notes'].append('%s (repetition %d): %s' % (candidate.name, rep + 1, ended))
        accel = 'kvm' if domain_type == 'kvm' else 'tcg'
        result['accelerator'] = {'used': accel, 'requested': params['accelerator'], 'reason': reason or 'KVM works'}
        result['measured'] = {
            'accelerator': accel, 'filesystem': result['filesystem'], 'odirect': result.get('odirect'),
            'cache_drop': 'scratch image written out and evicted from the host page cache before each boot '
                          '(posix_fadvise DONTNEED; the host\'s other cached data is left alone)',
            'repetitions': params['repetitions'], 'order': 'interleaved (A B C A B C)',
            'runtime_seconds': params['runtime'], 'region_bytes': self.region, 'vcpus': params['vcpus'],
            'memory_mib': params['memory'],
            'image': 'a fresh image per run; each workload on its own region; reads of data written before boot',
            'fio': 'direct=1 on the raw guest disk, time_based'}
        if accel == 'tcg':
            result['measured']['caveat'] = (
                'TCG: the vCPUs are emulated, so CPU-bound paths look slower than under KVM; use these figures '
                'to rank I/O-bound configurations, not as absolute numbers')

    def _figures(self, candidates, result):
        table = summarise(candidates, result['runs'], self.workloads)
        fastest, best = compare(candidates, table, self.workloads)
        for entry in result.get('candidates', []):
            entry['results'] = table.get(entry['name'], {})
        result['baseline'] = BASELINE
        result['fastest'] = fastest
        if best:
            result['recommendation'] = best
        result['collection'] = verdict(table, fastest, ['collection', 'collection+iothread'], self.workloads)
        boots = [r['boot_seconds'] for r in result['runs'] if r.get('boot_seconds') is not None]
        fio = [r['fio_start_seconds'] for r in result['runs'] if r.get('fio_start_seconds') is not None]
        if boots:
            result['guest']['boot_seconds'] = sorted(boots)[len(boots) // 2]
        if fio:
            result['guest']['fio_start_seconds'] = sorted(fio)[len(fio) // 2]


class GuestBenchRun:
    """kvm_io_bench mode=guest as a module run: the module's parameters, runner and warnings."""

    def __init__(self, module):
        params = dict(module.params)
        for key, value in GUEST_DEFAULTS.items():
            if params.get(key) is None:
                params[key] = value
        self.bench = GuestBench(params, module_process_runner(module), module.warn, check_mode=module.check_mode)

    def run(self):
        return self.bench.run()
