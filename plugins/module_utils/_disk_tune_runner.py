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

import contextlib
import dataclasses
import os

from ._backup import DEFAULT_BACKUP_DIR, write_file_backup
from ._define import define_plans
from ._define_check import DEFINE_CHECK_ARGUMENT_SPEC, DefineCheck, check_plans
from ._disk_plan import plan_domain
from ._disk_policy import BUS_CHOICES, CACHE_CHOICES, DETECT_ZEROES_CHOICES, DISCARD_CHOICES, IO_CHOICES, Guards
from ._disk_xml import local_source_formats, volume_sources
from ._domain_plan import diff_entry
from ._domain_xml import domain_name, emulator_path, parse_domain
from ._errors import KvmioError, PlanError
from ._host_probe import host_support
from ._libvirt import LIBVIRT_ARGUMENT_SPEC, LibvirtClient, lock_subject
from ._live_apply import LiveApply, live_diff
from ._live_plan import APPLY_CHOICES, LIVE_SETTINGS
from ._lock import LOCK_ARGUMENT_SPEC, HostLock
from ._module import validated_overrides
from ._overrides import check_literal_rules, policy_for, scsi_queues
from ._parallel import map_threads
from ._result_detail import RESULT_DETAIL_ARGUMENT_SPEC, shape_entries
from ._save_image import DEFAULT_SAVE_DIR
from ._selection import SELECTION_ARGUMENT_SPEC, is_glob, select_with_overrides, still_defined
from ._storage_probe import BoundedReads, StorageProber
from ._xml_file import XmlFile
from ._xml_layout import LayoutError, LayoutKeeper, redacted_text

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
        'apply': {'type': 'str', 'choices': list(APPLY_CHOICES), 'default': 'config'},
        'save_dir': {'type': 'path', 'default': DEFAULT_SAVE_DIR},
    })
    spec.update(LOCK_ARGUMENT_SPEC)
    spec.update(DEFINE_CHECK_ARGUMENT_SPEC)
    spec.update(RESULT_DETAIL_ARGUMENT_SPEC)
    return spec


# What result_detail=summary keeps of each domain entry; of ``live`` (running domains with apply=live),
# the outcome without the per-disk detail.
SUMMARY_DOMAIN_KEYS = ('name', 'changed', 'restart_required',
                       ('live', ('status', 'method', 'predicted', 'taint', 'pause', 'error')))


@dataclasses.dataclass(frozen=True)
class LiveContext:
    """What the live step of a run needs besides the plans: the host's support (for the rule table),
    each domain's policy guards, and the backups written (reported if it fails)."""

    host: object
    guards: dict
    backups: list


def _remove_backup(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _storage(prober, sources):
    """{path: StorageFacts} of ``sources`` ({path: declared format})."""
    if prober is None:
        return None
    return {path: prober.facts(path, fmt) for path, fmt in sources.items()}


class DiskTuneRun:
    """One run of the module. ``module`` is the AnsibleModule (params, check_mode, _diff, warn)."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.overrides = validated_overrides(self.params['overrides'], POLICY_SPEC)
        scsi_queues(self.params['scsi_queues'])
        self.prober = StorageProber() if self.params['probe_storage'] else None

    def run(self):
        if self.params['xml_path']:
            return self._run_file(self.params['xml_path'])
        return self._run_libvirt()

    # --- libvirt mode ---------------------------------------------------------------------

    def _run_libvirt(self):
        params = self.params
        with HostLock(lock_subject(params['uri']), params['lock_timeout']), LibvirtClient(params['uri']) as client:
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
            # The emulator as libvirt reads it (the element's string value, not lxml's first text node).
            emulators = sorted({emulator_path(r) or '' for r in roots.values()} - {''})
            host = host_support(client.hypervisor_version(), client.libvirt_version(),
                                emulators or ('/usr/bin/qemu-system-x86_64',))
            plans = []
            known = frozenset(handles)
            guards = {}
            for name in names:
                policy, skip = policy_for(name, params, self.overrides, known)
                if skip:
                    continue
                guards[name] = policy.guards
                storage = _storage(self.prober, local_source_formats(roots[name], volume_paths))
                plans.append(plan_domain(xmls[name], policy, storage, host, volume_paths,
                                         origin='the XML of domain %s' % name, root=roots.pop(name)))
            self._fail_on_plan_errors(plans)
            check_literal_rules(plans, params, self.overrides, known)
            # Check mode too: it reports what a real run would be refused.
            checked = check_plans(plans, params['define_check'], uri=params['uri'])
            active = client.active_names()
            backups = []
            if not self.module.check_mode:
                backups = define_plans(client, doms, [p for p in plans if p.changed], params['backup_dir'],
                                       checked=checked, warn=self.module.warn)
            live = {}
            if params['apply'] != 'config':
                live = self._apply_live(client, doms, plans, active, LiveContext(host, guards, backups))
        return self._result(plans, active, backups, checked, live)

    def _apply_live(self, client, doms, plans, active, context):
        """Brings each running domain to its (now stored) disk settings, for the settings each plan tuned
        and under its policy's guards: {name: (result, Change list)}. A domain that stopped meanwhile is
        reported ``not_running``; any other failure fails the run, saying what every domain got."""
        storage = self.prober.facts if self.prober is not None else None
        applier = LiveApply(client, self.module.check_mode, self.params['apply'] == 'live_or_pause',
                            self.params['save_dir'], self.module.warn, host=context.host, storage=storage)
        running = [plan for plan in plans if plan.name in active]

        def apply_one(plan):
            later = [c for c in plan.changes if c.setting not in LIVE_SETTINGS] if plan.changed else []
            # The disks' iothread is iothread_pin's to decide: a pause brings each tuned disk to the stored one.
            tuned = {target: settings | {'iothread'} for target, settings in plan.tuned.items()}
            try:
                return applier.apply(doms[plan.name], plan.after, later, tuned, context.guards.get(plan.name, Guards()))
            except KvmioError as err:
                return err

        outcomes = dict(zip([plan.name for plan in running], map_threads(apply_one, running)))
        failed = {name: err for name, err in outcomes.items() if isinstance(err, KvmioError)}
        if failed:
            # Say exactly what was done: what was defined and backed up, every other domain's live result,
            # and which ones changed.
            name, err = sorted(failed.items())[0]
            done = {n: o for n, o in outcomes.items() if n not in failed}
            err.details.update(failed_domain=name, live={n: state for n, (state, _c) in done.items()},
                               applied_live=sorted(n for n, (_s, changes) in done.items() if changes),
                               defined=sorted(p.name for p in plans if p.changed and not self.module.check_mode),
                               backups=context.backups)
            raise err
        return outcomes

    # --- file mode ------------------------------------------------------------------------

    def _run_file(self, path):
        if self.params['apply'] != 'config':
            raise PlanError('apply=%s brings running domains of libvirt to their settings; with xml_path there is '
                            'none: use apply=config' % self.params['apply'])
        if self.params['domains'] != ['*'] or self.params['exclude']:
            # They select libvirt's domains; ignoring them would tune a file the user meant to leave alone.
            raise PlanError('domains and exclude select domains of libvirt, and xml_path names one file: give either '
                            'xml_path or domains/exclude (to leave a file alone, use overrides with skip: true); '
                            'nothing was changed')
        with self._open_file(path) as xml_file:
            text = xml_file.text
            root = parse_domain(text, path)
            name = domain_name(root) or os.path.basename(xml_file.real_path)
            known = frozenset((name,))
            # As in libvirt mode, an override naming another domain is a typo, never silently ignored.
            unknown = sorted(p for p in self.overrides if not is_glob(p) and p != name)
            if unknown:
                raise PlanError('overrides name domains other than %s, the domain of xml_path %s: %s; nothing was '
                                'changed' % (name, path, ', '.join(unknown)))
            policy, skip = policy_for(name, self.params, self.overrides, known)
            if skip:
                return self._result([], set(), [], DefineCheck())
            keeper = self._layout_keeper(text, root, path)
            storage = _storage(self.prober, local_source_formats(root))
            host = host_support(None, None, [emulator_path(root) or '/usr/bin/qemu-system-x86_64'])
            plan = plan_domain(text, policy, storage, host, origin=path, root=root)
            self._fail_on_plan_errors([plan])
            check_literal_rules([plan], self.params, self.overrides, known)
            new_text = self._render(keeper, root, plan, text, path) if plan.changed else text
            if plan.changed and xml_file.replace_problem():
                raise PlanError(xml_file.replace_problem())
            # A file no libvirt holds: its planned XML is defined in place of the current one.
            checked = check_plans([dataclasses.replace(plan, after=new_text)], self.params['define_check'],
                                  redefine=False)
            backups = []
            if plan.changed and not self.module.check_mode:
                # Apart from the backups of libvirt's domains: the file may be another user's template,
                # and domain_restore must never take its text for a backup of a real domain.
                backups.append(write_file_backup(self.params['backup_dir'], xml_file.real_path, text))
                try:
                    xml_file.replace(new_text)
                except KvmioError:
                    _remove_backup(backups.pop())    # the file is unchanged: a backup of it would mislead
                    raise
        result = self._result([plan], set(), backups, checked)
        if self.module._diff and plan.changed:
            # The file's own text before and after: exactly what a git diff will show, secrets apart.
            result['diff'] = [{'before': redacted_text(text), 'after': redacted_text(new_text),
                               'before_header': '%s (before)' % path, 'after_header': '%s (after)' % path}]
        return result

    @contextlib.contextmanager
    def _open_file(self, path):
        """``with``: the XmlFile of ``path``, walked and read bounded in time (a dead NFS server or a FUSE
        daemon that never answers gives a clear error, not a run that hangs), closed at the end."""
        reads = self.prober.reads if self.prober is not None else BoundedReads()

        def open_and_read():
            xml_file = XmlFile(path)
            return xml_file.__enter__()     # pylint: disable=unnecessary-dunder-call

        done, value = reads.call(path, open_and_read)
        if not done:
            raise PlanError('xml_path %s: %s; nothing was changed' % (path, reads.why(path, value)))
        try:
            yield value         # entered in the worker: a second __enter__ would walk and read again, unbounded
        finally:
            value.close()

    def _layout_keeper(self, text, root, path):
        try:
            return LayoutKeeper(text, root)
        except LayoutError as err:
            self.module.warn('xml_path %s: cannot keep its layout byte for byte (%s); a changed file is written '
                             'serialised' % (path, err.msg))
            return None

    def _render(self, keeper, root, plan, text, path):
        """The file's new text: the original with only the changed settings edited, where possible."""
        if keeper is not None:
            try:
                return keeper.render(root)
            except LayoutError as err:
                self.module.warn('xml_path %s: cannot keep its layout byte for byte (%s); it is written serialised'
                                 % (path, err.msg))
        return plan.after + ('\n' if text.endswith('\n') and not plan.after.endswith('\n') else '')

    # --- result ---------------------------------------------------------------------------

    def _fail_on_plan_errors(self, plans):
        errors = [e for p in plans for e in p.errors]
        if errors:
            raise PlanError('; '.join(errors) + '. Nothing was changed.', errors=errors)

    def _result(self, plans, active, backups, checked, live=None):
        for plan in plans:
            for warning in plan.warnings:
                self.module.warn(warning)
        for warning in checked.warnings():
            self.module.warn(warning)
        live = live or {}
        domains, diffs = [], []
        for plan in plans:
            entry = {'name': plan.name, 'changed': plan.changed, 'restart_required': plan.changed and plan.name in active,
                     'changes': plan.change_dicts(), 'disks': plan.disks}
            if plan.changed:
                diffs.append(diff_entry(plan))
            if plan.name in live:
                state, done = live[plan.name]
                waits = state['status'] in ('restart_required', 'partially_applied') or (
                    state['status'] == 'not_running' and plan.changed)
                entry.update(changed=plan.changed or bool(done), live=state,
                             live_changes=[change.as_dict() for change in done], restart_required=waits)
                running = live_diff(plan.name, state)
                if running:
                    diffs.append(running)
            domains.append(entry)
        result = {
            'changed': any(d['changed'] for d in domains),
            'domains': shape_entries(domains, self.params['result_detail'], SUMMARY_DOMAIN_KEYS),
            'restart_required': sorted(d['name'] for d in domains if d['restart_required']),
            'backups': backups,
            'define_check': checked.as_dict(),
            'counts': {'domains': len(plans), 'changed': sum(1 for d in domains if d['changed']),
                       'restart_required': sum(1 for d in domains if d['restart_required']),
                       'disks': sum(len(p.disks) for p in plans), 'changes': sum(len(p.changes) for p in plans if p.changed)},
            # Probe facts once per storage path (many disks share bases and directories).
            'storage': self.prober.all_facts() if self.prober is not None and self.params['result_detail'] == 'full'
            else {},
        }
        if live:
            result['tainted'] = sorted(name for name, (state, _done) in live.items() if state['taint'])
        if self.module._diff:
            result['diff'] = diffs
        return result
