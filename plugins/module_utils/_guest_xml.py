# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""The domain XML of the throwaway benchmark guest: direct kernel boot, one scratch disk, a serial
console into a file, nothing else (no network, no display, no balloon). Pure: paths in, XML out.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._domain_xml import etree, require_lxml

# Guest device name and libvirt target bus of each candidate bus; IDE exists only on the i440fx
# machine ('pc'), the others are measured on q35 as virt-install creates new guests.
BUS_TARGETS = {'virtio': ('vda', 'virtio'), 'scsi': ('sda', 'scsi'), 'sata': ('sda', 'sata'), 'ide': ('hda', 'ide')}
BUS_MACHINES = {'ide': 'pc'}
DEFAULT_MACHINE = 'q35'


@dataclass(frozen=True)
class GuestDisk:
    """The scratch disk as the candidate configuration sets it (None: attribute not written)."""

    path: str
    image_format: str = 'qcow2'
    bus: str = 'virtio'
    cache: str | None = None
    io: str | None = None
    iothread: bool = False


@dataclass(frozen=True)
class GuestSpec:
    name: str
    kernel: str
    initrd: str
    cmdline: str
    console_log: str
    disk: GuestDisk
    domain_type: str = 'qemu'        # 'kvm' where KVM works, else TCG
    vcpus: int = 2
    memory_mib: int = 1024


def _sub(parent, tag, text=None, **attrs):
    child = etree.SubElement(parent, tag, {k.rstrip('_'): str(v) for k, v in attrs.items() if v is not None})
    if text is not None:
        child.text = str(text)
    return child


def guest_domain_xml(spec):
    """The transient domain's XML text."""
    require_lxml()
    disk = spec.disk
    if disk.bus not in BUS_TARGETS:
        raise ValueError("bus '%s' is not one of %s" % (disk.bus, ', '.join(sorted(BUS_TARGETS))))
    root = etree.Element('domain', type=spec.domain_type)
    _sub(root, 'name', spec.name)
    _sub(root, 'memory', spec.memory_mib, unit='MiB')
    _sub(root, 'vcpu', spec.vcpus)
    if disk.iothread:
        _sub(root, 'iothreads', 1)
    os_el = _sub(root, 'os')
    _sub(os_el, 'type', 'hvm', arch='x86_64', machine=BUS_MACHINES.get(disk.bus, DEFAULT_MACHINE))
    _sub(os_el, 'kernel', spec.kernel)
    _sub(os_el, 'initrd', spec.initrd)
    _sub(os_el, 'cmdline', spec.cmdline)
    features = _sub(root, 'features')
    _sub(features, 'acpi')
    _sub(root, 'clock', offset='utc')
    for event in ('on_poweroff', 'on_reboot', 'on_crash'):
        _sub(root, event, 'destroy')
    devices = _sub(root, 'devices')
    dev, bus = BUS_TARGETS[disk.bus]
    disk_el = _sub(devices, 'disk', type='file', device='disk')
    # An iothread is a virtio-blk attribute; for virtio-scsi it belongs to the controller.
    _sub(disk_el, 'driver', name='qemu', type=disk.image_format, cache=disk.cache, io=disk.io,
         iothread=1 if disk.iothread and disk.bus == 'virtio' else None)
    _sub(disk_el, 'source', file=disk.path)
    _sub(disk_el, 'target', dev=dev, bus=bus)
    if disk.bus == 'scsi':
        controller = _sub(devices, 'controller', type='scsi', index=0, model='virtio-scsi')
        if disk.iothread:
            _sub(controller, 'driver', iothread=1)
    _sub(devices, 'controller', type='usb', model='none')
    serial = _sub(devices, 'serial', type='file')
    _sub(serial, 'source', path=spec.console_log)
    _sub(serial, 'target', port=0)
    _sub(devices, 'memballoon', model='none')
    return etree.tostring(root, encoding='unicode', pretty_print=True)
