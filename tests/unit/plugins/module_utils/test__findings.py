# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Findings that libvirt 9 no longer lets into a stored domain, but older hosts and XML files have."""

from __future__ import annotations

from ansible_collections.kvmio.tuning.plugins.module_utils._disk_policy import DiskInfo
from ansible_collections.kvmio.tuning.plugins.module_utils._findings import disk_findings, domain_findings, summarise
from ansible_collections.kvmio.tuning.plugins.module_utils._support import StorageFacts
from ansible_collections.kvmio.tuning.plugins.module_utils._support import HostSupport

EXT4 = StorageFacts(path='/img/a.qcow2', kind='file', fstype='ext4', odirect=True, shared=False)


def test_native_without_odirect_is_critical_and_the_fix_is_the_tuning_decision():
    disk = DiskInfo(target='vda', bus='virtio', path='/img/a.qcow2', current={'cache': 'writeback', 'io': 'native'})
    found = disk_findings('old01', disk, EXT4, {'format': 'qcow2', 'preallocation': 'metadata'}, HostSupport())
    native = next(f for f in found if f['code'] == 'native_without_odirect')
    assert native['severity'] == 'critical' and native['fix'] == 'kvm_disk_tune cache=none io=native'
    assert summarise(found) == {'critical': 1, 'high': 0, 'medium': 0, 'low': 1}


def test_cdroms_and_tuned_disks_have_no_findings():
    cdrom = DiskInfo(target='hdc', bus='ide', device='cdrom', path='/iso/x.iso')
    tuned = DiskInfo(target='sda', bus='scsi', path='/img/a.qcow2',
                     current={'cache': 'none', 'io': 'native', 'discard': 'unmap'})
    image = {'format': 'qcow2', 'preallocation': 'metadata'}
    assert disk_findings('vm', cdrom, EXT4, None, HostSupport()) == []
    assert disk_findings('vm', tuned, EXT4, image, HostSupport()) == []


def test_unpinned_vcpus_beside_pinned_iothreads():
    found = domain_findings('vm', {}, {1: frozenset({0})}, set())
    assert [f['code'] for f in found] == ['vcpus_unpinned']
