# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""The disk-policy transform: (domain XML, policy, storage facts, host) -> (new XML, changes).

Pure: it never opens libvirt or a file. ``kvm_disk_tune`` feeds it libvirt's stored XML and
probe results, check mode stops after it, and unit tests run it on libvirt's own test corpus.
It edits only ``<disk>`` elements (target, address, driver cache/io/discard/detect_zeroes and
bus-specific settings) and ``<controller>`` elements that a bus change adds, updates or empties.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._bus_convert import CONVERTIBLE_FROM, BusConversion, _controllers, _drive_controller
from ._disk_policy import SETTINGS, DiskInfo, DiskSettings, Guards, decide_disk
from ._support import HostSupport
from ._domain_xml import (domain_name, domain_type, make_child, parse_domain, same_document, set_attr, to_text,
                          vcpu_count)
from ._selection import matches

TUNABLE_DOMAIN_TYPES = frozenset(('qemu', 'kvm'))


@dataclass(frozen=True)
class DiskRule:
    """A per-disk override: ``match`` is a target dev or source path, or a glob of either."""

    match: str
    overrides: dict = field(default_factory=dict)   # cache/io/discard/detect_zeroes/bus/skip

    def matches(self, target, path, known=frozenset()):
        """``known``: every target and path of the domain; a ``match`` equal to one of them names
        that disk only, even with glob characters (``/img/a[1].qcow2``), as ``_selection.matches``."""
        return any(value is not None and matches(value, self.match, known) for value in (target, path))


@dataclass(frozen=True)
class TunePolicy:
    settings: DiskSettings = DiskSettings()
    bus: str = 'keep'
    scsi_queues: object = None          # int, 'auto' (= vCPU count) or None
    convert_boot_disk: bool = False
    guards: Guards = Guards()
    disk_rules: tuple = ()


@dataclass
class DomainPlan:
    name: str
    before: str                         # the input, serialised as ``after`` is (for diffs)
    after: str
    source: str = ''                    # the input exactly as given (for backups)
    changed: bool = False
    disks: list = field(default_factory=list)
    changes: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    matched_rules: set = field(default_factory=set)


def disk_source(disk, volume_paths=None):
    """(source type, local path or None, network protocol or None) of a ``<disk>`` element."""
    source_type = disk.get('type', 'file')
    source = disk.find('source')
    if source is None:
        return source_type, None, None
    if source_type == 'file':
        return source_type, source.get('file') or None, None
    if source_type == 'block':
        return source_type, source.get('dev') or None, None
    if source_type == 'volume':
        key = (source.get('pool'), source.get('volume'))
        return source_type, (volume_paths or {}).get(key), None
    if source_type == 'network':
        return source_type, None, source.get('protocol')
    return source_type, None, None


def local_source_paths(xml_root, volume_paths=None):
    """Every local path the domain's tunable disks use, for the storage probe."""
    paths = []
    for disk in xml_root.findall('devices/disk'):
        if disk.get('device', 'disk') in ('disk',):
            _type, path, _proto = disk_source(disk, volume_paths)
            if path and path not in paths:
                paths.append(path)
    return paths


def declared_format(disk):
    """The image format a ``<disk>`` declares (``<driver type>``), or None when it declares none."""
    driver = disk.find('driver')
    return (driver.get('type') or None) if driver is not None else None


def local_source_formats(xml_root, volume_paths=None):
    """{local path: declared format or None} of the domain's tunable disks, for the storage probe
    (which must open each file as the format QEMU will, never as the bytes suggest)."""
    found = {}
    for disk in xml_root.findall('devices/disk'):
        if disk.get('device', 'disk') in ('disk',):
            _type, path, _proto = disk_source(disk, volume_paths)
            if path and path not in found:
                found[path] = declared_format(disk)
    return found


def volume_sources(xml_root):
    return [(s.get('pool'), s.get('volume')) for s in xml_root.findall("devices/disk[@type='volume']/source")
            if s.get('pool') and s.get('volume')]


def _current_settings(disk):
    driver = disk.find('driver')
    return {key: (driver.get(key) if driver is not None else None) for key in SETTINGS}


def disk_info(disk, volume_paths=None):
    target = disk.find('target')
    driver = disk.find('driver')
    source_type, path, protocol = disk_source(disk, volume_paths)
    return DiskInfo(
        target=target.get('dev', '?') if target is not None else '?',
        bus=target.get('bus', '') if target is not None else '',
        device=disk.get('device', 'disk'), source_type=source_type, path=path, protocol=protocol,
        driver_name=driver.get('name') if driver is not None else None,
        readonly=disk.find('readonly') is not None, shareable=disk.find('shareable') is not None,
        current=_current_settings(disk))


def boot_disks(root, disks):
    """Disks the guest may boot from: those with a boot order, else the first hard disk."""
    ordered = [d for d in disks if d.find('boot') is not None and d.get('device', 'disk') == 'disk']
    if ordered:
        return ordered
    if root.find('os/boot') is not None and root.find("os/boot[@dev='hd']") is None:
        return []
    hard = [d for d in disks if d.get('device', 'disk') == 'disk']
    return hard[:1]


def _target_dev(disk):
    target = disk.find('target')
    return target.get('dev') if target is not None else None


def _needs_move(disk, want_bus, devices):
    target = disk.find('target')
    if target is None or disk.get('device', 'disk') != 'disk' or not target.get('dev'):
        return False
    bus = target.get('bus')
    if bus in CONVERTIBLE_FROM.get(want_bus, ()):
        return True
    if want_bus == 'scsi' and bus == 'scsi':
        ctrl = _controllers(devices, 'scsi').get(_drive_controller(disk))
        return ctrl is not None and ctrl.get('model') != 'virtio-scsi'
    return False


def _settings_report(disk):
    target = disk.find('target')
    report = _current_settings(disk)
    report['bus'] = target.get('bus') if target is not None else None
    report['target'] = target.get('dev') if target is not None else None
    return report


def _apply_driver(disk, wanted):
    driver = disk.find('driver')
    if driver is None:
        driver = make_child(disk, 'driver', index=0)
    for key in SETTINGS:
        if key in wanted:
            set_attr(driver, key, wanted[key])


def plan_domain(xml_text, policy, storage=None, host=None, volume_paths=None, origin=None, root=None):
    """Plans ``policy`` for one domain. ``storage`` maps local paths to StorageFacts (None: not probed).
    ``root``: ``xml_text`` already parsed, which the plan then edits (saves a parse per domain)."""
    host = host or HostSupport()
    if root is None:
        root = parse_domain(xml_text, origin or 'domain XML')
    before = to_text(root)
    plan = DomainPlan(name=domain_name(root), before=before, after=before, source=xml_text)
    devices = root.find('devices')
    if domain_type(root) not in TUNABLE_DOMAIN_TYPES:
        plan.warnings.append("%s: domain type '%s' is not QEMU/KVM; left alone" % (plan.name, domain_type(root)))
        return plan
    if devices is None:
        return plan
    disks = devices.findall('disk')
    boot = boot_disks(root, disks)
    effective = []
    known = frozenset(v for d in disks for v in (_target_dev(d), disk_source(d, volume_paths)[1]) if v)
    for disk in disks:
        dev = _target_dev(disk)
        _type, path, _proto = disk_source(disk, volume_paths)
        rules = [r for r in policy.disk_rules if r.matches(dev, path, known)]
        plan.matched_rules.update(r.match for r in rules)
        overrides = {}
        for rule in rules:
            overrides.update({k: v for k, v in rule.overrides.items() if v is not None})
        effective.append((disk, _settings_report(disk), policy.settings.merged(overrides),
                          overrides.get('bus', policy.bus), bool(overrides.get('skip'))))

    moves = {'scsi': [], 'virtio': []}
    for disk, before_report, _settings, bus, skip in effective:
        if skip or bus == 'keep' or not _needs_move(disk, bus, devices):
            continue
        label = '%s: disk %s' % (plan.name, before_report['target'])
        if disk in boot and not policy.convert_boot_disk:
            driver = 'virtio-scsi' if bus == 'scsi' else 'virtio-blk'
            plan.warnings.append('%s is the boot disk and stays on bus %s: set convert_boot_disk=true once the '
                                 'guest has the %s driver' % (label, before_report['bus'], driver))
            continue
        if disk in boot:
            plan.warnings.append('%s is the boot disk and moves to bus %s: the guest must have that driver '
                                 'in its initramfs (Windows guests need it installed first) or it will not boot'
                                 % (label, bus))
        moves[bus].append(disk)
    queues = policy.scsi_queues
    if queues == 'auto':
        queues = vcpu_count(root)
    if policy.bus == 'scsi' or moves['scsi']:
        plan.changes.extend(BusConversion(root, queues).convert(moves))
    elif moves['virtio']:
        plan.changes.extend(BusConversion(root, None).convert(moves))

    for disk, before_report, settings, _bus, skip in effective:
        info = disk_info(disk, volume_paths)
        report = {'target': info.target, 'device': info.device, 'source': info.path or (
            '%s:%s' % (info.protocol, disk.find('source').get('name', '')) if info.protocol else None),
            'before': before_report, 'reasons': {}, 'skipped': ''}
        if skip:
            report['skipped'] = 'skip=true in a disks override'
        else:
            facts = storage.get(info.path) if (storage is not None and info.path) else None
            decision = decide_disk(info, settings, facts, host, policy.guards)
            report['skipped'] = decision.skipped
            report['reasons'] = decision.reasons
            plan.errors.extend('%s: disk %s' % (plan.name, e) for e in decision.errors)
            plan.warnings.extend('%s: disk %s' % (plan.name, w) for w in decision.warnings)
            if decision.wanted and not decision.errors:
                _apply_driver(disk, decision.wanted)
                for key, value in decision.wanted.items():
                    plan.changes.append({'disk': info.target, 'setting': key, 'before': info.current.get(key),
                                         'after': value, 'reason': decision.reasons.get(key, '')})
        report['after'] = _settings_report(disk)
        plan.disks.append(report)

    if plan.errors:     # a plan that cannot be applied proposes nothing
        plan.changes = []
        return plan
    plan.after = to_text(root)
    plan.changed = not same_document(plan.after, before)
    return plan
