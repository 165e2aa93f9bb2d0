# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Each golden output of tests/data/xmlparse, defined unchanged on libvirt's embedded driver.

libvirt must accept it, and what it stores must need nothing more: libvirt fills in defaults
(machine version, PCI addresses, implicit controllers), but planning its stored XML with the case's
options again changes nothing, the disks sit where the golden put them, and no controller the plan
removed comes back (libvirt adding one back would make every run change the domain again).
"""

from __future__ import annotations

import pytest
from lxml import etree

from ansible_collections.kvmio.tuning.plugins.module_utils._cputune_xml import current_iothreads, current_pins
from helpers import golden
from helpers.golden_cases import BY_NAME


def placement(root):
    """{target dev: (bus, drive controller, unit)} of a domain's disks (libvirt sorts them by bus), and
    {(type, index): model} of its controllers."""
    disks = {}
    for disk in root.findall('devices/disk'):
        target, address = disk.find('target'), disk.find('address')
        drive = address is not None and address.get('type') == 'drive'
        disks[target.get('dev')] = (target.get('bus'), address.get('controller') if drive else None,
                                    address.get('unit') if drive else None)
    controllers = {(c.get('type'), c.get('index')): c.get('model') for c in root.findall('devices/controller')}
    return disks, controllers


@pytest.mark.embed
@pytest.mark.parametrize('name', sorted(BY_NAME))
def test_libvirt_stores_each_golden_output_as_planned(name, embed_conn):
    import libvirt

    case = BY_NAME[name]
    planned_text = golden.read(case.path('out.xml'))
    planned = etree.fromstring(planned_text.encode())
    dom = embed_conn.defineXML(planned_text)
    try:
        stored_text = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    finally:
        dom.undefine()
    stored = etree.fromstring(stored_text.encode())

    again = case.plan(stored_text)
    assert not again.changed, 'the next run would change what libvirt stored: %s' % again.changes

    planned_disks, planned_controllers = placement(planned)
    stored_disks, stored_controllers = placement(stored)
    assert set(stored_disks) == set(planned_disks), stored_text
    for dev, (bus, controller, unit) in planned_disks.items():
        assert stored_disks[dev][0] == bus, stored_text
        if controller is not None:
            assert stored_disks[dev][1:] == (controller, unit), 'libvirt moved %s: %s' % (dev, stored_text)
    for key, model in planned_controllers.items():
        if model is not None:
            assert stored_controllers.get(key) == model, 'controller %s %s: %s' % (key + (stored_text,))
    # No disk controller appears that the plan did not write (an lsilogic HBA libvirt adds below a
    # virtio-scsi one, say), apart from the one the machine has built in.
    built_in = {('sata', '0')} if 'q35' in planned.find('os/type').get('machine') else {('ide', '0')}
    extra = {key for key in stored_controllers if key[0] in ('ide', 'sata', 'scsi')} - set(planned_controllers)
    assert extra <= built_in, 'libvirt added %s: %s' % (sorted(extra - built_in), stored_text)
    removed = [c.device for c in case.plan(golden.read(case.path('in.xml'))).changes
               if c.device and c.device.startswith('controller ') and c.setting == 'model' and c.after is None]
    for device in removed:
        _word, ctype, index = device.split()
        assert (ctype, index) not in stored_controllers, 'libvirt added back %s: %s' % (device, stored_text)
    # The cputune transform: iothreads and pins stored as written.
    assert current_iothreads(stored) == current_iothreads(planned)
    for tag, key in (('vcpupin', 'vcpu'), ('iothreadpin', 'iothread')):
        assert current_pins(stored, tag, key) == current_pins(planned, tag, key)
    assert stored.find('numatune/memory') is None or planned.find('numatune/memory') is not None
    if planned.find('numatune/memory') is not None:
        assert stored.find('numatune/memory').attrib == planned.find('numatune/memory').attrib
