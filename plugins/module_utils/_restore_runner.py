# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""domain_restore's flow: pick backup files, compare each with what libvirt holds, define back."""

from __future__ import annotations

import os
import re

from ._backup import DEFAULT_BACKUP_DIR
from ._define import define_plans
from ._domain_plan import DomainPlan, diff_entry
from ._domain_xml import domain_name, parse_domain, same_document, to_text
from ._errors import KvmioError, PlanError
from ._libvirt import LIBVIRT_ARGUMENT_SPEC, LibvirtClient
from ._lock import LOCK_ARGUMENT_SPEC, HostLock

_BACKUP_RE = re.compile(r'^(?P<name>.+)\.(?P<stamp>\d{8}T\d{6}\.\d{6})Z\.xml$')


def argument_spec():
    spec = dict(LIBVIRT_ARGUMENT_SPEC)
    spec.update({
        'backups': {'type': 'list', 'elements': 'path', 'default': []},
        'domains': {'type': 'list', 'elements': 'str', 'default': []},
        'backup_dir': {'type': 'path', 'default': DEFAULT_BACKUP_DIR},
        'which': {'type': 'str', 'choices': ['latest', 'earliest'], 'default': 'latest'},
    })
    spec.update(LOCK_ARGUMENT_SPEC)
    return spec


def backups_by_domain(backup_dir):
    """{domain: [backup paths, oldest first]} of the files this collection wrote to ``backup_dir``."""
    found = {}
    try:
        entries = sorted(os.listdir(backup_dir))
    except FileNotFoundError:
        return found
    except OSError as err:
        raise KvmioError('cannot read backup_dir %s: %s' % (backup_dir, err.strerror)) from None
    for entry in entries:
        match = _BACKUP_RE.match(entry)
        if match:
            found.setdefault(match.group('name'), []).append((match.group('stamp'), os.path.join(backup_dir, entry)))
    return {name: [path for _stamp, path in sorted(items)] for name, items in found.items()}


class RestoreRun:
    def __init__(self, module):
        self.module = module
        self.params = module.params

    def _chosen(self):
        params = self.params
        if not params['backups'] and not params['domains']:
            raise PlanError('name the backups to restore (backups: the backups list a tuning run returned) or '
                            'the domains (domains: their latest backup in backup_dir)')
        chosen = {}
        for path in params['backups']:
            try:
                with open(path, encoding='utf-8') as handle:
                    text = handle.read()
            except OSError as err:
                raise PlanError('cannot read backup %s: %s' % (path, err.strerror)) from None
            name = domain_name(parse_domain(text, 'backup %s' % path))
            if name in chosen:
                raise PlanError('backups name domain %s twice (%s and %s); give one backup per domain'
                                % (name, chosen[name][0], path))
            chosen[name] = (path, text)
        available = backups_by_domain(params['backup_dir'])
        for name in params['domains']:
            if name in chosen:
                continue
            if name not in available:
                raise PlanError('no backup of domain %s in %s' % (name, params['backup_dir']))
            path = available[name][-1 if params['which'] == 'latest' else 0]
            with open(path, encoding='utf-8') as handle:
                chosen[name] = (path, handle.read())
        return chosen

    def run(self):
        chosen = self._chosen()
        with HostLock(self.params['uri'], self.params['lock_timeout']), LibvirtClient(self.params['uri']) as client:
            handles = client.persistent_domains()
            missing = sorted(set(chosen) - set(handles))
            if missing:
                raise PlanError('domains no longer defined, so not restored (define them from the backup by hand '
                                'if wanted): %s' % ', '.join(missing))
            plans, sources = [], {}
            for name, (path, text) in sorted(chosen.items()):
                current = client.inactive_xml(handles[name])
                plan = DomainPlan(name=name, before=to_text(parse_domain(current)), after=text, source=current)
                plan.changed = not same_document(current, text)
                sources[name] = path
                plans.append(plan)
            active = {p.name for p in plans if p.changed and client.is_active(handles[p.name])}
            backups = []
            if not self.module.check_mode:
                # Kept apart, so that the next 'latest backup' is still the one restored (idempotent).
                backups = define_plans(client, handles, [p for p in plans if p.changed],
                                       os.path.join(self.params['backup_dir'], 'before-restore'))
        result = {'changed': any(p.changed for p in plans),
                  'domains': [{'name': p.name, 'changed': p.changed, 'restored_from': sources[p.name]} for p in plans],
                  'restart_required': sorted(active), 'backups': backups}
        if self.module._diff:
            result['diff'] = [dict(diff_entry(p, '%s (restored from %s)' % (p.name, sources[p.name])),
                                   before_header='%s (inactive XML, now)' % p.name) for p in plans if p.changed]
        return result
