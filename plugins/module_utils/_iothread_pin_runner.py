# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""iothread_pin's flow: read every domain of the host, allocate CPUs host-wide (pure), plan each
domain's XML (pure), define the changed ones, then pin running domains live."""

from __future__ import annotations

from ._cpuset import parse_cpuset
from ._cputune_xml import CpuTune, current_iothreads, current_pins, iothread_users, memory_node, \
    plan_cputune, plan_live_pins
from ._backup import DEFAULT_BACKUP_DIR
from ._define import define_plans
from ._define_check import DEFINE_CHECK_ARGUMENT_SPEC, check_plans
from ._domain_plan import diff_entry
from ._domain_xml import parse_domain, vcpu_count
from ._errors import PlanError
from ._libvirt import LIBVIRT_ARGUMENT_SPEC, LibvirtClient, lock_subject
from ._lock import LOCK_ARGUMENT_SPEC, HostLock
from ._module import validated_overrides
from ._pinning import DomainNeed, PinPolicy, allocate
from ._result_detail import RESULT_DETAIL_ARGUMENT_SPEC, shape_entries
from ._selection import SELECTION_ARGUMENT_SPEC, matches, select_with_overrides, still_defined
from ._topology import topology_from_capabilities

PIN_KEYS = ('vcpu_pinning', 'emulator_pinning', 'iothread_pinning')
# No limit in libvirt; each iothread is a QEMU thread, and a typo such as 4000 must not plan 4000 of them.
MAX_IOTHREADS = 1024

# What an ``overrides`` entry may hold; validated like kvm_disk_tune's, before anything is planned.
OVERRIDE_SPEC = {
    'iothreads': {'type': 'str'},
    'disk_iothreads': {'type': 'dict'},
    'vcpu_pinning': {'type': 'str'},
    'emulator_pinning': {'type': 'str'},
    'iothread_pinning': {'type': 'str'},
    'skip': {'type': 'bool'},
}
# What result_detail=summary keeps of each domain entry.
SUMMARY_DOMAIN_KEYS = ('name', 'changed', 'active', 'restart_required', 'iothreads')


def argument_spec():
    spec = dict(LIBVIRT_ARGUMENT_SPEC)
    spec.update(SELECTION_ARGUMENT_SPEC)
    spec.update({
        'iothreads': {'type': 'str', 'default': 'auto'},
        'max_iothreads': {'type': 'int', 'default': 4},
        'disk_iothreads': {'type': 'dict', 'default': {}},
        'vcpu_pinning': {'type': 'str', 'default': 'none'},
        'emulator_pinning': {'type': 'str', 'default': 'none'},
        'iothread_pinning': {'type': 'str', 'default': 'none'},
        'pinning_mode': {'type': 'str', 'choices': ['dedicated', 'shared'], 'default': 'dedicated'},
        'smt': {'type': 'str', 'choices': ['share', 'avoid'], 'default': 'share'},
        'reserved_cpus': {'type': 'str'},
        'housekeeping_cpus': {'type': 'str'},
        'numatune': {'type': 'str', 'choices': ['none', 'preferred', 'strict'], 'default': 'none'},
        'live': {'type': 'bool', 'default': True},
        'fail_on_unplaced': {'type': 'bool', 'default': False},
        'overrides': {'type': 'dict', 'default': {}},
        'backup_dir': {'type': 'path', 'default': DEFAULT_BACKUP_DIR},
    })
    spec.update(LOCK_ARGUMENT_SPEC)
    spec.update(DEFINE_CHECK_ARGUMENT_SPEC)
    spec.update(RESULT_DETAIL_ARGUMENT_SPEC)
    return spec


def checked_iothreads(value, where):
    """'auto', 'keep' or a number of iothreads from 0 to MAX_IOTHREADS; PlanError naming ``where``."""
    if value in (None, 'auto', 'keep'):
        return value
    try:
        number = int(str(value).strip())
    except ValueError:
        number = -1
    if not 0 <= number <= MAX_IOTHREADS:
        raise PlanError("%siothreads must be a number from 0 to %d, 'auto' or 'keep', not '%s'"
                        % (where, MAX_IOTHREADS, value))
    return number


def checked_disk_iothreads(value, where):
    """{target dev: iothread number >= 1}; PlanError naming ``where`` and the entry."""
    result = {}
    for target, number in (value or {}).items():
        try:
            parsed = int(str(number).strip()) if not isinstance(number, bool) else 0
        except ValueError:
            parsed = 0
        if not 1 <= parsed <= MAX_IOTHREADS:
            raise PlanError("%sdisk_iothreads: %s must map to an iothread number from 1 to %d, not '%s'"
                            % (where, target, MAX_IOTHREADS, number))
        result[str(target)] = parsed
    return result


def _iothread_count(value, root, cap):
    if value in (None, 'keep'):
        return None
    if value == 'auto':
        users = len(iothread_users(root))
        return min(users, cap) if users else None
    return value


class IothreadPinRun:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.known = frozenset()
        # Every value is checked here, before the lock is taken and anything is read: a bad one fails
        # the run naming it, never libvirt half-way through the defines.
        self.overrides = validated_overrides(self.params['overrides'], OVERRIDE_SPEC)
        checked_iothreads(self.params['iothreads'], '')
        checked_disk_iothreads(self.params['disk_iothreads'], '')
        for pattern, entry in self.overrides.items():
            where = "overrides['%s']: " % pattern
            checked_iothreads(entry.get('iothreads'), where)
            checked_disk_iothreads(entry.get('disk_iothreads'), where)
        if not 1 <= self.params['max_iothreads'] <= MAX_IOTHREADS:
            raise PlanError('max_iothreads must be from 1 to %d, not %d (it caps iothreads=auto; use iothreads=0 '
                            'for none)' % (MAX_IOTHREADS, self.params['max_iothreads']))

    def _setting(self, name, key):
        value = self.params[key]
        for pattern, entry in self.overrides.items():
            if matches(name, pattern, self.known) and entry.get(key) is not None:
                value = entry[key]
        return value

    def _explicit(self, topology, name, key):
        value = self._setting(name, key)
        if value in ('none', 'auto'):
            return value
        cpus = frozenset(parse_cpuset(value, '%s: %s' % (name, key)))
        topology.check_cpus(cpus, '%s: %s %s' % (name, key, value))
        return cpus

    def run(self):
        params = self.params
        with HostLock(lock_subject(params['uri']), params['lock_timeout']), LibvirtClient(params['uri']) as client:
            handles = client.persistent_domains()
            names = select_with_overrides(handles, params, self.overrides, where=' at %s' % params['uri'])
            self.known = frozenset(handles)
            names = [n for n in names if not any(matches(n, p, self.known) and e.get('skip')
                                                 for p, e in self.overrides.items())]
            _count, online = client.cpu_map()
            topology = topology_from_capabilities(client.capabilities_xml(), online)
            xmls = client.inactive_xmls(handles)
            names, vanished = still_defined(names, xmls)
            if vanished:
                self.module.warn(vanished)
            roots = {name: parse_domain(text, 'the XML of domain %s' % name) for name, text in xmls.items()}
            reserved = frozenset(parse_cpuset(params['reserved_cpus'], 'reserved_cpus')) if params['reserved_cpus'] \
                else frozenset()
            topology.check_cpus(reserved, 'reserved_cpus')
            housekeeping = None
            if params['housekeeping_cpus']:
                housekeeping = frozenset(parse_cpuset(params['housekeeping_cpus'], 'housekeeping_cpus'))
                topology.check_cpus(housekeeping, 'housekeeping_cpus')
            explicit = {name: {key: self._explicit(topology, name, key) for key in PIN_KEYS} for name in names}
            counts = {name: _iothread_count(checked_iothreads(self._setting(name, 'iothreads'), '%s: ' % name),
                                            roots[name], params['max_iothreads']) for name in names}
            placements, unplaced = {}, {}
            if any(v == 'auto' for pins in explicit.values() for v in pins.values()):
                needs = [DomainNeed(name, vcpus=vcpu_count(root) or 1,
                                    iothreads=counts.get(name) if counts.get(name) is not None
                                    else current_iothreads(root),
                                    memory_node=memory_node(root), current_vcpu_pins=current_pins(root),
                                    fixed=name not in names)
                         for name, root in roots.items()]
                policy = PinPolicy(mode=params['pinning_mode'], smt=params['smt'], reserved=reserved,
                                   housekeeping=housekeeping)
                placements, unplaced = allocate(topology, needs, policy)
                unplaced = {n: why for n, why in unplaced.items() if n in names}
            if unplaced:
                message = '; '.join('%s: %s' % kv for kv in sorted(unplaced.items()))
                if params['fail_on_unplaced']:
                    raise PlanError('could not place every domain, nothing was changed: %s' % message,
                                    unplaced=unplaced)
                self.module.warn('not pinned (they do not fit): %s' % message)
            plans, tunes = [], {}
            for name in names:
                tunes[name] = self._tune(name, roots[name], counts[name], explicit[name], placements.get(name))
                plans.append(plan_cputune(xmls[name], tunes[name], 'the XML of domain %s' % name))
            errors = [e for p in plans for e in p.errors] + self._unknown_disk_targets(names, roots)
            if errors:
                raise PlanError('; '.join(errors) + '. Nothing was changed.')
            # Check mode too: it reports what a real run would be refused.
            checked = check_plans(plans, params['define_check'], uri=params['uri'])
            active = client.active_names() & set(names)
            backups = []
            if not self.module.check_mode:
                backups = define_plans(client, handles, [p for p in plans if p.changed], params['backup_dir'],
                                       checked=checked, warn=self.module.warn)
            live = {}
            if params['live']:
                for name in sorted(active):
                    live[name] = self._apply_live(client, handles[name], tunes[name])
        return self._result(plans, tunes, placements, unplaced, active, live, backups, checked)

    def _tune(self, name, root, count, explicit, placement):
        def pick(key, auto_value):
            value = explicit[key]
            if value == 'none':
                return None
            if value == 'auto':
                return auto_value if placement is not None else None
            return value
        vcpus = vcpu_count(root) or 1
        threads = count if count is not None else current_iothreads(root)
        vcpu_value = pick('vcpu_pinning', placement.vcpus if placement else None)
        if isinstance(vcpu_value, frozenset):
            vcpu_value = {i: vcpu_value for i in range(vcpus)}
        io_value = pick('iothread_pinning', placement.emulator if placement else None)
        io_value = {i: io_value for i in range(1, threads + 1)} if io_value is not None else None
        numa = self.params['numatune']
        return CpuTune(iothreads=count,
                       disk_iothreads=checked_disk_iothreads(self._setting(name, 'disk_iothreads'), '%s: ' % name),
                       vcpus=vcpu_value, emulator=pick('emulator_pinning', placement.emulator if placement else None),
                       iothread_pins=io_value, numa_node=placement.node if placement else None,
                       numa_mode=None if numa == 'none' else numa)

    def _unknown_disk_targets(self, names, roots):
        """disk_iothreads naming a target that is a virtio disk of none of the domains it applies to is
        a typo: one error per such target."""
        wanted, found = set(), set()
        for name in names:
            targets = set(checked_disk_iothreads(self._setting(name, 'disk_iothreads'), ''))
            wanted |= targets
            found |= targets & {el.find('target').get('dev') for el in iothread_users(roots[name])
                                if el.tag == 'disk'}
        return ['disk_iothreads: %s is not a virtio disk of any selected domain (only virtio-blk disks run in an '
                'iothread)' % target for target in sorted(wanted - found)]

    def _apply_live(self, client, dom, tune):
        """Pins and iothreads a running domain can take now; returns the Changes (applied unless in check mode)."""
        changes = plan_live_pins(client.live_pins(dom), tune)
        if not self.module.check_mode:
            for change in changes:
                if change.setting == 'iothread':
                    client.add_iothread_live(dom, int(change.device.split()[1]))
                elif change.device == 'emulator':
                    client.pin_emulator_live(dom, tune.emulator)
                elif change.device.startswith('vcpu '):
                    vcpu = int(change.device.split()[1])
                    client.pin_vcpu_live(dom, vcpu, tune.vcpus[vcpu])
                else:
                    number = int(change.device.split()[1])
                    client.pin_iothread_live(dom, number, tune.iothread_pins[number])
        return changes

    def _result(self, plans, tunes, placements, unplaced, active, live, backups, checked):
        for plan in plans:
            for warning in plan.warnings:
                self.module.warn(warning)
        for warning in checked.warnings():
            self.module.warn(warning)
        domains = []
        for plan in plans:
            config_only = [c for c in plan.changes if not c.live]
            restart = plan.changed and plan.name in active and (bool(config_only) or not self.params['live'])
            placement = placements.get(plan.name)
            domains.append({'name': plan.name, 'changed': plan.changed or bool(live.get(plan.name)),
                            'active': plan.name in active, 'config_changes': plan.change_dicts(),
                            'live_changes': [c.as_dict() for c in live.get(plan.name, [])], 'restart_required': restart,
                            'placement': placement.as_dict() if placement else None,
                            'iothreads': tunes[plan.name].iothreads})
        result = {'changed': any(d['changed'] for d in domains),
                  'domains': shape_entries(domains, self.params['result_detail'], SUMMARY_DOMAIN_KEYS),
                  'restart_required': sorted(d['name'] for d in domains if d['restart_required']),
                  'unplaced': unplaced, 'backups': backups, 'define_check': checked.as_dict(),
                  'counts': {'domains': len(domains), 'changed': sum(1 for d in domains if d['changed']),
                             'restart_required': sum(1 for d in domains if d['restart_required']),
                             'placed': len(placements), 'unplaced': len(unplaced),
                             'config_changes': sum(len(d['config_changes']) for d in domains),
                             'live_changes': sum(len(d['live_changes']) for d in domains)}}
        if self.module._diff:
            result['diff'] = [diff_entry(p) for p in plans if p.changed]
        return result
