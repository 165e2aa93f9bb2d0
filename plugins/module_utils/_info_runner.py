# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""kvm_io_info: read every domain, its disks, their storage and images, and report findings. Read-only."""

from __future__ import annotations

from ._cpuset import format_cpuset
from ._cputune_xml import current_iothreads, current_pins
from ._disk_xml import disk_info, volume_sources
from ._domain_xml import parse_domain
from ._errors import QemuImgError
from ._disk_policy import SEVERITIES, effective_settings
from ._findings import disk_findings, domain_findings, summarise
from ._host_probe import host_support
from ._image_plan import image_facts
from ._libvirt import LIBVIRT_ARGUMENT_SPEC, LibvirtClient
from ._qemu_img import QemuImg, module_runner
from ._selection import SELECTION_ARGUMENT_SPEC, select_names, still_defined
from ._storage_probe import StorageProber


def argument_spec():
    spec = dict(LIBVIRT_ARGUMENT_SPEC)
    spec.update(SELECTION_ARGUMENT_SPEC)
    spec.update({'probe_storage': {'type': 'bool', 'default': True},
                 'inspect_images': {'type': 'bool', 'default': True}})
    return spec


class InfoRun:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.qemu_img = QemuImg(module_runner(module))
        self._images = {}

    def _image(self, path):
        if path not in self._images:
            try:
                info = self.qemu_img.info(path)
                extents = self.qemu_img.map(path) if info.get('format') == 'qcow2' else None
                self._images[path] = image_facts(info, extents)
            except QemuImgError as err:
                self._images[path] = {'error': err.msg}
        return self._images[path]

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
        all_vcpu_pins = {n: current_pins(roots[n]) for n in roots}
        domains, findings = [], []
        for name in names:
            root = roots[name]
            disks = []
            for disk_el in root.findall('devices/disk'):
                info = disk_info(disk_el, volume_paths, root.find('devices'))
                storage = prober.facts(info.path) if (prober and info.path) else None
                image = self._image(info.path) if (params['inspect_images'] and storage is not None
                                                   and storage.kind in ('file', 'block')) else None
                found = disk_findings(name, info, storage, image, host)
                findings.extend(found)
                disks.append({'target': info.target, 'bus': info.bus, 'device': info.device, 'source': info.path,
                              'settings': info.current, 'effective': effective_settings(info, host=host),
                              'iothread': info.iothread,
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
