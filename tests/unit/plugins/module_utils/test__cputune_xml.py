# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The iothreads/cputune/numatune transform, on a typical domain and on libvirt's test corpus."""

from __future__ import annotations

import os

import pytest
from lxml import etree

from ansible_collections.kvmio.tuning.plugins.module_utils._cputune_xml import CpuTune, plan_cputune
from ansible_collections.kvmio.tuning.plugins.module_utils._domain_xml import canonical, vcpu_count
from helpers import domain_xml as dx
from helpers.corpus import CORPUS, corpus_documents

DOCUMENTS = corpus_documents(valid=True, positive=True)
_SCHEMA = []


def tune_for(text):
    count = vcpu_count(etree.fromstring(text.encode())) or 1
    return CpuTune(iothreads=2, vcpus={i: frozenset({2 + i % 4}) for i in range(count)}, emulator=frozenset({0}),
                   iothread_pins={1: frozenset({0, 1}), 2: frozenset({0, 1})}, numa_node=0, numa_mode='preferred')


def test_typical_domain():
    text = dx.domain('web01', [dx.disk('/img/a.qcow2', 'vda', 'virtio'), dx.disk('/img/b.qcow2', 'vdb', 'virtio'),
                               dx.disk('/img/c.qcow2', 'vdc', 'virtio'), dx.disk('/img/d.qcow2', 'hda', 'ide')],
                     vcpus=2)
    plan = plan_cputune(text, CpuTune(iothreads=2, disk_iothreads={'vdc': 1}, vcpus={0: {1}, 1: {2, 3}},
                                      emulator=frozenset({0}), iothread_pins={1: {0}, 2: {0}}, numa_node=0,
                                      numa_mode='strict'))
    root = etree.fromstring(plan.after.encode())
    assert root.findtext('iothreads') == '2'
    assert [(d.find('target').get('dev'), (d.find('driver').get('iothread'))) for d in root.findall('devices/disk')] \
        == [('vda', '1'), ('vdb', '2'), ('vdc', '1'), ('hda', None)]
    assert [(p.get('vcpu'), p.get('cpuset')) for p in root.findall('cputune/vcpupin')] == [('0', '1'), ('1', '2-3')]
    assert root.find('cputune/emulatorpin').get('cpuset') == '0'
    assert [(p.get('iothread'), p.get('cpuset')) for p in root.findall('cputune/iothreadpin')] == [('1', '0'), ('2', '0')]
    assert root.find('numatune/memory').attrib == {'mode': 'strict', 'nodeset': '0'}
    assert [(c.device, c.setting) for c in plan.changes if not c.live] == [
        ('vda', 'iothread'), ('vdb', 'iothread'), ('vdc', 'iothread'), ('domain', 'numatune memory')]
    assert not plan_cputune(plan.after, CpuTune(iothreads=2, disk_iothreads={'vdc': 1}, vcpus={0: {1}, 1: {2, 3}},
                                                emulator=frozenset({0}), iothread_pins={1: {0}, 2: {0}},
                                                numa_node=0, numa_mode='strict')).changed


def test_nothing_asked_changes_nothing():
    text = dx.domain('web01', [dx.disk('/img/a.qcow2', 'vda', 'virtio')])
    assert not plan_cputune(text, CpuTune()).changed


@pytest.mark.parametrize('relpath', DOCUMENTS or ['(no corpus)'])
def test_corpus_stays_valid_idempotent_and_local(relpath):
    if not DOCUMENTS:
        pytest.skip('no corpus at %s' % CORPUS)
    with open(os.path.join(CORPUS, relpath), encoding='utf-8') as handle:
        text = handle.read()
    tune = tune_for(text)
    plan = plan_cputune(text, tune, relpath)
    if plan.changed:
        if not _SCHEMA:
            _SCHEMA.append(etree.RelaxNG(etree.parse(os.path.join(CORPUS, 'schemas', 'domain.rng'))))
        assert _SCHEMA[0].validate(etree.fromstring(plan.after.encode())), _SCHEMA[0].error_log
    assert not plan_cputune(plan.after, tune, relpath).changed

    def outside(xml):
        root = etree.fromstring(xml.encode())
        for tag in ('iothreads', 'iothreadids', 'cputune', 'numatune'):
            for el in root.findall(tag):
                root.remove(el)
        for driver in root.findall('devices/disk/driver') + root.findall('devices/controller/driver'):
            driver.attrib.pop('iothread', None)
            if not driver.attrib and len(driver) == 0:
                driver.getparent().remove(driver)
        return canonical(root)
    assert outside(plan.after) == outside(plan.before)


def test_iothreads_zero_takes_disks_off_their_iothreads():
    text = dx.domain('web01', [dx.disk('/img/a.qcow2', 'vda', 'virtio'), dx.disk('/img/b.qcow2', 'vdb', 'virtio')])
    two = plan_cputune(text, CpuTune(iothreads=2))
    assert not two.errors
    none = plan_cputune(two.after, CpuTune(iothreads=0))
    root = etree.fromstring(none.after.encode())
    assert not none.errors and [d.find('driver').get('iothread') for d in root.findall('devices/disk')] == [None, None]
    changes = {(c.device, c.setting, c.after) for c in none.changes}
    assert changes == {('domain', 'iothreads', 0), ('vda', 'iothread', None), ('vdb', 'iothread', None)}


def test_a_plan_naming_an_iothread_the_domain_lacks_is_refused():
    text = dx.domain('web01', [dx.disk('/img/a.qcow2', 'vda', 'virtio'), dx.disk('/img/b.qcow2', 'vdb', 'virtio')])
    plan = plan_cputune(text, CpuTune(iothreads=2, disk_iothreads={'vdb': 9}))
    assert plan.errors == ['web01: disk vdb would use iothread 9, but the domain has iothreads 1-2']
    pinned = text.replace('</vcpu>', '</vcpu><iothreads>4</iothreads><cputune><iothreadpin iothread="4" cpuset="0"/>'
                                     '<iothreadpin iothread="1" cpuset="1"/></cputune>')
    plan = plan_cputune(pinned, CpuTune(iothreads=2))
    assert not plan.errors, 'fewer iothreads: the pins of those removed go too'
    assert [p.get('iothread') for p in etree.fromstring(plan.after.encode()).findall('cputune/iothreadpin')] == ['1']
    controller = text.replace('</devices>', "<controller type='scsi' index='0' model='virtio-scsi'>"
                                            "<driver iothread='3'/></controller></devices>")
    plan = plan_cputune(controller, CpuTune(iothreads=2, disk_iothreads={'vda': 2}))
    assert not plan.errors, 'round robin reassigns every iothread user, controllers too'
    lun = text.replace("<target dev='vdb' bus='virtio'/>", "<target dev='vdb' bus='virtio'/><driver iothread='7'/>")
    lun = lun.replace("device='disk'><driver name='qemu' type='qcow2'/><source file='/img/b.qcow2'/>",
                      "device='lun'><source file='/img/b.qcow2'/>")
    plan = plan_cputune(lun, CpuTune(iothreads=1))
    assert plan.errors == ['web01: disk vdb would use iothread 7, but the domain has iothreads 1']
