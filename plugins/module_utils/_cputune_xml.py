# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Iothreads, their assignment to disks and controllers, and ``<cputune>``/``<numatune>`` pins
in domain XML. Pure: (domain XML, wanted) -> DomainPlan, as the disk-policy transform.

Owned nodes: ``<iothreads>``, ``<iothreadids>``, ``<cputune>`` children ``vcpupin``,
``emulatorpin`` and ``iothreadpin``, ``<numatune><memory>``, and the ``iothread`` attribute of
virtio-blk disk drivers and virtio-scsi controller drivers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._cpuset import format_cpuset, parse_cpuset
from ._domain_plan import Change, DomainPlan, untunable_reason
from ._domain_xml import domain_name, make_child, parse_domain, remove_child, same_document, set_attr, to_text, \
    vcpu_count
from ._errors import PlanError


@dataclass(frozen=True)
class CpuTune:
    """What to set; None leaves that part alone."""

    iothreads: int | None = None
    disk_iothreads: dict = field(default_factory=dict)     # target dev -> iothread id
    vcpus: dict | None = None                               # vcpu -> frozenset
    emulator: frozenset | None = None
    iothread_pins: dict | None = None                       # iothread id -> frozenset
    numa_node: int | None = None
    numa_mode: str | None = None                            # preferred | strict | None (leave)


def iothread_users(root):
    """Elements that can run in an iothread, in document order: virtio-blk disks, virtio-scsi controllers."""
    users = []
    for device in root.find('devices') if root.find('devices') is not None else ():
        if device.tag == 'disk':
            target = device.find('target')
            if target is not None and target.get('bus') == 'virtio' and device.get('device', 'disk') == 'disk':
                users.append(device)
        elif device.tag == 'controller' and device.get('type') == 'scsi' and device.get('model') == 'virtio-scsi':
            users.append(device)
    return users


def current_iothreads(root):
    text = (root.findtext('iothreads') or '').strip()
    return int(text) if text.isdigit() else 0


def current_pins(root, tag='vcpupin', key='vcpu'):
    """{number: frozenset of CPUs} of the ``<cputune>`` pins ``tag`` (vcpupin, iothreadpin), keyed by
    their ``key`` attribute. Pins that cannot be read are left out (libvirt would not store them)."""
    pins = {}
    for pin in root.findall('cputune/%s' % tag):
        try:
            pins[int(pin.get(key))] = frozenset(parse_cpuset(pin.get('cpuset')))
        except (TypeError, ValueError, PlanError):
            continue
    return pins


def memory_node(root):
    """The single NUMA node the domain's memory is bound to, or None."""
    memory = root.find('numatune/memory')
    if memory is None or not memory.get('nodeset'):
        return None
    nodes = parse_cpuset(memory.get('nodeset'), 'numatune nodeset')
    return next(iter(nodes)) if len(nodes) == 1 else None


def _label(el):
    if el.tag == 'disk':
        return el.find('target').get('dev')
    return 'controller scsi %s' % el.get('index', '0')


def _set_child_text(root, tag, text, after=('vcpu',)):
    el = root.find(tag)
    old = el.text.strip() if el is not None and el.text else None
    if el is None:
        index = None
        for anchor in after:
            found = root.find(anchor)
            if found is not None:
                index = list(root).index(found) + 1
                break
        el = make_child(root, tag, index=index)
    el.text = text
    return old


def _apply_iothreads(root, tune, plan):
    wanted = tune.iothreads
    old = current_iothreads(root)
    if wanted != old:
        _set_child_text(root, 'iothreads', str(wanted))
        plan.changes.append(Change('domain', 'iothreads', old or None, wanted, live=True))
    ids = root.find('iothreadids')
    if ids is not None:
        have = {int(i.get('id')): i for i in ids.findall('iothread') if (i.get('id') or '').isdigit()}
        for number, el in have.items():
            if number > wanted:
                remove_child(ids, el)
        for number in range(1, wanted + 1):
            if number not in have:
                make_child(ids, 'iothread', {'id': number})
    cputune = root.find('cputune')
    for pin in cputune.findall('iothreadpin') if cputune is not None else ():
        if (pin.get('iothread') or '').isdigit() and int(pin.get('iothread')) > wanted:
            _remove_stale_pin(cputune, pin, plan, 'iothread %s' % pin.get('iothread'))
    users = iothread_users(root)
    position = 0    # round robin over the users without a disk_iothreads choice, so none is left idle
    for el in users:
        target = el.find('target')
        dev = target.get('dev') if target is not None else None
        wanted_id = tune.disk_iothreads.get(dev) if dev else None
        if wanted_id is None:
            wanted_id = (position % wanted) + 1 if wanted else None
            position += 1
        driver = el.find('driver')
        before = driver.get('iothread') if driver is not None else None
        if wanted_id is None:
            if before is not None:      # iothreads: 0: nothing may name an iothread any more
                set_attr(driver, 'iothread', None)
                plan.changes.append(Change(_label(el), 'iothread', before, None))
            continue
        if driver is None:
            driver = make_child(el, 'driver', index=0)
        if set_attr(driver, 'iothread', wanted_id):
            plan.changes.append(Change(_label(el), 'iothread', before, str(wanted_id)))


def _cputune(root):
    el = root.find('cputune')
    if el is None:
        anchor = root.find('iothreadids') if root.find('iothreadids') is not None else root.find('iothreads')
        if anchor is None:
            anchor = root.find('vcpu')
        el = make_child(root, 'cputune', index=(list(root).index(anchor) + 1) if anchor is not None else None)
    return el


def _set_pin(cputune, tag, key, number, cpus, plan, device):
    wanted = format_cpuset(cpus)
    existing = [p for p in cputune.findall(tag) if key is None or p.get(key) == str(number)]
    before = existing[0].get('cpuset') if existing else None
    for extra in existing[1:]:
        remove_child(cputune, extra)
    if existing:
        pin = existing[0]
    else:
        attrs = {key: number} if key else {}
        attrs['cpuset'] = wanted
        pin = make_child(cputune, tag, attrs)
    if before is not None and before == wanted:
        return
    pin.set('cpuset', wanted)
    if before is None or parse_cpuset(before) != set(cpus):
        plan.changes.append(Change(device, 'pin', before, wanted, live=True))


def _remove_stale_pin(cputune, pin, plan, device):
    remove_child(cputune, pin)
    plan.changes.append(Change(device, 'pin', pin.get('cpuset'), None, 'the domain has no %s' % device))


def _apply_pins(root, tune, plan):
    if tune.vcpus is None and tune.emulator is None and tune.iothread_pins is None:
        return
    cputune = _cputune(root)
    if tune.vcpus is not None:
        count = vcpu_count(root) or 1      # libvirt's default is one vCPU
        for pin in cputune.findall('vcpupin'):
            if not (pin.get('vcpu') or '').isdigit() or int(pin.get('vcpu')) >= count:
                _remove_stale_pin(cputune, pin, plan, 'vcpu %s' % pin.get('vcpu'))
        for vcpu, cpus in sorted(tune.vcpus.items()):
            _set_pin(cputune, 'vcpupin', 'vcpu', vcpu, cpus, plan, 'vcpu %d' % vcpu)
    if tune.emulator is not None:
        _set_pin(cputune, 'emulatorpin', None, None, tune.emulator, plan, 'emulator')
    if tune.iothread_pins is not None:
        count = tune.iothreads if tune.iothreads is not None else current_iothreads(root)
        for pin in cputune.findall('iothreadpin'):
            if not (pin.get('iothread') or '').isdigit() or int(pin.get('iothread')) > count:
                _remove_stale_pin(cputune, pin, plan, 'iothread %s' % pin.get('iothread'))
        for number, cpus in sorted(tune.iothread_pins.items()):
            if number <= count:
                _set_pin(cputune, 'iothreadpin', 'iothread', number, cpus, plan, 'iothread %d' % number)


def _apply_numatune(root, tune, plan):
    if tune.numa_node is None or tune.numa_mode is None:
        return
    numatune = root.find('numatune')
    if numatune is None:
        numatune = make_child(root, 'numatune', index=list(root).index(root.find('cputune')) + 1
                              if root.find('cputune') is not None else None)
    memory = numatune.find('memory')
    before = None if memory is None else '%s:%s' % (memory.get('mode', 'strict'),
                                                    memory.get('nodeset') or memory.get('placement') or 'no nodeset')
    if memory is None:
        memory = make_child(numatune, 'memory', index=0)
    set_attr(memory, 'placement', None)
    set_attr(memory, 'mode', tune.numa_mode)
    set_attr(memory, 'nodeset', tune.numa_node)
    after = '%s:%s' % (tune.numa_mode, tune.numa_node)
    if before != after:
        plan.changes.append(Change('domain', 'numatune memory', before, after))


def plan_live_pins(current, tune):
    """The Changes a running domain takes now (no restart) to match ``tune``, in the order to apply them:
    missing iothreads first, then vCPU, emulator and iothread pins. ``current`` is what libvirt reports
    for the running domain: {'vcpus': {n: cpus}, 'emulator': cpus, 'iothreads': {id: cpus}}."""
    changes = []
    added = set()
    for number in range(1, (tune.iothreads or 0) + 1):
        if number not in current['iothreads']:
            added.add(number)
            changes.append(Change('iothread %d' % number, 'iothread', None, 'added', live=True))
    for vcpu, cpus in sorted((tune.vcpus or {}).items()):
        have = current['vcpus'].get(vcpu)
        if have is not None and have != cpus:
            changes.append(Change('vcpu %d' % vcpu, 'pin', format_cpuset(have), format_cpuset(cpus), live=True))
    if tune.emulator is not None and current['emulator'] != tune.emulator:
        changes.append(Change('emulator', 'pin', format_cpuset(current['emulator']), format_cpuset(tune.emulator),
                              live=True))
    for number, cpus in sorted((tune.iothread_pins or {}).items()):
        have = current['iothreads'].get(number)
        if (have is not None or number in added) and have != cpus:
            changes.append(Change('iothread %d' % number, 'pin', format_cpuset(have) if have else None,
                                  format_cpuset(cpus), live=True))
    return changes


def _valid_iothread_ids(root):
    ids = root.find('iothreadids')
    if ids is not None and len(ids):
        return {int(i.get('id')) for i in ids.findall('iothread') if (i.get('id') or '').isdigit()}
    return set(range(1, current_iothreads(root) + 1))


def _device_label(device):
    if device.tag == 'disk':
        target = device.find('target')
        return 'disk %s' % (target.get('dev') if target is not None else '(no target)')
    if device.tag == 'controller':
        return 'controller %s %s' % (device.get('type', '?'), device.get('index', '0'))
    return device.tag


def iothread_reference_errors(root, name):
    """Every reference to an iothread the domain does not have (a disk or controller driver, an
    iothreadpin): libvirt refuses such XML at define time, so the plan must refuse it first."""
    valid = _valid_iothread_ids(root)
    have = ('iothreads %s' % format_cpuset(valid)) if valid else 'no iothreads'
    errors = []
    devices = root.find('devices')
    for device in devices if devices is not None else ():
        for driver in device.findall('driver'):
            value = driver.get('iothread')
            if value is not None and (not value.isdigit() or int(value) not in valid):
                errors.append('%s: %s would use iothread %s, but the domain has %s'
                              % (name, _device_label(device), value, have))
    for pin in root.findall('cputune/iothreadpin'):
        value = pin.get('iothread') or ''
        if not value.isdigit() or int(value) not in valid:
            errors.append('%s: an iothreadpin names iothread %s, but the domain has %s' % (name, value, have))
    return errors


def plan_cputune(xml_text, tune, origin=None):
    """Plans ``tune`` for one domain; changes list items with their before/after values."""
    root = parse_domain(xml_text, origin or 'domain XML')
    before = to_text(root)
    plan = DomainPlan(name=domain_name(root), before=before, after=before, source=xml_text)
    untunable = untunable_reason(root)
    if untunable:
        plan.warnings.append('%s: %s' % (plan.name, untunable))
        return plan
    if tune.iothreads is not None:
        _apply_iothreads(root, tune, plan)
    _apply_pins(root, tune, plan)
    _apply_numatune(root, tune, plan)
    plan.after = to_text(root)
    plan.changed = not same_document(plan.after, before)
    if plan.changed:
        plan.errors.extend(iothread_reference_errors(root, plan.name))
    return plan
