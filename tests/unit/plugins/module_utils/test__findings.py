# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Findings: the rule and advisory tables run on current settings, one example per code."""

from __future__ import annotations

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._disk_policy import ADVISORIES, ALL_CODES, DISK_RULES, \
    DiskInfo, DiskSettings, Guards, decide_disk
from ansible_collections.kvmio.tuning.plugins.module_utils._findings import DOMAIN_ADVISORIES, disk_findings, \
    domain_findings, summarise
from ansible_collections.kvmio.tuning.plugins.module_utils._support import HostSupport, StorageFacts

MODERN = HostSupport(qemu=(7, 2, 0), libvirt=(9, 0, 0), kernel=(6, 1, 0), io_uring_enabled=True,
                     qemu_has_io_uring=True)
OLD = HostSupport(qemu=(4, 2, 0), libvirt=(6, 0, 0), kernel=(4, 19, 0))
EXT4 = StorageFacts(path='/img/a.qcow2', kind='file', fstype='ext4', odirect=True, shared=False)
ZFS = StorageFacts(path='/img/a.qcow2', kind='file', fstype='zfs', odirect=False, shared=False, detail='EINVAL')
PREALLOCATED = {'format': 'qcow2', 'preallocation': 'metadata'}
TUNED = {'cache': 'none', 'io': 'native', 'discard': 'unmap', 'detect_zeroes': 'unmap'}


def disk(**kw):
    base = dict(target='vda', bus='virtio', path='/img/a.qcow2', iothread='1', current=dict(TUNED))
    current = kw.pop('current', {})
    base.update(kw)
    base['current'] = dict(base['current'], **current)
    return DiskInfo(**base)


# One disk per code: the code it must raise, on which storage and host, with which image.
EXAMPLES = {
    'odirect_refused': (disk(), ZFS, MODERN, PREALLOCATED),
    'native_without_odirect': (disk(current={'cache': 'writeback'}), EXT4, MODERN, PREALLOCATED),
    'io_uring_unsupported': (disk(current={'cache': 'writeback', 'io': 'io_uring'}), EXT4, OLD, PREALLOCATED),
    'detect_zeroes_unmap_without_discard': (disk(current={'discard': None}), EXT4, MODERN, PREALLOCATED),
    'unsafe_cache': (disk(current={'cache': 'unsafe', 'io': 'threads'}), EXT4, MODERN, PREALLOCATED),
    'shareable_cached': (disk(shareable=True, current={'cache': 'writeback', 'io': 'threads'}), EXT4, MODERN,
                         PREALLOCATED),
    'writethrough': (disk(current={'cache': 'writethrough', 'io': 'threads'}), EXT4, MODERN, PREALLOCATED),
    'ide_bus': (disk(bus='ide', target='hda'), EXT4, MODERN, PREALLOCATED),
    'sata_bus': (disk(bus='sata', target='sda'), EXT4, MODERN, PREALLOCATED),
    'no_iothread': (disk(iothread=None), EXT4, MODERN, PREALLOCATED),
    'host_page_cache': (disk(current={'cache': None, 'io': None}), EXT4, MODERN, PREALLOCATED),
    'no_discard': (disk(current={'discard': None, 'detect_zeroes': None}), EXT4, MODERN, PREALLOCATED),
    'thin_qcow2': (disk(), EXT4, MODERN, {'format': 'qcow2', 'preallocation': 'off'}),
}


def test_every_code_has_an_example():
    assert set(EXAMPLES) | {'unmigratable_cache'} == set(ALL_CODES)


@pytest.mark.parametrize('code', sorted(EXAMPLES))
def test_each_example_raises_its_code(code):
    example, storage, host, image = EXAMPLES[code]
    codes = [f['code'] for f in disk_findings('vm', example, storage, image, host)]
    assert code in codes, codes


def test_unmigratable_is_a_tuning_guard_not_an_audit_finding():
    # The audit cannot know whether a domain must migrate; the tuner refuses it under migratable=true.
    example = disk(current={'cache': 'writeback', 'io': 'threads'})
    assert 'unmigratable_cache' not in [f['code'] for f in disk_findings('vm', example, EXT4, PREALLOCATED, MODERN)]
    decision = decide_disk(DiskInfo(target='vda', bus='virtio', path='/img/a.qcow2'),
                           DiskSettings(cache='writeback', io=None), EXT4, MODERN, Guards(migratable=True))
    assert decision.errors and 'unmigratable' in decision.errors[0]


def test_a_tuned_disk_has_no_findings():
    assert disk_findings('vm', disk(), EXT4, PREALLOCATED, MODERN) == []


def test_a_disk_without_a_cache_mode_runs_writeback_and_is_not_writethrough():
    # QEMU >= 1.2 runs writeback for a disk without a cache attribute: a small finding, not 'writethrough'.
    found = disk_findings('vm', disk(current={'cache': None, 'io': None}), EXT4, PREALLOCATED, MODERN)
    assert [(f['code'], f['severity']) for f in found] == [('host_page_cache', 'low')]
    legacy = disk_findings('vm', disk(current={'cache': None, 'io': None}), EXT4, PREALLOCATED,
                           HostSupport(qemu=(1, 1, 0)))
    assert 'writethrough' in [f['code'] for f in legacy]


def test_the_fix_is_the_tuning_decision():
    found = disk_findings('old01', disk(current={'cache': 'writeback', 'io': 'native'}), EXT4, PREALLOCATED, MODERN)
    native = next(f for f in found if f['code'] == 'native_without_odirect')
    assert native['severity'] == 'critical' and native['fix'] == 'kvm_disk_tune cache=none io=native'
    on_zfs = disk_findings('old01', disk(), ZFS, PREALLOCATED, MODERN)
    assert [f['fix'] for f in on_zfs] == ['kvm_disk_tune cache=writeback io=io_uring']
    assert summarise(found) == {'critical': 1, 'high': 0, 'medium': 0, 'low': 1}


def test_every_rule_the_tuner_enforces_is_a_finding_with_the_same_words():
    # The audit and the tuner read one table: what the tuner refuses, the audit reports as critical or high.
    example, storage, host, _image = EXAMPLES['native_without_odirect']
    refused = decide_disk(disk(), DiskSettings(cache='writeback', io=None), storage, host)
    finding = next(f for f in disk_findings('vm', example, storage, PREALLOCATED, host)
                   if f['code'] == 'native_without_odirect')
    assert finding['message'] in refused.errors[0]
    assert {c.severity for c in DISK_RULES} <= {'critical', 'high'}
    assert all(c.evidence for c in DISK_RULES + ADVISORIES + DOMAIN_ADVISORIES)


def test_cdroms_have_no_findings():
    cdrom = DiskInfo(target='hdc', bus='ide', device='cdrom', path='/iso/x.iso')
    assert disk_findings('vm', cdrom, EXT4, None, MODERN) == []


def test_unpinned_vcpus_beside_pinned_iothreads_and_shared_pins():
    found = domain_findings('vm', {}, {1: frozenset({0})}, set())
    assert [f['code'] for f in found] == ['vcpus_unpinned']
    shared = domain_findings('vm', {0: frozenset({2})}, {}, {2, 3})
    assert [(f['code'], f['fix']) for f in shared] == [('pins_overlap', 'iothread_pin vcpu_pinning=auto')]
