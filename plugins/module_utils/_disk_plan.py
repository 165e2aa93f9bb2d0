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

from ._bus_convert import CONVERTIBLE_FROM, MAX_SCSI_QUEUES, BusConversion, controllers_of_type, drive_controller, \
    move_blocker
from ._disk_policy import SETTINGS, DiskSettings, Guards, decide_disk, effective_settings
from ._disk_xml import boot_disks, disk_info, disk_source, settings_report, source_label
from ._domain_plan import Change, DomainPlan, untunable_reason
from ._domain_xml import domain_name, make_child, parse_domain, same_document, set_attr, to_text, vcpu_count
from ._selection import matches
from ._support import HostSupport


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
        # A scsi disk whose controller is not virtio-scsi moves; so does one whose controller element is
        # missing: libvirt would add an lsilogic one for it (and the next run would move the disk again).
        ctrl = controllers_of_type(devices, 'scsi').get(drive_controller(disk))
        return ctrl is None or ctrl.get('model') != 'virtio-scsi'
    return False


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
    untunable = untunable_reason(root)
    if untunable:
        plan.warnings.append('%s: %s' % (plan.name, untunable))
        return plan
    if devices is None:
        return plan
    disks = devices.findall('disk')
    boot = boot_disks(root, disks)
    requests = []       # (disk, settings before, requested settings, bus, skip, settings a disk rule set)
    known = frozenset(v for d in disks for v in (_target_dev(d), disk_source(d, volume_paths)[1]) if v)
    for disk in disks:
        _type, path, _proto = disk_source(disk, volume_paths)
        dev = _target_dev(disk)
        rules = [r for r in policy.disk_rules if r.matches(dev, path, known)]
        plan.matched_rules.update(r.match for r in rules)
        overrides = {}
        for rule in rules:
            overrides.update({k: v for k, v in rule.overrides.items() if v is not None})
        requests.append((disk, settings_report(disk), policy.settings.merged(overrides),
                         overrides.get('bus', policy.bus), bool(overrides.get('skip')),
                         frozenset(k for k in overrides if k in SETTINGS)))

    moves = {'scsi': [], 'virtio': []}
    for disk, before_report, _settings, bus, skip, _specific in requests:
        if skip or bus == 'keep' or not _needs_move(disk, bus, devices):
            continue
        label = '%s: disk %s' % (plan.name, before_report['target'])
        blocker = move_blocker(disk, bus)
        if blocker:
            plan.warnings.append('%s stays on bus %s: %s' % (label, before_report['bus'], blocker))
            continue
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
        queues = min(vcpu_count(root), MAX_SCSI_QUEUES) if vcpu_count(root) else None
    if policy.bus == 'scsi' or moves['scsi']:
        plan.changes.extend(BusConversion(root, queues).convert(moves))
    elif moves['virtio']:
        plan.changes.extend(BusConversion(root, None).convert(moves))

    for disk, before_report, settings, _bus, skip, specific in requests:
        info = disk_info(disk, volume_paths, devices)
        before_report['effective'] = effective_settings(info, before_report, host)
        report = {'target': info.target, 'device': info.device, 'source': source_label(disk, info),
                  'before': before_report, 'reasons': {}, 'skipped': ''}
        if skip:
            report['skipped'] = 'skip=true in a disks override'
        else:
            facts = storage.get(info.path) if (storage is not None and info.path) else None
            decision = decide_disk(info, settings, facts, host, policy.guards, specific)
            report['skipped'] = decision.skipped
            report['reasons'] = decision.reasons
            if not decision.skipped:
                plan.tuned[info.target] = frozenset(decision.decided)
            plan.errors.extend('%s: disk %s' % (plan.name, e) for e in decision.errors)
            plan.warnings.extend('%s: disk %s' % (plan.name, w) for w in decision.warnings)
            if decision.wanted and not decision.errors:
                _apply_driver(disk, decision.wanted)
                for key, value in decision.wanted.items():
                    plan.changes.append(Change(info.target, key, info.current.get(key), value,
                                               decision.reasons.get(key, '')))
        report['after'] = settings_report(disk)
        report['after']['effective'] = effective_settings(info, report['after'], host)
        plan.disks.append(report)

    if plan.errors:     # a plan that cannot be applied proposes nothing
        plan.changes = []
        return plan
    plan.after = to_text(root)
    plan.changed = not same_document(plan.after, before)
    return plan
