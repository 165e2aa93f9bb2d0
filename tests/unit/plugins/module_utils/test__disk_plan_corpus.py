# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The disk-policy transform on every schema-valid, positive document of libvirt's test corpus.

For each policy: the output is still valid against libvirt's domain.rng, tuning the output again
changes nothing, and everything outside ``<disk>``/``<controller>`` is unchanged (and, without a
bus change, each disk differs only in the driver attributes the collection owns).
"""

from __future__ import annotations

import copy
import os

import pytest
from lxml import etree

from ansible_collections.kvmio.tuning.plugins.module_utils._disk_plan import TunePolicy, plan_domain
from ansible_collections.kvmio.tuning.plugins.module_utils._disk_policy import SETTINGS, DiskSettings
from ansible_collections.kvmio.tuning.plugins.module_utils._domain_xml import canonical
from ansible_collections.kvmio.tuning.plugins.module_utils._support import StorageFacts
from ansible_collections.kvmio.tuning.plugins.module_utils._support import HostSupport
from helpers.corpus import CORPUS, corpus_documents

HOST = HostSupport(qemu=(7, 2, 0), libvirt=(9, 0, 0), kernel=(6, 1, 0), io_uring_enabled=True, qemu_has_io_uring=True)


class EveryPathOnExt4(dict):
    """Storage facts for any path: a local ext4 file where O_DIRECT works."""

    def get(self, key, default=None):
        return StorageFacts(path=key, kind='file', fstype='ext4', mountpoint='/', odirect=True, shared=False,
                            image_format='qcow2', chain=(key,))


POLICIES = {
    'auto-unprobed': (TunePolicy(settings=DiskSettings(discard='unmap', detect_zeroes='auto')), None),
    'none-native': (TunePolicy(settings=DiskSettings(cache='none', io='native', discard='unmap')), EveryPathOnExt4()),
    'scsi': (TunePolicy(settings=DiskSettings(cache='writeback', io='threads', discard='unmap'), bus='scsi',
                        scsi_queues='auto', convert_boot_disk=True), EveryPathOnExt4()),
    'virtio': (TunePolicy(settings=DiskSettings(cache='auto', io='auto'), bus='virtio', convert_boot_disk=True),
               EveryPathOnExt4()),
}

DOCUMENTS = corpus_documents(valid=True, positive=True)
_SCHEMA = []


def schema():
    if not _SCHEMA:
        _SCHEMA.append(etree.RelaxNG(etree.parse(os.path.join(CORPUS, 'schemas', 'domain.rng'))))
    return _SCHEMA[0]


def _without(root_text, tags):
    root = etree.fromstring(root_text.encode())
    devices = root.find('devices')
    if devices is not None:
        for child in list(devices):
            if child.tag in tags:
                devices.remove(child)
    return canonical(root)


def _disk_without_owned(disk):
    disk = copy.deepcopy(disk)
    driver = disk.find('driver')
    if driver is not None:
        for key in SETTINGS:
            driver.attrib.pop(key, None)
        if not driver.attrib and len(driver) == 0:
            disk.remove(driver)
    return canonical(disk)


def test_corpus_is_there():
    if not DOCUMENTS:
        pytest.skip('no corpus at %s (set KVMIO_CORPUS); the sweep below runs where ../shared exists' % CORPUS)
    assert len(DOCUMENTS) > 2000


@pytest.mark.parametrize('relpath', DOCUMENTS or ['(no corpus)'])
def test_transform_keeps_valid_idempotent_and_local(relpath):
    if not DOCUMENTS:
        pytest.skip('no corpus')
    with open(os.path.join(CORPUS, relpath), encoding='utf-8') as handle:
        text = handle.read()
    for name, (policy, storage) in POLICIES.items():
        plan = plan_domain(text, policy, storage, HOST, origin=relpath)
        if plan.errors:
            assert plan.after == plan.before, '%s: a plan with errors must not edit' % name
            continue
        if plan.changed:
            doc = etree.fromstring(plan.after.encode())
            assert schema().validate(doc), '%s/%s: output invalid: %s' % (relpath, name, schema().error_log)
        again = plan_domain(plan.after, policy, storage, HOST, origin=relpath)
        assert not again.changed, '%s/%s: second run changed %s' % (relpath, name, again.changes)
        assert again.after == plan.after
        assert _without(plan.after, ('disk', 'controller')) == _without(plan.before, ('disk', 'controller')), \
            '%s/%s: changed something outside disks and controllers' % (relpath, name)
        if policy.bus == 'keep':
            before = etree.fromstring(plan.before.encode()).findall('devices/disk')
            after = etree.fromstring(plan.after.encode()).findall('devices/disk')
            assert [_disk_without_owned(d) for d in before] == [_disk_without_owned(d) for d in after]
            assert _without(plan.after, ('disk',)) == _without(plan.before, ('disk',))


def test_sweep_exercises_every_policy():
    """Guards the sweep above against passing vacuously: the corpus must really get edited."""
    if not DOCUMENTS:
        pytest.skip('no corpus')
    counts = {name: {'changed': 0, 'bus': 0} for name in POLICIES}
    for relpath in DOCUMENTS[::5]:
        with open(os.path.join(CORPUS, relpath), encoding='utf-8') as handle:
            text = handle.read()
        for name, (policy, storage) in POLICIES.items():
            plan = plan_domain(text, policy, storage, HOST)
            counts[name]['changed'] += plan.changed
            counts[name]['bus'] += any(c.setting == 'bus' for c in plan.changes)
    for name, count in counts.items():
        assert count['changed'] >= 100, (name, count)
    assert counts['scsi']['bus'] >= 100 and counts['virtio']['bus'] >= 60, counts
