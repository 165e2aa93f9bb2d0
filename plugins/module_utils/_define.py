# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Defining planned domain XML safely: re-check, back up, define, re-read. Shared by every module
that redefines domains, so each of them keeps the same guarantees."""

from __future__ import annotations

import threading

from ._backup import sync_backups, write_backup
from ._domain_xml import same_document
from ._errors import ApplyError, KvmioError
from ._parallel import map_threads


def define_plans(client, doms, plans, backup_dir):
    """Defines each changed plan; returns the backup files written. Updates ``plan.changed`` and
    ``plan.after`` from what libvirt stored. On failure, the error lists what was already done."""
    # Every backup first, then all of them made durable (sync_backups): no define happens before all of
    # them are on disk, and a backup that cannot be written stops the run before any define.
    backups = []
    for plan in plans:
        try:
            backups.append(write_backup(backup_dir, plan.name, plan.source, durable=False))
        except KvmioError as err:
            err.details.update(defined=[], backups=backups, failed_domain=plan.name)
            raise
    sync_backups(backup_dir, backups)
    # Defines overlap (see _parallel); the first failure stops every define not yet begun.
    stop = threading.Event()
    done = set()

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
            stored = client.inactive_xml(client.define(plan.after, plan.name))
        except KvmioError as err:
            stop.set()
            return err
        plan.changed = not same_document(stored, plan.source)
        plan.after = stored         # libvirt's text; _domain_plan.diff_entry() serialises it like ``before``
        done.add(plan.name)
        return None

    failures = [(plan, err) for plan, err in zip(plans, map_threads(define_one, plans)) if err is not None]
    if failures:
        plan, err = failures[0]
        defined = [p.name for p in plans if p.name in done]
        err.details.update(defined=defined, backups=backups, failed_domain=plan.name)
        if defined:
            err.msg += ' (defined by this run before it stopped: %s; their backups are listed)' % ', '.join(defined)
        raise err
    return backups
