# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The throwaway guest's domain XML: a golden document, schema validity for every bus, attributes left out."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from lxml import etree

from ansible_collections.kvmio.tuning.plugins.module_utils._guest_xml import GuestDisk, GuestSpec, guest_domain_xml
from helpers.corpus import CORPUS

GOLDEN = os.path.join(os.path.dirname(__file__), 'fixtures', 'guest_domain_virtio_iothread.xml')
_SCHEMA = []


def schema():
    path = os.path.join(CORPUS, 'schemas', 'domain.rng')
    if not os.path.exists(path):
        pytest.skip('no libvirt schema corpus at %s' % CORPUS)
    if not _SCHEMA:
        _SCHEMA.append(etree.RelaxNG(etree.parse(path)))
    return _SCHEMA[0]


def spec(**disk):
    return GuestSpec(name='kvmio-bench-0123456789ab', kernel='/srv/vm/.kvmio-guest-x/vmlinuz',
                     initrd='/srv/vm/.kvmio-guest-x/initrd.img', cmdline='console=ttyS0 quiet kvmio.bus=virtio',
                     console_log='/srv/vm/.kvmio-guest-x/console.log',
                     disk=GuestDisk(path='/srv/vm/.kvmio-guest-x/scratch.qcow2', **disk))


def test_golden_virtio_disk_with_iothread_and_none_native():
    xml = guest_domain_xml(spec(cache='none', io='native', iothread=True))
    with open(GOLDEN, encoding='utf-8') as handle:
        assert xml == handle.read()


@pytest.mark.parametrize('bus', ['virtio', 'scsi', 'sata', 'ide'])
@pytest.mark.parametrize('iothread', [False, True])
def test_every_bus_is_valid_domain_xml(bus, iothread):
    if iothread and bus in ('sata', 'ide'):
        return
    root = etree.fromstring(guest_domain_xml(spec(bus=bus, iothread=iothread, cache='writethrough')).encode())
    schema().assertValid(root)
    target = root.find('devices/disk/target')
    assert target.get('bus') == bus
    assert root.find('os/type').get('machine') == ('pc' if bus == 'ide' else 'q35')
    assert root.find('devices/disk/driver').get('cache') == 'writethrough'
    if bus == 'scsi':
        controller = root.find("devices/controller[@type='scsi']")
        assert controller.get('model') == 'virtio-scsi'
        assert (controller.find('driver') is not None) == iothread
        assert root.find('devices/disk/driver').get('iothread') is None
    if bus == 'virtio':
        assert (root.find('devices/disk/driver').get('iothread') == '1') == iothread
    assert (root.find('iothreads') is not None) == iothread


def test_default_cache_and_io_write_no_attribute_and_nothing_else_is_attached():
    root = etree.fromstring(guest_domain_xml(spec()).encode())
    driver = root.find('devices/disk/driver')
    assert driver.get('cache') is None and driver.get('io') is None and driver.get('type') == 'qcow2'
    devices = [child.tag for child in root.find('devices')]
    assert devices == ['disk', 'controller', 'serial', 'memballoon']
    assert root.find("devices/controller[@type='usb']").get('model') == 'none'
    assert [root.findtext(e) for e in ('on_poweroff', 'on_reboot', 'on_crash')] == ['destroy'] * 3
    assert root.get('type') == 'qemu'
    kvm = etree.fromstring(guest_domain_xml(replace(spec(), domain_type='kvm')).encode())
    assert kvm.get('type') == 'kvm'


def test_hostile_values_stay_text():
    # Paths and the command line go through lxml, never string formatting.
    root = etree.fromstring(guest_domain_xml(GuestSpec(
        name="a'b", kernel='/k', initrd='/i', cmdline='x="<devices/>"', console_log='/c&d',
        disk=GuestDisk(path="/x'/></disk><disk"))).encode())
    assert root.findtext('os/cmdline') == 'x="<devices/>"'
    assert root.find('devices/disk/source').get('file') == "/x'/></disk><disk"
    assert len(root.findall('devices/disk')) == 1
    with pytest.raises(ValueError):
        guest_domain_xml(spec(bus='usb'))
