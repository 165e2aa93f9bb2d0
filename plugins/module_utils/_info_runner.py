# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""kvm_io_info: read every domain, its disks, their storage and images, and report findings. Read-only."""

from __future__ import annotations

import os

from ._cpuset import format_cpuset
from ._cputune_xml import current_iothreads, current_pins
from ._disk_xml import disk_info, volume_sources
from ._domain_xml import parse_domain
from ._errors import KvmioError, PlanError, QemuImgError
from ._disk_policy import SEVERITIES, disk_kind_skip_reason, effective_settings
from ._findings import disk_findings, domain_findings, summarise
from ._host_probe import host_support
from ._image_chain import image_node, json_spec, kind_of, open_file
from ._image_plan import image_facts
from ._libvirt import LIBVIRT_ARGUMENT_SPEC, LibvirtClient
from ._live_apply import READ_QEMU_CHOICES, running_disks
from ._live_plan import driver_settings, live_findings
from ._qemu_img import QemuImg, module_runner
from ._selection import SELECTION_ARGUMENT_SPEC, select_names, still_defined
from ._storage_probe import DEFAULT_FORMAT, StorageProber

# Seconds one qemu-img read may take: an image on a hung NFS server must not hang the whole audit.
QEMU_IMG_TIMEOUT = 30
# Formats handed to qemu-img -f (libvirt's names; libvirt opens an 'iso' as raw). Others are not inspected.
INSPECTED_FORMATS = {'raw': 'raw', 'iso': 'raw', 'qcow2': 'qcow2', 'qed': 'qed', 'vmdk': 'vmdk', 'vdi': 'vdi',
                     'vpc': 'vpc', 'vhdx': 'vhdx', 'luks': 'luks'}


def argument_spec():
    spec = dict(LIBVIRT_ARGUMENT_SPEC)
    spec.update(SELECTION_ARGUMENT_SPEC)
    spec.update({'probe_storage': {'type': 'bool', 'default': True},
                 'inspect_images': {'type': 'bool', 'default': True},
                 'read_qemu': {'type': 'str', 'choices': list(READ_QEMU_CHOICES), 'default': 'auto'}})
    return spec


class InfoRun:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.qemu_img = QemuImg(module_runner(module), timeout=QEMU_IMG_TIMEOUT)
        self._images = {}

    def _image(self, path, declared, prober):
        """qemu-img facts of ``path`` opened as the format its domain declares (``declared``; None:
        raw, as libvirt does), never as the bytes suggest; a qcow2's backing file is not opened.

        The file is opened once here (a regular file or block device only, bounded in time like the
        probe), and qemu-img reads that descriptor (``/dev/fd/N``), not the name: a name swapped for a
        FIFO or a device after the probe looked at it is never opened."""
        key = (path, declared or DEFAULT_FORMAT)
        if key not in self._images:
            fmt = INSPECTED_FORMATS.get(key[1])
            if fmt is None:
                self._images[key] = {'error': 'format %s is not inspected' % key[1]}
                return self._images[key]
            try:
                done, opened = prober.reads.call(path, open_file, path)
            except PlanError as err:
                self._images[key] = {'error': err.msg}
                return self._images[key]
            except OSError as err:
                self._images[key] = {'error': 'cannot open %s: %s' % (path, err.strerror)}
                return self._images[key]
            if not done:
                self._images[key] = {'error': prober.reads.why(path, opened)}
                return self._images[key]
            fd, st = opened
            try:
                node = image_node(fmt, '/dev/fd/%d' % fd, kind_of(st.st_mode) == 'block', backing=Ellipsis)
                info = self.qemu_img.info_spec(json_spec(node), path, [fd])
                extents = None
                if fmt == 'qcow2':
                    node['backing'] = None
                    extents = self.qemu_img.map_spec(json_spec(node), path, [fd])
                self._images[key] = image_facts(info, extents)
            except QemuImgError as err:
                self._images[key] = {'error': err.msg}
            finally:
                os.close(fd)
        return self._images[key]

    def _running(self, client, dom):
        """{target: (live XML settings, RunningDisk)} of a running domain; {} when it stopped meanwhile."""
        try:
            return running_disks(client, dom, self.params['read_qemu'])[1]
        except KvmioError as err:
            self.module.warn('%s: cannot read what its QEMU runs: %s' % (dom.name(), err.msg))
            return {}

    def run(self):
        params = self.params
        prober = StorageProber() if params['probe_storage'] else None
        with LibvirtClient(params['uri']) as client:
            handles = client.persistent_domains()
            names = select_names(handles, params['domains'], params['exclude'], where=' at %s' % params['uri'])
            roots = {n: parse_domain(xml, 'the XML of domain %s' % n) for n, xml in client.inactive_xmls(handles).items()}
            names, vanished = still_defined(names, roots)
            if vanished:
                self.module.warn(vanished)
            active = client.active_names()
            volume_paths = {}
            for name in names:
                for key in volume_sources(roots[name]):
                    volume_paths.setdefault(key, client.volume_path(*key))
            emulators = sorted({r.findtext('devices/emulator') or '' for r in roots.values()} - {''})
            host = host_support(client.hypervisor_version(), client.libvirt_version(),
                                emulators or ('/usr/bin/qemu-system-x86_64',))
            running = {name: self._running(client, handles[name]) for name in names if name in active}
        all_vcpu_pins = {n: current_pins(roots[n]) for n in roots}
        domains, findings = [], []
        for name in names:
            root = roots[name]
            disks = []
            for disk_el in root.findall('devices/disk'):
                info = disk_info(disk_el, volume_paths, root.find('devices'))
                storage = prober.facts(info.path, info.image_format) if (prober and info.path) else None
                image = self._image(info.path, info.image_format, prober) if (
                    params['inspect_images'] and storage is not None and storage.kind in ('file', 'block')) else None
                found = disk_findings(name, info, storage, image, host)
                live_settings, now = running.get(name, {}).get(info.target, (None, None))
                if now is not None and not disk_kind_skip_reason(info):
                    found.extend(live_findings(name, info.target, live_settings, now, driver_settings(disk_el)))
                findings.extend(found)
                disks.append({'target': info.target, 'bus': info.bus, 'device': info.device, 'source': info.path,
                              'settings': info.current, 'effective': effective_settings(info, host=host),
                              'iothread': info.iothread,
                              'live_settings': live_settings, 'running': now.as_dict() if now is not None else None,
                              'storage': storage.as_dict() if storage else None, 'image': image,
                              'findings': [f['code'] for f in found]})
            others = set()
            for other, pins in all_vcpu_pins.items():
                if other != name and pins:
                    others |= set().union(*pins.values())
            vcpu_pins = all_vcpu_pins[name]
            iothread_pins = current_pins(root, 'iothreadpin', 'iothread')
            found = domain_findings(name, vcpu_pins, iothread_pins, others)
            findings.extend(found)
            emulator = root.find('cputune/emulatorpin')
            domains.append({'name': name, 'active': name in active, 'iothreads': current_iothreads(root),
                            'vcpu_pins': {str(k): format_cpuset(v) for k, v in sorted(vcpu_pins.items())},
                            'emulator_pin': emulator.get('cpuset') if emulator is not None else None,
                            'iothread_pins': {str(k): format_cpuset(v) for k, v in sorted(iothread_pins.items())},
                            'disks': disks, 'findings': [f['code'] for f in found]})
        findings.sort(key=lambda f: (SEVERITIES.index(f['severity']), f['subject'], f['code']))
        return {'changed': False, 'domains': domains, 'findings': findings, 'summary': summarise(findings),
                'host': {'qemu': '.'.join(map(str, host.qemu)) if host.qemu else None,
                         'libvirt': '.'.join(map(str, host.libvirt)) if host.libvirt else None,
                         'io_uring': host.has('io_uring')}}
