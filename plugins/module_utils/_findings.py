# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Audit findings for a disk or a domain, with the fix the collection would apply. Pure.

The fixes come from the same ``decide_disk`` that kvm_disk_tune applies, so the audit never
disagrees with the tuning it recommends.
"""

from __future__ import annotations

from ._disk_policy import ODIRECT_CACHES, DiskSettings, decide_disk, disk_kind_skip_reason

SEVERITIES = ('critical', 'high', 'medium', 'low')


def _finding(code, severity, subject, message, fix):
    return {'code': code, 'severity': severity, 'subject': subject, 'message': message, 'fix': fix}


def disk_findings(domain, disk, storage, image, host):
    """Findings for one disk. ``storage``: StorageFacts or None; ``image``: image facts dict or None."""
    if disk_kind_skip_reason(disk):
        return []
    subject = '%s/%s' % (domain, disk.target)
    auto = decide_disk(disk, DiskSettings(cache='auto', io='auto'), storage, host)
    recommended = 'cache=%s io=%s' % (auto.wanted.get('cache', disk.current.get('cache')),
                                      auto.wanted.get('io', disk.current.get('io')))
    cache, io = disk.current.get('cache'), disk.current.get('io')
    found = []
    if cache in ODIRECT_CACHES and storage is not None and storage.odirect is False:
        found.append(_finding('odirect_refused', 'critical', subject,
                              'cache=%s needs O_DIRECT, which %s refuses: the domain will not start'
                              % (cache, storage.fstype), 'kvm_disk_tune ' + recommended))
    if io == 'native' and cache not in ODIRECT_CACHES:
        found.append(_finding('native_without_odirect', 'critical', subject,
                              'io=native without an O_DIRECT cache (cache=%s): QEMU refuses to start it' % (cache or 'default'),
                              'kvm_disk_tune ' + recommended))
    if cache in (None, 'writethrough') and disk.source_type != 'network':
        found.append(_finding('writethrough', 'high', subject,
                              'cache=%s: every write waits for the disk (10-100x slower small writes)'
                              % (cache or 'default (writethrough)'), 'kvm_disk_tune ' + recommended))
    if image and image.get('format') == 'qcow2' and image.get('preallocation') == 'off':
        found.append(_finding('thin_qcow2', 'medium', subject,
                              'thin qcow2 image %s: allocating writes run at about half speed' % disk.path,
                              'qcow2_create convert=true preallocation=metadata (domain shut down)'))
    if disk.device == 'disk' and disk.bus in ('ide', 'sata'):
        found.append(_finding('emulated_bus', 'medium', subject,
                              'bus %s is emulated: far slower than virtio' % disk.bus,
                              'kvm_disk_tune bus=scsi (needs the virtio-scsi driver in the guest)'))
    if not disk.readonly and disk.current.get('discard') != 'unmap' and disk.source_type != 'network':
        found.append(_finding('no_discard', 'low', subject, 'guest discards do not free host space',
                              'kvm_disk_tune discard=unmap detect_zeroes=auto'))
    return found


def domain_findings(domain, vcpu_pins, iothread_pins, others_vcpu_cpus):
    """Domain-level findings: unpinned vCPUs beside pinned iothreads, vCPU pins shared with other domains."""
    found = []
    if iothread_pins and not vcpu_pins:
        found.append(_finding('vcpus_unpinned', 'low', domain,
                              'iothreads are pinned but vCPUs float over every CPU, including the iothreads\' ones',
                              'iothread_pin vcpu_pinning=auto'))
    mine = set().union(*vcpu_pins.values()) if vcpu_pins else set()
    overlap = sorted(mine & others_vcpu_cpus)
    if overlap:
        found.append(_finding('pins_overlap', 'medium', domain,
                              'vCPUs pinned to CPUs that other domains\' vCPUs are pinned to: %s'
                              % ','.join(map(str, overlap)), 'iothread_pin vcpu_pinning=auto'))
    return found


def summarise(findings):
    counts = {severity: 0 for severity in SEVERITIES}
    for finding in findings:
        counts[finding['severity']] += 1
    return counts
