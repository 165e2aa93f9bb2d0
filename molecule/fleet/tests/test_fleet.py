# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""testinfra, per hypervisor over SSH: each host's own libvirt holds its policy and overrides."""

from __future__ import annotations

import xml.etree.ElementTree as ET

EXPECTED = {  # host -> domain -> cache
    'hv1': {'fleet-web': 'none', 'fleet-db': 'none'},
    'hv2': {'fleet-web': 'none', 'fleet-db': 'writeback'},      # a per-VM override in host_vars
    'hv3': {'fleet-web': 'writeback', 'fleet-db': 'writeback'},  # a per-host policy
}


def disk_driver(host, domain):
    xml = host.check_output('virsh -c qemu:///session dumpxml --inactive %s', domain)
    return ET.fromstring(xml).find('devices/disk/driver').attrib


def test_each_host_has_its_policy(host):
    name = host.backend.get_hostname()
    for domain, cache in EXPECTED[name].items():
        driver = disk_driver(host, domain)
        assert driver['cache'] == cache, (name, domain, driver)
        assert driver['discard'] == 'unmap' and driver['iothread'] == '1'


def test_backups_are_on_each_host(host):
    listing = host.check_output('ls ~/kvmio-backups')
    assert 'fleet-web.' in listing and 'fleet-db.' in listing
