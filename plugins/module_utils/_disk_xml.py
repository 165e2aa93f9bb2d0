# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Reading ``<disk>`` elements of domain XML: source, settings, the DiskInfo the policy decides on. Pure.

Every module that looks at disks (tuning, audit, image safety checks, benchmarks) reads them here,
so a disk means the same thing to all of them.
"""

from __future__ import annotations

from ._disk_policy import SETTINGS, DiskInfo


def host_path(path):
    """The file a path in domain XML names on the host. libvirt accepts a relative path and QEMU, started
    by libvirtd (whose working directory is ``/``), opens it relative to ``/``; the modules' own working
    directory (a temporary directory of Ansible's) means nothing, so a relative path is read from ``/``."""
    if path and not path.startswith('/'):
        return '/' + path
    return path


def disk_source(disk, volume_paths=None):
    """(source type, local path or None, network protocol or None) of a ``<disk>`` element; a relative
    path is made absolute as QEMU under libvirt reads it (``host_path``)."""
    source_type = disk.get('type', 'file')
    source = disk.find('source')
    if source is None:
        return source_type, None, None
    if source_type == 'file':
        return source_type, host_path(source.get('file')) or None, None
    if source_type == 'block':
        return source_type, host_path(source.get('dev')) or None, None
    if source_type == 'volume':
        key = (source.get('pool'), source.get('volume'))
        return source_type, (volume_paths or {}).get(key), None
    if source_type == 'network':
        return source_type, None, source.get('protocol')
    return source_type, None, None


def declared_format(disk):
    """The image format the domain declares (``<driver type>``), or None when it declares none."""
    driver = disk.find('driver')
    return (driver.get('type') or None) if driver is not None else None


def local_source_paths(xml_root, volume_paths=None):
    """Every local path the domain's hard disks use, in document order, each once."""
    paths = []
    for disk in xml_root.findall('devices/disk'):
        if disk.get('device', 'disk') == 'disk':
            _type, path, _proto = disk_source(disk, volume_paths)
            if path and path not in paths:
                paths.append(path)
    return paths


def local_source_formats(xml_root, volume_paths=None):
    """{local path: declared format or None} of the domain's hard disks, for the storage probe (which
    opens each file as the format QEMU will, never as its bytes suggest)."""
    found = {}
    for disk in xml_root.findall('devices/disk'):
        if disk.get('device', 'disk') == 'disk':
            _type, path, _proto = disk_source(disk, volume_paths)
            if path and path not in found:
                found[path] = declared_format(disk)
    return found


def volume_sources(xml_root):
    """(pool, volume) of every ``<disk type='volume'>``, to resolve through libvirt."""
    return [(s.get('pool'), s.get('volume')) for s in xml_root.findall("devices/disk[@type='volume']/source")
            if s.get('pool') and s.get('volume')]


def current_settings(disk):
    """{setting: value or None} of the driver attributes the policy owns."""
    driver = disk.find('driver')
    return {key: (driver.get(key) if driver is not None else None) for key in SETTINGS}


def settings_report(disk):
    """The owned settings plus bus and target: what a result shows before and after a plan."""
    target = disk.find('target')
    report = current_settings(disk)
    report['bus'] = target.get('bus') if target is not None else None
    report['target'] = target.get('dev') if target is not None else None
    return report


def disk_iothread(disk, devices):
    """The iothread a disk's I/O runs in: its own (virtio-blk) or its virtio-scsi controller's, or None."""
    target = disk.find('target')
    bus = target.get('bus') if target is not None else None
    if bus == 'virtio':
        driver = disk.find('driver')
        return driver.get('iothread') if driver is not None else None
    if bus == 'scsi' and devices is not None:
        address = disk.find('address')
        index = address.get('controller', '0') if address is not None and address.get('type') == 'drive' else '0'
        for ctrl in devices.findall('controller'):
            if ctrl.get('type') == 'scsi' and ctrl.get('index', '0') == index and ctrl.get('model') == 'virtio-scsi':
                driver = ctrl.find('driver')
                return driver.get('iothread') if driver is not None else None
    return None


def disk_info(disk, volume_paths=None, devices=None):
    """The DiskInfo that ``decide_disk`` and the rule table read. ``devices``: the domain's
    ``<devices>``, to find the iothread of a virtio-scsi disk's controller."""
    target = disk.find('target')
    driver = disk.find('driver')
    source_type, path, protocol = disk_source(disk, volume_paths)
    return DiskInfo(
        target=target.get('dev', '?') if target is not None else '?',
        bus=target.get('bus', '') if target is not None else '',
        device=disk.get('device', 'disk'), source_type=source_type, path=path, protocol=protocol,
        driver_name=driver.get('name') if driver is not None else None,
        image_format=declared_format(disk),
        readonly=disk.find('readonly') is not None, shareable=disk.find('shareable') is not None,
        iothread=disk_iothread(disk, devices), current=current_settings(disk))


def source_label(disk, info):
    """A disk's source as a result shows it: the path, or ``protocol:name`` of a network disk."""
    if info.path:
        return info.path
    if info.protocol:
        return '%s:%s' % (info.protocol, disk.find('source').get('name', ''))
    return None


def boot_disks(root, disks):
    """Disks the guest may boot from: those with a boot order, else the first hard disk."""
    ordered = [d for d in disks if d.find('boot') is not None and d.get('device', 'disk') == 'disk']
    if ordered:
        return ordered
    if root.find('os/boot') is not None and root.find("os/boot[@dev='hd']") is None:
        return []
    hard = [d for d in disks if d.get('device', 'disk') == 'disk']
    return hard[:1]
