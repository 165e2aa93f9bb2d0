# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Bus changes: disks that cannot live on the new bus stay where they are, with a warning naming
them; addresses never clash with the ones libvirt gives unaddressed disks; dropped settings are
reported. Each refusal was seen on libvirt 9.0 (tests/integration/test_define_safety.py checks the
results against the real daemon)."""

from __future__ import annotations

import pytest
from lxml import etree

from ansible_collections.kvmio.tuning.plugins.module_utils._bus_convert import disk_index, dev_suffix
from ansible_collections.kvmio.tuning.plugins.module_utils._disk_plan import TunePolicy, plan_domain
from ansible_collections.kvmio.tuning.plugins.module_utils._disk_policy import DiskSettings

KEEP = DiskSettings(cache='keep', io='keep')
DISKS = {
    'vdb': "<disk type='vhostuser' device='disk'><driver name='qemu' type='raw'/><source type='unix' "
           "path='/run/vhost.sock'/><target dev='vdb' bus='virtio'/></disk>",
    'vdc': "<disk type='file' device='disk'><driver name='qemu' type='qcow2' iommu='on' packed='on'/>"
           "<source file='/i/c.qcow2'/><target dev='vdc' bus='virtio'/></disk>",
    'vdd': "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/i/d.qcow2'/>"
           "<target dev='vdd' bus='virtio'/><acpi index='5'/></disk>",
    'hdb': "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/i/b.qcow2'/>"
           "<target dev='hdb' bus='ide'/><geometry cyls='16' heads='16' secs='63' trans='lba'/></disk>",
    'hdc': "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/i/e.qcow2'/>"
           "<target dev='hdc' bus='ide'/><geometry cyls='16' heads='16' secs='63'/></disk>",
    'vde': "<disk type='file' device='disk'><driver name='qemu' type='qcow2' queues='2' iothread='1'/>"
           "<source file='/i/f.qcow2'/><target dev='vde' bus='virtio'/></disk>",
}


def domain(disks):
    return ("<domain type='qemu'><name>d</name><vcpu>2</vcpu><iothreads>1</iothreads><os><type>hvm</type></os>"
            "<devices><disk type='file' device='disk'><source file='/i/root.qcow2'/><target dev='vda' bus='virtio'/>"
            "</disk>%s</devices></domain>" % ''.join(disks))


def buses(xml):
    root = etree.fromstring(xml.encode())
    return {d.find('source').get('file') or d.find('source').get('path'): d.find('target').get('bus')
            for d in root.findall('devices/disk')}


@pytest.mark.parametrize('dev, why', [
    ('vdb', 'a vhostuser disk exists only as a virtio-blk device; libvirt refuses it on bus scsi'),
    ('vdc', 'its driver sets iommu=on, packed=on, which only virtio devices have'),
    ('vdd', 'it has ACPI index 5, which only PCI devices have'),
    ('hdb', 'its geometry sets the BIOS translation trans=lba, which only bus ide has'),
])
def test_a_disk_that_cannot_leave_its_bus_stays_with_a_warning(dev, why):
    plan = plan_domain(domain([DISKS[dev]]), TunePolicy(settings=KEEP, bus='scsi'))
    assert not any(c.device == dev and c.setting == 'bus' for c in plan.changes), plan.changes
    warning = [w for w in plan.warnings if w.startswith('d: disk %s stays on bus ' % dev)]
    assert warning and why in warning[0], plan.warnings


def test_disks_that_can_move_still_move_beside_those_that_cannot():
    plan = plan_domain(domain(DISKS.values()), TunePolicy(settings=KEEP, bus='scsi'))
    assert buses(plan.after) == {'/i/root.qcow2': 'virtio', '/run/vhost.sock': 'virtio', '/i/c.qcow2': 'virtio',
                                 '/i/d.qcow2': 'virtio', '/i/b.qcow2': 'ide', '/i/e.qcow2': 'scsi',
                                 '/i/f.qcow2': 'scsi'}
    # What a move drops is reported, not silently lost.
    dropped = {(c.device, c.setting, c.before) for c in plan.changes if c.after is None and c.device == 'vde'}
    assert dropped == {('vde', 'queues', '2'), ('vde', 'iothread', '1')}
    to_virtio = plan_domain(domain(DISKS.values()), TunePolicy(settings=KEEP, bus='virtio'))
    assert buses(to_virtio.after)['/i/b.qcow2'] == 'ide' and buses(to_virtio.after)['/i/e.qcow2'] == 'virtio'


def test_moved_disks_never_take_the_scsi_unit_libvirt_gives_an_unaddressed_disk():
    """A template: its LUNs have no address; libvirt derives one from the name (sdb: controller 0,
    unit 1) when the file is defined, after the plan."""
    luns = ''.join("<disk type='block' device='lun'><source dev='/dev/sd%s'/><target dev='sd%s' bus='scsi'/></disk>"
                   % (letter, letter) for letter in 'abc')
    text = domain([luns, DISKS['vde'], "<controller type='scsi' index='0' model='virtio-scsi'/>"])
    plan = plan_domain(text, TunePolicy(settings=KEEP, bus='scsi', convert_boot_disk=True))
    root = etree.fromstring(plan.after.encode())
    units = [a.get('unit') for a in root.findall("devices/disk/address[@type='drive']")]
    assert sorted(units) == ['3', '4'], units


def test_disk_names_map_to_libvirt_indexes():
    assert [disk_index(name) for name in ('sda', 'vdz', 'hdaa', 'xvdb', 'sdB', 'sd1', None, 'cdrom')] == \
        [0, 25, 26, 1, None, None, None, None]
    assert all(disk_index('sd' + dev_suffix(i)) == i for i in range(1000))


MULTIFUNCTION = ("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/i/mf.qcow2'/>"
                 "<target dev='vdb' bus='virtio'/><address type='pci' domain='0x0000' bus='0x00' slot='0x05' "
                 "function='0x0' multifunction='on'/></disk>")


@pytest.mark.parametrize('sharer, stays', [
    ("<interface type='user'><model type='virtio'/><address type='pci' domain='0x0000' bus='0x00' slot='0x05' "
     "function='0x1'/></interface>", True),
    ("<controller type='usb' index='0' model='qemu-xhci'><address type='pci' bus='0' slot='5' function='2'/>"
     "</controller>", True),
    ("<interface type='user'><model type='virtio'/><address type='pci' domain='0x0000' bus='0x00' slot='0x06' "
     "function='0x1'/></interface>", False),
    ('', False),
])
def test_a_disk_at_function_0_of_a_shared_slot_stays(sharer, stays):
    """The review's M6: moving vdb (slot 5, function 0) to SCSI dropped its address and left the NIC
    at function 1 of slot 5 without a function 0, which Linux never scans: the guest lost the NIC."""
    plan = plan_domain(domain([MULTIFUNCTION, sharer]), TunePolicy(settings=KEEP, bus='scsi'))
    moved = any(c.device == 'vdb' and c.setting == 'bus' for c in plan.changes)
    assert moved is not stays, plan.changes
    warning = [w for w in plan.warnings if w.startswith('d: disk vdb stays on bus virtio')]
    assert bool(warning) is stays, plan.warnings
    if stays:
        assert 'it is function 0 of a multifunction PCI slot that %s (function ' % sharer[1:sharer.index(' ')] \
            in warning[0]


def test_a_disk_moving_onto_a_virtio_scsi_controller_without_an_iothread_brings_its_own():
    """The review's L6: vde ran in iothread 1; moved onto the domain's virtio-scsi controller (which had
    none), it lost it (recorded, but random I/O got slower). The controller now takes the iothread;
    one that has an iothread keeps it."""
    controller = "<controller type='scsi' index='0' model='virtio-scsi'/>"
    plan = plan_domain(domain([DISKS['vde'], controller]), TunePolicy(settings=KEEP, bus='scsi'))
    ctrl = etree.fromstring(plan.after.encode()).find("devices/controller[@type='scsi']")
    assert ctrl.find('driver').get('iothread') == '1', plan.after
    assert [(c.device, c.setting, c.after) for c in plan.changes if c.device == 'controller scsi 0'] == [
        ('controller scsi 0', 'iothread', '1')]
    busy = controller.replace('/>', "><driver iothread='2'/></controller>")
    plan = plan_domain(domain([DISKS['vde'], busy]).replace('<iothreads>1', '<iothreads>2'),
                       TunePolicy(settings=KEEP, bus='scsi'))
    ctrl = etree.fromstring(plan.after.encode()).find("devices/controller[@type='scsi']")
    assert ctrl.find('driver').get('iothread') == '2'
    assert any(c.device == 'vde' and c.setting == 'iothread' and c.after is None for c in plan.changes)
