# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""domain_restore's flow: pick backup files, compare each with what libvirt holds, define back.

A backup is trusted only if only root (or the running user) can change it and the directories above
it (``_trusted_files``), and it is used only for the domain it names, with that domain's UUID: a
restore redefines a domain from the file, so a file another user planted (or one holding another
domain) would let it choose what the guest gets.

A trusted file is not enough: the backup of an ``xml_path`` file is root's copy of what may be another
user's template (which knows the domain's name and UUID: neither is secret). Those backups live apart
(``_backup.file_backup_directory``) and are never restored; and a backup whose ``<emulator>`` is not a
program only root can change (``_trusted_binary``) is refused unless it is already the domain's own
emulator: libvirt would run it at the define.

And a backup is restored only into the libvirt it came from (``_backup_origin``: each backup records
its libvirt's ``lock_subject``): another libvirt on the host may hold a domain with the same name and
UUID (an embedded root, a clone), and its backup would give this domain that one's disks. A backup
written before the record existed is restored only with ``allow_legacy_backups``.
"""

from __future__ import annotations

import os

from ._backup_origin import split_origin
from ._backup import BACKUP_NAME_RE, DEFAULT_BACKUP_DIR, backup_directory, backup_prefix, file_backup_directory
from ._define import define_plans
from ._define_check import DEFINE_CHECK_ARGUMENT_SPEC, check_plans
from ._domain_plan import DomainPlan, diff_entry
from ._domain_xml import RPC_STRING_MAX, domain_name, domain_uuid, emulator_path, parse_domain, same_document, \
    to_text
from ._errors import KvmioError, PlanError
from ._libvirt import LIBVIRT_ARGUMENT_SPEC, LibvirtClient, lock_subject
from ._lock import LOCK_ARGUMENT_SPEC, HostLock
from ._trusted_binary import emulator_problem
from ._trusted_files import entry_problem, open_trusted_file

# A domain's XML is a few KiB; libvirt cannot carry one longer than RPC_STRING_MAX (4 MiB).
MAX_BACKUP_BYTES = RPC_STRING_MAX


def argument_spec():
    spec = dict(LIBVIRT_ARGUMENT_SPEC)
    spec.update({
        'backups': {'type': 'list', 'elements': 'path', 'default': []},
        'domains': {'type': 'list', 'elements': 'str', 'default': []},
        'backup_dir': {'type': 'path', 'default': DEFAULT_BACKUP_DIR},
        'which': {'type': 'str', 'choices': ['latest', 'earliest'], 'default': 'latest'},
        'allow_legacy_backups': {'type': 'bool', 'default': False},
    })
    spec.update(LOCK_ARGUMENT_SPEC)
    spec.update(DEFINE_CHECK_ARGUMENT_SPEC)
    return spec


def read_backup(path, directory_checked=False):
    """(text, root, origin) of a backup file that passes the trust checks: the domain XML without the
    record of its origin, its parsed root, and the libvirt it came from (None: a backup without the
    record); a clear PlanError otherwise."""
    what = 'backup %s' % path
    try:
        data = open_trusted_file(path, what, MAX_BACKUP_BYTES, directory_checked=directory_checked)
    except KvmioError as err:
        raise PlanError(err.msg, **err.details) from None
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as err:
        raise PlanError('%s is not UTF-8 text (byte %d); libvirt writes domain XML as UTF-8, so this is not '
                        'a backup this collection wrote' % (what, err.start)) from None
    try:
        origin, text = split_origin(text, what)
        root = parse_domain(text, what)
    except KvmioError as err:
        raise PlanError(err.msg) from None
    return text, root, origin


def backups_by_domain(backup_dir, names=None, warn=None):
    """{file-name prefix: [backup paths, oldest first]} of the trusted files this collection wrote to
    ``backup_dir`` (only the prefixes of ``names`` when given). Entries that are not trusted regular
    files are skipped (and passed to ``warn``)."""
    found = {}
    try:
        directory = backup_directory(backup_dir)
    except KvmioError as err:
        # (Not asked again of a mount that did not answer: lexists would hang where the walk did.)
        if 'hung_mount' not in err.details and not os.path.lexists(backup_dir):
            return found
        raise PlanError(err.msg, **err.details) from None
    try:
        entries = sorted(os.listdir(directory))
    except OSError as err:
        raise PlanError('cannot read backup_dir %s: %s' % (backup_dir, err.strerror)) from None
    wanted = None if names is None else {backup_prefix(n) for n in names}
    for entry in entries:
        match = BACKUP_NAME_RE.match(entry)
        if not match or (wanted is not None and match.group('prefix') not in wanted):
            continue
        path = os.path.join(backup_dir, entry)
        problem = entry_problem(path)
        if problem:
            if warn:
                warn('ignored %s: %s' % (path, problem))
            continue
        found.setdefault(match.group('prefix'), []).append((match.group('stamp'), path))
    return {prefix: [path for _stamp, path in sorted(items)] for prefix, items in found.items()}


class RestoreRun:
    def __init__(self, module):
        self.module = module
        self.params = module.params

    def _chosen(self):
        """{domain name: (path, text, uuid)} of the backups to restore."""
        params = self.params
        if not params['backups'] and not params['domains']:
            raise PlanError('name the backups to restore (backups: the backups list a tuning run returned) or '
                            'the domains (domains: their latest backup in backup_dir)')
        chosen = {}
        for path in params['backups']:
            self._refuse_file_backup(path)
            text, root, origin = read_backup(path)
            name = domain_name(root)
            problem = self._origin_problem(origin)
            if problem:
                raise PlanError('backup %s of domain %s is not restored: %s (nothing was changed)'
                                % (path, name, problem), backup_origin=origin)
            if name in chosen:
                raise PlanError('backups name domain %s twice (%s and %s); give one backup per domain'
                                % (name, chosen[name][0], path))
            chosen[name] = (path, text, domain_uuid(root))
        wanted = [n for n in params['domains'] if n not in chosen]
        available = backups_by_domain(params['backup_dir'], wanted, warn=self.module.warn) if wanted else {}
        for name in wanted:
            found, passed_over = self._latest_of(name, available.get(backup_prefix(name), []))
            if found is None:
                raise PlanError('no backup of domain %s from libvirt %s in %s%s'
                                % (name, lock_subject(params['uri']), params['backup_dir'],
                                   '; passed over: %s' % '; '.join(passed_over) if passed_over else ''))
            chosen[name] = found
        return chosen

    def _origin_problem(self, origin):
        """Why a backup recording ``origin`` (None: no record) must not be restored into this run's
        libvirt, or None."""
        target = lock_subject(self.params['uri'])
        if origin is None:
            if self.params['allow_legacy_backups']:
                return None
            return ('it does not record which libvirt it came from (written before kvmio.tuning recorded it); '
                    'if you know it is a backup of this domain at %s, restore it with allow_legacy_backups: '
                    'true' % target)
        if origin != target:
            return 'it is a backup of a domain of libvirt %s, not of %s (uri)' % (origin, target)
        return None

    def _refuse_file_backup(self, path):
        """A backup of an xml_path file (kvm_disk_tune on a file) is never restored into a domain."""
        files = os.path.realpath(file_backup_directory(self.params['backup_dir']))
        if os.path.realpath(os.path.dirname(os.path.abspath(path))) == files:
            raise PlanError('backup %s is the backup of an xml_path file (kept in %s), not of a domain of libvirt: '
                            'such a file may be another user\'s template, so it is never restored into a domain; '
                            'copy it back over the file instead (nothing was changed)' % (path, files))

    @staticmethod
    def _refuse_untrusted_emulator(name, path, root, current_root):
        """libvirt runs a domain's emulator when it is defined (to probe it) and started: a backup may name
        only a program only root can change, or the emulator the domain already has."""
        problem = emulator_problem(root)
        if problem and emulator_path(root) != emulator_path(current_root):
            raise PlanError('backup %s of domain %s is not restored: %s; domain %s has emulator %s now (nothing was '
                            'changed)' % (path, name, problem, name, emulator_path(current_root) or '(the default)'),
                            untrusted=problem)

    def _latest_of(self, name, paths):
        """((path, text, uuid) of the latest (or earliest) backup that holds domain ``name`` of this
        run's libvirt, judged by the XML inside, or None; why others were passed over). Files of
        another domain whose name maps to the same file name (``a/b`` and ``a_b``, or two long names
        sharing their first bytes and hash) are passed over, and so are backups of a domain of that
        name in another libvirt (or without a record, unless ``allow_legacy_backups``)."""
        if self.params['which'] == 'latest':
            paths = reversed(paths)
        passed_over = []
        for path in paths:
            text, root, origin = read_backup(path, directory_checked=True)
            held = domain_name(root)
            if held == name:
                problem = self._origin_problem(origin)
                if problem is None:
                    return (path, text, domain_uuid(root)), passed_over
                passed_over.append('%s: %s' % (path, problem))
                continue
            if backup_prefix(held) != backup_prefix(name):
                # The file name says one domain and the XML another: restoring it would redefine that
                # other domain (without a backup of it) and report this one restored.
                raise PlanError('backup %s holds domain %s, not %s; it cannot restore %s (nothing was changed)'
                                % (path, held or '(no name)', name, name))
        return None, passed_over

    def run(self):
        chosen = self._chosen()
        with HostLock(lock_subject(self.params['uri']), self.params['lock_timeout']), LibvirtClient(self.params['uri']) as client:
            handles = client.persistent_domains()
            missing = sorted(set(chosen) - set(handles))
            if missing:
                raise PlanError('domains no longer defined, so not restored (define them from the backup by hand '
                                'if wanted): %s' % ', '.join(missing))
            plans, sources = [], {}
            for name, (path, text, uuid) in sorted(chosen.items()):
                current = client.inactive_xml(handles[name])
                current_root = parse_domain(current, 'the XML of domain %s' % name)
                if uuid != domain_uuid(current_root):
                    # Same name, another machine (undefined and defined again, or another host's backup):
                    # its XML would replace this domain's disks and identity.
                    raise PlanError('backup %s is of domain %s with UUID %s, but domain %s here has UUID %s; '
                                    'not restoring it (nothing was changed)'
                                    % (path, name, uuid or '(none)', name, domain_uuid(current_root)))
                self._refuse_untrusted_emulator(name, path, parse_domain(text, 'backup %s' % path), current_root)
                plan = DomainPlan(name=name, before=to_text(current_root), after=text, source=current)
                plan.changed = not same_document(current, text)
                sources[name] = path
                plans.append(plan)
            # Check mode too: a backup libvirt would refuse fails before anything is restored.
            checked = check_plans(plans, self.params['define_check'], uri=self.params['uri'])
            active = {p.name for p in plans if p.changed and client.is_active(handles[p.name])}
            backups = []
            if not self.module.check_mode:
                # Kept apart, so that the next 'latest backup' is still the one restored (idempotent).
                backups = define_plans(client, handles, [p for p in plans if p.changed],
                                       os.path.join(self.params['backup_dir'], 'before-restore'),
                                       checked=checked, warn=self.module.warn)
        result = {'changed': any(p.changed for p in plans),
                  'domains': [{'name': p.name, 'changed': p.changed, 'restored_from': sources[p.name]} for p in plans],
                  'restart_required': sorted(active), 'backups': backups, 'define_check': checked.as_dict()}
        for warning in checked.warnings():
            self.module.warn(warning)
        if self.module._diff:
            result['diff'] = [dict(diff_entry(p, '%s (restored from %s)' % (p.name, sources[p.name])),
                                   before_header='%s (inactive XML, now)' % p.name) for p in plans if p.changed]
        return result
