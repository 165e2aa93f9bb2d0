# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""testinfra checks after converge: domain XML through libvirt, live pins, image info."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

DIR = '/var/tmp/kvmio-molecule-default'


def inactive(host, name):
    return ET.fromstring(host.check_output('virsh -c qemu:///system dumpxml --inactive %s', name))


def drivers(root):
    return {d.find('target').get('dev'): (d.find('target').get('bus'), d.find('driver').attrib)
            for d in root.findall('devices/disk')}


def test_web_gets_none_native_discard_and_an_iothread(host):
    root = inactive(host, 'molecule-kvmio-web')
    bus, driver = drivers(root)['vda']
    assert (bus, driver['cache'], driver['io'], driver['discard'], driver['iothread']) == \
        ('virtio', 'none', 'native', 'unmap', '1')
    assert root.findtext('iothreads') == '1'
    assert root.find('cputune/vcpupin').get('cpuset') == '1'


def test_overrides_per_vm(host):
    assert drivers(inactive(host, 'molecule-kvmio-db'))['vda'][1]['cache'] == 'directsync'
    legacy = inactive(host, 'molecule-kvmio-legacy')
    assert drivers(legacy)['sda'][0] == 'scsi'
    assert legacy.find("devices/controller[@type='scsi']").get('model') == 'virtio-scsi'


def test_running_domain_is_pinned_live(host):
    out = host.check_output('virsh -c qemu:///system vcpupin molecule-kvmio-web --live')
    assert out.split()[-1] == '1', out
    assert host.check_output('virsh -c qemu:///system emulatorpin molecule-kvmio-web --live').split()[-1] == '0'


def test_images_were_preallocated_by_the_images_role(host):
    extents = json.loads(host.check_output('qemu-img map -U --output=json %s/molecule-kvmio-db.qcow2', DIR))
    assert all('offset' in e for e in extents), 'converted to metadata preallocation'
    assert host.file(DIR + '/molecule-kvmio-web.qcow2').exists, 'the running domain\'s image is left alone'
