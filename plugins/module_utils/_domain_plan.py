# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""What every planner returns: a DomainPlan (before, after, the changes, errors, warnings) made of
Change records, and the before/after diff a module shows for it. Pure.

The disk-policy transform (``_disk_plan``), the cputune transform (``_cputune_xml``) and
domain_restore all produce DomainPlans, so ``_define.define_plans`` applies them alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._domain_xml import domain_type, parse_domain, redact_secrets

# Domain types whose disks and CPUs this collection tunes (QEMU with or without KVM).
TUNABLE_DOMAIN_TYPES = frozenset(('qemu', 'kvm'))


@dataclass(frozen=True)
class Change:
    """One setting of one device that a plan changes.

    ``device`` names what changes as a user would (``vda``, ``controller scsi 0``, ``vcpu 2``,
    ``emulator``, ``iothread 1`` or ``domain``); ``live`` is True when the change also reaches a
    running domain without a restart (live pins), False when it waits for the next boot.
    """

    device: str | None
    setting: str
    before: object
    after: object
    reason: str = ''
    live: bool = False

    def as_dict(self):
        return {'device': self.device, 'setting': self.setting, 'before': self.before, 'after': self.after,
                'reason': self.reason, 'live': self.live}


@dataclass
class DomainPlan:
    name: str
    before: str                         # the input, serialised as ``after`` is (for diffs)
    after: str
    source: str = ''                    # the input exactly as given (for backups)
    changed: bool = False
    disks: list = field(default_factory=list)
    changes: list = field(default_factory=list)      # Change records
    errors: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    matched_rules: set = field(default_factory=set)
    # Per disk target, the settings the request decided (kvm_disk_tune): what apply=live may bring a
    # running disk to. A disk the plan skips has no entry.
    tuned: dict = field(default_factory=dict)

    def change_dicts(self):
        return [change.as_dict() for change in self.changes] if self.changed else []


def untunable_reason(root):
    """Why a domain is left alone entirely, or '' when its type is one this collection tunes."""
    kind = domain_type(root)
    if kind not in TUNABLE_DOMAIN_TYPES:
        return "domain type '%s' is not QEMU/KVM; left alone" % kind
    return ''


def diff_entry(plan, after_header=None):
    """A before/after diff of one plan, both sides serialised the same way (so only real changes show),
    secrets (graphics passwords, disk cookies) redacted: a result is printed and logged."""
    return {'before': redact_secrets(plan.before),
            'after': redact_secrets(parse_domain(plan.after, 'the XML of domain %s' % plan.name)),
            'before_header': '%s (inactive XML, before)' % plan.name,
            'after_header': after_header or '%s (inactive XML, after)' % plan.name}
