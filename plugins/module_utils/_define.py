# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Defining planned domain XML safely: re-check, back up, define, re-read, and put everything back
when a define fails. Shared by every module that redefines domains, so each of them keeps the same
guarantees.

"Nothing changes when any plan is invalid" must hold even where the define check could not see the
refusal coming (a daemon configured otherwise than the check's throwaway libvirt, a domain reported
unchecked, ``define_check: false``): when a define fails, every domain this run already defined is
defined again from the backup this run wrote of it just before, and read back to verify it. The error
says which domains were put back and which could not be (then their backups are listed).
"""

from __future__ import annotations

import threading

from ._backup import sync_backups, write_backup
from ._backup_origin import split_origin
from ._domain_xml import RPC_STRING_MAX, same_document
from ._errors import ApplyError, KvmioError
from ._libvirt import lock_subject
from ._parallel import map_threads
from ._trusted_files import open_trusted_file


def define_plans(client, doms, plans, backup_dir, checked=None, warn=None):
    """Defines each changed plan; returns the backup files written. Updates ``plan.changed`` and
    ``plan.after`` from what libvirt stored. On failure, the domains already defined are put back
    from their backups, and the error says what was done (``defined``: left with the new XML,
    ``rolled_back``, ``rollback_failed``, ``backups``, ``failed_domain``), with the define check's
    verdicts (``checked``, a DefineCheck: ``define_check``) and its warnings (passed to ``warn``)."""
    try:
        return _define_plans(client, doms, plans, backup_dir)
    except KvmioError as err:
        if checked is not None:
            err.details.setdefault('define_check', checked.as_dict())
            for warning in checked.warnings() if warn is not None else ():
                warn(warning)
        raise


def _define_plans(client, doms, plans, backup_dir):
    # Every backup first, then all of them made durable (sync_backups): no define happens before all of
    # them are on disk, and a backup that cannot be written stops the run before any define.
    backups, backup_of = [], {}
    for plan in plans:
        try:
            backup_of[plan.name] = write_backup(backup_dir, plan.name, plan.source, durable=False,
                                                origin=lock_subject(client.uri))
        except KvmioError as err:
            err.details.update(defined=[], backups=backups, failed_domain=plan.name)
            raise
        backups.append(backup_of[plan.name])
    sync_backups(backup_dir, backups)
    # Defines overlap (see _parallel); the first failure stops every define not yet begun.
    stop = threading.Event()
    defined = set()     # libvirt holds the planned XML (read back or not)

    def define_one(plan):
        if stop.is_set():
            return None
        try:
            # Someone may have edited the domain since we read it: never overwrite that.
            now = client.inactive_xml(doms[plan.name])
            if not same_document(now, plan.source):
                raise ApplyError('domain %s changed since this run read it (another tool or run edited '
                                 'it); not overwriting that change. Run again to plan on the new XML.'
                                 % plan.name, domain=plan.name)
            dom = client.define(plan.after, plan.name)
            defined.add(plan.name)
            stored = client.inactive_xml(dom)
        except KvmioError as err:
            stop.set()
            return err
        plan.changed = not same_document(stored, plan.source)
        plan.after = stored         # libvirt's text; _domain_plan.diff_entry() serialises it like ``before``
        return None

    failures = [(plan, err) for plan, err in zip(plans, map_threads(define_one, plans)) if err is not None]
    if failures:
        plan, err = failures[0]
        done = [p for p in plans if p.name in defined]
        rolled_back, rollback_failed = roll_back(client, doms, done, backup_of)
        err.details.update(defined=sorted(rollback_failed), rolled_back=rolled_back, rollback_failed=rollback_failed,
                           backups=backups, failed_domain=plan.name)
        err.msg = err.msg.rstrip('. ') + rollback_message(rolled_back, rollback_failed)
        raise err
    return backups


def roll_back(client, doms, plans, backup_of):
    """Defines each plan's domain again from the backup written of it; returns (names put back and
    verified, {name: why not})."""

    def put_back(plan):
        try:
            return _put_back(client, doms[plan.name], plan, backup_of[plan.name])
        except KvmioError as err:
            return err.msg

    outcomes = dict(zip([plan.name for plan in plans], map_threads(put_back, plans)))
    return (sorted(name for name, why in outcomes.items() if why is None),
            {name: why for name, why in sorted(outcomes.items()) if why is not None})


def _put_back(client, dom, plan, backup):
    """None once the domain holds its backup's XML again (verified), else why not."""
    try:
        text = open_trusted_file(backup, 'backup %s' % backup, RPC_STRING_MAX).decode('utf-8')
        origin, text = split_origin(text, 'backup %s' % backup)
    except (KvmioError, UnicodeDecodeError) as err:
        return 'its backup %s cannot be read back (%s)' % (backup, getattr(err, 'msg', err))
    if text != plan.source or origin != lock_subject(client.uri):
        return 'its backup %s does not hold what this run wrote to it' % backup
    try:
        now = client.inactive_xml(dom)
    except KvmioError:
        now = None          # unreadable (an XML libvirt cannot carry): ours, just defined
    if now is not None and not same_document(now, plan.after):
        return ('it was changed again by someone else after this run defined it; not overwriting that (its '
                'backup is %s)' % backup)
    stored = client.inactive_xml(client.define(text, plan.name))
    if not same_document(stored, plan.source):
        return 'libvirt stores something else than its backup %s after defining it again' % backup
    return None


def rollback_message(rolled_back, rollback_failed):
    """What a failed define run did, to end its error message with."""
    put_back = ('the %d domain(s) this run had defined before it stopped were defined again from the backups it '
                'wrote, and verified: %s' % (len(rolled_back), ', '.join(rolled_back))) if rolled_back else ''
    if rollback_failed:
        return ('. %sNOT put back, still with the new XML (restore them with domain_restore from the backups '
                'listed): %s.' % (put_back[:1].upper() + put_back[1:] + '; ' if put_back else '',
                                  '; '.join('%s: %s' % item for item in sorted(rollback_failed.items()))))
    return '. Nothing was changed%s.' % (': ' + put_back if put_back else '')
