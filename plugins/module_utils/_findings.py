# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Audit findings for a disk or a domain, with the fix the collection would apply. Pure.

A disk's findings are the rule table and the advisory table of ``_disk_policy`` run on the disk's
current settings; the fix for cache and io is what ``decide_disk`` recommends. So the audit never
disagrees with the tuning: a rule the tuner enforces is a finding here, with the same words.
"""

from __future__ import annotations

from ._disk_policy import ADVISORIES, DISK_RULES, SEVERITIES, THIN_QCOW2, Check, broken_rules, \
    disk_kind_skip_reason, effective_settings, recommended

# Domain-level advisories (CPU pins), fixed by iothread_pin.
VCPUS_UNPINNED = Check('vcpus_unpinned', 'low', frozenset(), None, 'pin the vCPUs too', fixed_by='iothread_pin',
                       remedy='vcpu_pinning=auto', evidence='vCPUs and pinned iothreads compete for the same CPUs')
PINS_OVERLAP = Check('pins_overlap', 'medium', frozenset(), None, 'give each domain its own CPUs',
                     fixed_by='iothread_pin', remedy='vcpu_pinning=auto',
                     evidence='two dedicated vCPUs time-share one CPU')
DOMAIN_ADVISORIES = (VCPUS_UNPINNED, PINS_OVERLAP)


def _finding(check, subject, message, fix):
    return {'code': check.code, 'severity': check.severity, 'subject': subject, 'message': message, 'fix': fix,
            'fixed_by': check.fixed_by, 'evidence': check.evidence}


def disk_findings(domain, disk, storage, image, host):
    """Findings for one disk. ``storage``: StorageFacts or None; ``image``: image facts dict or None."""
    if disk_kind_skip_reason(disk):
        return []
    subject = '%s/%s' % (domain, disk.target)
    settings = recommended(disk, storage, host)
    found = []
    for check, message in broken_rules(disk, disk.current, storage, host, checks=DISK_RULES + ADVISORIES):
        found.append(_finding(check, subject, message, '%s %s' % (check.fixed_by, check.remedy or settings)))
    eff = effective_settings(disk, host=host)
    message = THIN_QCOW2.check(disk, disk.current, eff, storage, host, None, image=image)
    if message:
        found.append(_finding(THIN_QCOW2, subject, message, '%s %s' % (THIN_QCOW2.fixed_by, THIN_QCOW2.remedy)))
    return found


def domain_findings(domain, vcpu_pins, iothread_pins, others_vcpu_cpus):
    """Domain-level findings: unpinned vCPUs beside pinned iothreads, vCPU pins shared with other domains."""
    found = []

    def add(check, message):
        found.append(_finding(check, domain, message, '%s %s' % (check.fixed_by, check.remedy)))

    if iothread_pins and not vcpu_pins:
        add(VCPUS_UNPINNED, 'iothreads are pinned but vCPUs float over every CPU, including the iothreads\' ones')
    mine = set().union(*vcpu_pins.values()) if vcpu_pins else set()
    overlap = sorted(mine & others_vcpu_cpus)
    if overlap:
        add(PINS_OVERLAP, 'vCPUs pinned to CPUs that other domains\' vCPUs are pinned to: %s'
            % ','.join(map(str, overlap)))
    return found


def summarise(findings):
    counts = {severity: 0 for severity in SEVERITIES}
    for finding in findings:
        counts[finding['severity']] += 1
    return counts
