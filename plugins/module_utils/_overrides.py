# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""kvm_disk_tune's per-domain ``overrides`` and per-disk ``disks`` rules: the TunePolicy one domain
gets, and the check that every literal name in them matched something. Pure.

The runner validates each override entry against its argument spec (``_module.validated_overrides``,
the one validation every module's ``overrides`` go through, the only part that needs ansible) and
hands the results here, so these rules are table-tested without ansible or libvirt.
"""

from __future__ import annotations

from ._bus_convert import MAX_SCSI_QUEUES
from ._disk_plan import DiskRule, TunePolicy
from ._disk_policy import DiskSettings, Guards
from ._errors import PlanError
from ._selection import is_glob, matches

# The module options an override entry replaces for the domains it matches.
POLICY_OPTIONS = ('cache', 'io', 'discard', 'detect_zeroes', 'bus', 'scsi_queues', 'convert_boot_disk', 'migratable')


def scsi_queues(value, where=''):
    """``scsi_queues`` as the planner takes it: None, 'auto' or a number QEMU takes (1 to
    MAX_SCSI_QUEUES); fails naming ``where``."""
    if value is None or value == 'auto':
        return value
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_SCSI_QUEUES:
        raise PlanError("%sscsi_queues must be a number from 1 to %d (QEMU's limit for virtio-scsi) or 'auto', not "
                        "'%s'; nothing was changed" % (where, MAX_SCSI_QUEUES, value))
    return number


def disk_rules(entries):
    """DiskRules of ``disks`` entries (each a dict with ``match`` and the settings it overrides)."""
    return tuple(DiskRule(match=e['match'], overrides={k: v for k, v in e.items() if k != 'match'}) for e in entries)


def policy_for(name, params, overrides, known=frozenset()):
    """(TunePolicy, skip) for domain ``name``: the module options, then each matching override in
    order (a later one wins a setting; ``disks`` rules add up; ``skip`` from any of them skips).
    ``known``: every domain name (an override keyed by one of them applies to that domain only)."""
    merged = {k: params[k] for k in POLICY_OPTIONS}
    rules = list(params['disks'])
    skip = False
    for pattern, entry in overrides.items():
        if matches(name, pattern, known):
            merged.update({k: v for k, v in entry.items() if k not in ('disks', 'skip')})
            rules.extend(entry.get('disks', []))
            skip = skip or entry.get('skip', False)
    policy = TunePolicy(
        settings=DiskSettings(cache=merged['cache'], io=merged['io'], discard=merged['discard'],
                              detect_zeroes=merged['detect_zeroes']),
        bus=merged['bus'], scsi_queues=scsi_queues(merged['scsi_queues'], '%s: ' % name),
        convert_boot_disk=merged['convert_boot_disk'],
        guards=Guards(allow_unsafe=params['allow_unsafe'], migratable=merged['migratable']),
        disk_rules=disk_rules(rules))
    return policy, skip


def check_literal_rules(plans, params, overrides, known=frozenset()):
    """A literal disk ``match`` (no glob) that matched no disk is a typo: refuse, naming each one
    (and the override it came from). ``plans``: the DomainPlans, with the rules each one matched."""
    matched = set()
    for plan in plans:
        matched.update(plan.matched_rules)
    unknown = [r['match'] for r in params['disks'] if not is_glob(r['match']) and r['match'] not in matched]
    for pattern, entry in overrides.items():
        hit = {m for p in plans if matches(p.name, pattern, known) for m in p.matched_rules}
        unknown.extend("%s (overrides['%s'])" % (r['match'], pattern) for r in entry.get('disks', [])
                       if not is_glob(r['match']) and r['match'] not in hit)
    if unknown:
        raise PlanError('disks: no disk has the target or source %s; nothing was changed' % ', '.join(unknown),
                        unknown_disks=unknown)
