# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""kvm_disk_tune's flow: read every domain once, plan all, validate all, then define.

spec -> read (libvirt or a file) -> plan (pure, ``_disk_plan``) -> apply (skipped in check
mode) -> result + diff. Errors are raised as KvmioError and turned into ``fail_json`` by the caller.
"""

from __future__ import annotations

import os

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ._backup import DEFAULT_BACKUP_DIR, write_atomic, write_backup
from ._define import define_plans
from ._disk_plan import DiskRule, TunePolicy, plan_domain
from ._disk_policy import BUS_CHOICES, CACHE_CHOICES, DETECT_ZEROES_CHOICES, DISCARD_CHOICES, IO_CHOICES, \
    DiskSettings, Guards
from ._disk_xml import local_source_paths, volume_sources
from ._domain_plan import diff_entry
from ._domain_xml import parse_domain
from ._errors import KvmioError, PlanError
from ._host_probe import host_support
from ._libvirt import LIBVIRT_ARGUMENT_SPEC, LibvirtClient
from ._lock import LOCK_ARGUMENT_SPEC, HostLock
from ._selection import SELECTION_ARGUMENT_SPEC, is_glob, matches, select_with_overrides, still_defined
from ._storage_probe import StorageProber

DISK_RULE_SPEC = {
    'match': {'type': 'str', 'required': True},
    'cache': {'type': 'str', 'choices': list(CACHE_CHOICES)},
    'io': {'type': 'str', 'choices': list(IO_CHOICES)},
    'discard': {'type': 'str', 'choices': list(DISCARD_CHOICES)},
    'detect_zeroes': {'type': 'str', 'choices': list(DETECT_ZEROES_CHOICES)},
    'bus': {'type': 'str', 'choices': list(BUS_CHOICES)},
    'skip': {'type': 'bool', 'default': False},
}

POLICY_SPEC = {
    'cache': {'type': 'str', 'choices': list(CACHE_CHOICES)},
    'io': {'type': 'str', 'choices': list(IO_CHOICES)},
    'discard': {'type': 'str', 'choices': list(DISCARD_CHOICES)},
    'detect_zeroes': {'type': 'str', 'choices': list(DETECT_ZEROES_CHOICES)},
    'bus': {'type': 'str', 'choices': list(BUS_CHOICES)},
    'scsi_queues': {'type': 'str'},
    'convert_boot_disk': {'type': 'bool'},
    'migratable': {'type': 'bool'},
    'disks': {'type': 'list', 'elements': 'dict', 'options': DISK_RULE_SPEC},
    'skip': {'type': 'bool'},
}


def argument_spec():
    spec = dict(LIBVIRT_ARGUMENT_SPEC)
    spec.update(SELECTION_ARGUMENT_SPEC)
    spec.update({
        'xml_path': {'type': 'path'},
        'cache': {'type': 'str', 'choices': list(CACHE_CHOICES), 'default': 'auto'},
        'io': {'type': 'str', 'choices': list(IO_CHOICES), 'default': 'auto'},
        'discard': {'type': 'str', 'choices': list(DISCARD_CHOICES)},
        'detect_zeroes': {'type': 'str', 'choices': list(DETECT_ZEROES_CHOICES)},
        'bus': {'type': 'str', 'choices': list(BUS_CHOICES), 'default': 'keep'},
        'scsi_queues': {'type': 'str'},
        'convert_boot_disk': {'type': 'bool', 'default': False},
        'allow_unsafe': {'type': 'bool', 'default': False},
        'migratable': {'type': 'bool', 'default': False},
        'probe_storage': {'type': 'bool', 'default': True},
        'disks': {'type': 'list', 'elements': 'dict', 'default': [], 'options': DISK_RULE_SPEC},
        'overrides': {'type': 'dict', 'default': {}},
        'backup_dir': {'type': 'path', 'default': DEFAULT_BACKUP_DIR},
    })
    spec.update(LOCK_ARGUMENT_SPEC)
    return spec


def _queues(value, where):
    if value is None or value == 'auto':
        return value
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise PlanError("%sscsi_queues must be a positive number or 'auto', not '%s'" % (where, value))
    return number


def _rules(entries):
    return tuple(DiskRule(match=e['match'], overrides={k: v for k, v in e.items() if k != 'match'}) for e in entries)


def validated_overrides(raw):
    """{pattern: validated dict}; an invalid entry fails naming the key and the problem."""
    result = {}
    for pattern, entry in (raw or {}).items():
        if entry is None:
            entry = {}
        if not isinstance(entry, dict):
            raise PlanError("overrides['%s'] must be a dictionary of settings, not %s" % (pattern, type(entry).__name__))
        outcome = ArgumentSpecValidator(POLICY_SPEC).validate(entry)
        if outcome.error_messages:
            raise PlanError("overrides['%s']: %s" % (pattern, '; '.join(outcome.error_messages)))
        result[pattern] = {k: v for k, v in outcome.validated_parameters.items() if v is not None}
    return result


def policy_for(name, params, overrides):
    """The TunePolicy for domain ``name``: module options, then matching overrides in order."""
    merged = {k: params[k] for k in ('cache', 'io', 'discard', 'detect_zeroes', 'bus', 'scsi_queues',
                                     'convert_boot_disk', 'migratable')}
    rules = list(params['disks'])
    skip = False
    for pattern, entry in overrides.items():
        if matches(name, pattern):
            merged.update({k: v for k, v in entry.items() if k not in ('disks', 'skip')})
            rules.extend(entry.get('disks', []))
            skip = skip or entry.get('skip', False)
    policy = TunePolicy(
        settings=DiskSettings(cache=merged['cache'], io=merged['io'], discard=merged['discard'],
                              detect_zeroes=merged['detect_zeroes']),
        bus=merged['bus'], scsi_queues=_queues(merged['scsi_queues'], '%s: ' % name),
        convert_boot_disk=merged['convert_boot_disk'],
        guards=Guards(allow_unsafe=params['allow_unsafe'], migratable=merged['migratable']),
        disk_rules=_rules(rules))
    return policy, skip


def _check_literal_rules(plans, params, overrides):
    """A literal disk ``match`` (no glob) that matched no disk is a typo: refuse."""
    matched = set()
    for plan in plans:
        matched.update(plan.matched_rules)
    unknown = [r['match'] for r in params['disks'] if not is_glob(r['match']) and r['match'] not in matched]
    for pattern, entry in overrides.items():
        hit = {m for p in plans if matches(p.name, pattern) for m in p.matched_rules}
        unknown.extend("%s (overrides['%s'])" % (r['match'], pattern) for r in entry.get('disks', [])
                       if not is_glob(r['match']) and r['match'] not in hit)
    if unknown:
        raise PlanError('disks: no disk has the target or source %s; nothing was changed' % ', '.join(unknown),
                        unknown_disks=unknown)


def _storage(prober, paths):
    if prober is None:
        return None
    return {path: prober.facts(path) for path in paths}


class DiskTuneRun:
    """One run of the module. ``module`` is the AnsibleModule (params, check_mode, _diff, warn)."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.overrides = validated_overrides(self.params['overrides'])
        _queues(self.params['scsi_queues'], '')
        self.prober = StorageProber() if self.params['probe_storage'] else None

    def run(self):
        if self.params['xml_path']:
            return self._run_file(self.params['xml_path'])
        return self._run_libvirt()

    # --- libvirt mode ---------------------------------------------------------------------

    def _run_libvirt(self):
        params = self.params
        with HostLock(params['uri'], params['lock_timeout']), LibvirtClient(params['uri']) as client:
            handles = client.persistent_domains()
            names = select_with_overrides(handles, params, self.overrides, where=' at %s' % params['uri'])
            doms = {name: handles[name] for name in names}
            xmls = client.inactive_xmls(doms)
            names, vanished = still_defined(names, xmls)
            if vanished:
                self.module.warn(vanished)
            roots = {name: parse_domain(xmls[name], 'the XML of domain %s' % name) for name in names}
            volume_paths = {}
            for root in roots.values():
                for key in volume_sources(root):
                    if key not in volume_paths:
                        volume_paths[key] = client.volume_path(*key)
            emulators = sorted({r.findtext('devices/emulator') or '' for r in roots.values()} - {''})
            host = host_support(client.hypervisor_version(), client.libvirt_version(),
                                emulators or ('/usr/bin/qemu-system-x86_64',))
            plans = []
            for name in names:
                policy, skip = policy_for(name, params, self.overrides)
                if skip:
                    continue
                storage = _storage(self.prober, local_source_paths(roots[name], volume_paths))
                plans.append(plan_domain(xmls[name], policy, storage, host, volume_paths,
                                         origin='the XML of domain %s' % name, root=roots.pop(name)))
            self._fail_on_plan_errors(plans)
            _check_literal_rules(plans, params, self.overrides)
            active = client.active_names()
            backups = []
            if not self.module.check_mode:
                backups = define_plans(client, doms, [p for p in plans if p.changed], params['backup_dir'])
        return self._result(plans, active, backups)

    # --- file mode ------------------------------------------------------------------------

    def _run_file(self, path):
        try:
            with open(path, encoding='utf-8') as handle:
                text = handle.read()
        except OSError as err:
            raise KvmioError('cannot read xml_path %s: %s' % (path, err.strerror)) from None
        root = parse_domain(text, path)
        name = root.findtext('name') or os.path.basename(path)
        policy, _skip = policy_for(name, self.params, self.overrides)
        storage = _storage(self.prober, local_source_paths(root))
        host = host_support(None, None, [root.findtext('devices/emulator') or '/usr/bin/qemu-system-x86_64'])
        plan = plan_domain(text, policy, storage, host, origin=path)
        self._fail_on_plan_errors([plan])
        _check_literal_rules([plan], self.params, self.overrides)
        backups = []
        if plan.changed and not self.module.check_mode:
            backups.append(write_backup(self.params['backup_dir'], plan.name, text))
            mode = os.stat(path).st_mode & 0o7777
            write_atomic(path, plan.after + ('\n' if text.endswith('\n') and not plan.after.endswith('\n') else ''),
                         mode=mode)
        return self._result([plan], set(), backups)

    # --- result ---------------------------------------------------------------------------

    def _fail_on_plan_errors(self, plans):
        errors = [e for p in plans for e in p.errors]
        if errors:
            raise PlanError('; '.join(errors) + '. Nothing was changed.', errors=errors)

    def _result(self, plans, active, backups):
        for plan in plans:
            for warning in plan.warnings:
                self.module.warn(warning)
        changed_plans = [p for p in plans if p.changed]
        result = {
            'changed': bool(changed_plans),
            'domains': [{'name': p.name, 'changed': p.changed, 'restart_required': p.changed and p.name in active,
                         'changes': p.change_dicts(), 'disks': p.disks} for p in plans],
            'restart_required': sorted(p.name for p in changed_plans if p.name in active),
            'backups': backups,
            # Probe facts once per storage path (many disks share bases and directories).
            'storage': self.prober.all_facts() if self.prober is not None else {},
        }
        if self.module._diff:
            result['diff'] = [diff_entry(p) for p in changed_plans]
        return result
