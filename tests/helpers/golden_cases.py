# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The golden cases of the XML transforms: which options plan each input of tests/data/xmlparse.

A case ``bus/sdx-name-collision`` reads ``tests/data/xmlparse/bus/sdx-name-collision-in.xml`` and is
compared with ``...-out.xml`` (the planned XML) and ``...-changes.json`` (changes, warnings, errors).
The unit runner (tests/unit/test_goldens.py) and the libvirt check (tests/integration/test_goldens_libvirt.py)
plan every case with the options here, so both judge the same plans.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ansible_collections.kvmio.tuning.plugins.module_utils._cputune_xml import CpuTune, plan_cputune
from ansible_collections.kvmio.tuning.plugins.module_utils._disk_plan import DiskRule, TunePolicy, plan_domain
from ansible_collections.kvmio.tuning.plugins.module_utils._disk_policy import DiskSettings
from ansible_collections.kvmio.tuning.plugins.module_utils._support import HostSupport, StorageFacts

from helpers.golden import DATA

XMLPARSE = os.path.join(DATA, 'xmlparse')
# The host of these machines (QEMU 7.2, libvirt 9.0), fixed so a golden never depends on where it runs.
HOST = HostSupport(qemu=(7, 2, 0), libvirt=(9, 0, 0), kernel=(6, 1, 0), io_uring_enabled=True, qemu_has_io_uring=True)
# Bus cases leave cache/io/discard alone, so their goldens show the bus conversion only.
BUS_ONLY = DiskSettings(cache='keep', io='keep')


class EveryPathOn(dict):
    """Storage facts for any path: a local file on ``fstype``, where O_DIRECT works or not."""

    def __init__(self, fstype, odirect):
        super().__init__()
        self.fstype = fstype
        self.odirect = odirect

    def get(self, key, default=None):
        detail = '' if self.odirect else 'open with O_DIRECT refused (EINVAL)'
        return StorageFacts(path=key, kind='file', fstype=self.fstype, mountpoint='/', odirect=self.odirect,
                            shared=False, detail=detail)


@dataclass(frozen=True)
class Case:
    """One golden case: the transform (``disk`` = plan_domain, ``cputune`` = plan_cputune) and its options."""

    name: str               # <folder>/<case>, the case named after what it shows
    options: object         # TunePolicy or CpuTune
    storage: object = None  # plan_domain's storage facts (None: not probed)

    def path(self, suffix):
        return os.path.join(XMLPARSE, '%s-%s' % (self.name, suffix))

    def plan(self, xml_text):
        if isinstance(self.options, CpuTune):
            return plan_cputune(xml_text, self.options, origin=self.name)
        return plan_domain(xml_text, self.options, self.storage, HOST, origin=self.name)


def _bus(name, **policy):
    return Case('bus/' + name, TunePolicy(settings=BUS_ONLY, **policy))


CASES = [
    # --- the bus conversion (_bus_convert through plan_domain) ---------------------------------
    # Two IDE disks to virtio-scsi: the boot disk stays until convert_boot_disk says the guest can
    # boot from virtio-scsi (a warning says so), the data disk moves; the cdrom is never moved.
    _bus('ide-to-scsi-boot-disk-held', bus='scsi'),
    _bus('ide-to-scsi-boot-disk-moved', bus='scsi', convert_boot_disk=True),
    # q35 has its SATA controller built in: emptied, it stays (libvirt would add it back).
    _bus('q35-sata-controller-kept', bus='scsi', convert_boot_disk=True),
    # An lsilogic HBA that only the moving disk used becomes the virtio-scsi controller, in place.
    _bus('lsilogic-controller-becomes-virtio-scsi', bus='scsi'),
    # A virtio-scsi controller exists: the disk joins it and the emptied lsilogic HBA above it goes.
    _bus('lsilogic-controller-emptied-and-removed', bus='scsi'),
    # ...but an emptied HBA below an index in use stays: libvirt defines every controller up to it.
    _bus('lsilogic-below-virtio-scsi-kept', bus='scsi', convert_boot_disk=True),
    # A scsi disk without a <controller> element gets a virtio-scsi one at index 0 (libvirt would
    # otherwise add an lsilogic one, and the next run would move the disk again).
    _bus('scsi-disk-without-controller-element', bus='scsi'),
    # sda and sdb are taken (a virtio-scsi disk and a USB disk): hdb becomes sdc, at the next free unit.
    _bus('sdx-name-collision', bus='scsi'),
    # The disk's iothread goes with it to the new virtio-scsi controller.
    _bus('iothread-carried-to-new-controller', bus='scsi', convert_boot_disk=True),
    # virtio-blk settings virtio-scsi disks do not take (iothread, queues, queue_size, ioeventfd, event_idx).
    _bus('virtio-only-driver-settings-dropped', bus='scsi', convert_boot_disk=True),
    # scsi_queues=auto (= 4 vCPUs) on a virtio-scsi controller that is already there.
    _bus('scsi-queues-on-existing-virtio-scsi-controller', bus='scsi', scsi_queues='auto'),
    # IDE and SATA disks to virtio-blk: addresses, wwn and rotation_rate dropped, serial kept; the
    # emptied SATA controller of a pc machine (not built in) removed, the built-in IDE one kept.
    _bus('ide-and-sata-to-virtio-blk', bus='virtio'),
    # A per-disk override keeps one disk on SATA while the rest move: its controller stays, index 1 goes.
    _bus('per-disk-override-keeps-a-disk-on-sata', bus='scsi', convert_boot_disk=True,
         disk_rules=(DiskRule(match='sdc', overrides={'bus': 'keep'}),)),
    # A hand-written file: libvirt's header comment, comments, a processing instruction, metadata and
    # qemu:commandline in other namespaces, four-space and tab indentation: all kept.
    _bus('comments-metadata-and-odd-indentation-kept', bus='scsi'),

    # --- the driver settings (decide_disk through plan_domain) -----------------------------------
    # cache/io auto where O_DIRECT works: none + native; a shareable disk gets a mode safe for sharing;
    # a network disk writeback; discard=unmap with detect_zeroes=auto; the cdrom left alone.
    Case('disk/auto-policy-on-storage-with-odirect',
         TunePolicy(settings=DiskSettings(discard='unmap', detect_zeroes='auto')), EveryPathOn('ext4', True)),
    # Where O_DIRECT is refused (ZFS before 2.3): a disk with cache=none would not start; auto gives
    # writeback and io_uring.
    Case('disk/auto-policy-on-storage-without-odirect', TunePolicy(), EveryPathOn('zfs', False)),

    # --- the cputune transform (_cputune_xml.plan_cputune) ---------------------------------------
    # Two iothreads over three users in document order: vda 1, vdb 2, the virtio-scsi controller 1.
    Case('cputune/iothreads-added-round-robin', CpuTune(iothreads=2)),
    # disk_iothreads picks vdb's iothread; the others still go round-robin.
    Case('cputune/disk-iothread-chosen-per-disk', CpuTune(iothreads=2, disk_iothreads={'vdb': 1})),
    # From four iothreads to two: <iothreadids> 3 and 4 removed, the disks that used them reassigned.
    Case('cputune/iothreadids-shrunk-and-disks-reassigned', CpuTune(iothreads=2)),
    # A <cputune> made for vCPU, emulator and iothread pins.
    Case('cputune/pins-written', CpuTune(vcpus={0: frozenset({0}), 1: frozenset({1})}, emulator=frozenset({0, 1}),
                                         iothread_pins={1: frozenset({1})})),
    # Pins of vCPUs and iothreads the domain no longer has are removed, the others rewritten.
    Case('cputune/stale-pins-removed', CpuTune(iothreads=1, vcpus={0: frozenset({0}), 1: frozenset({1})},
                                               iothread_pins={1: frozenset({1})})),
    # Memory bound to the NUMA node of the pinned CPUs: placement=auto gives way to a nodeset.
    Case('cputune/numatune-memory-bound-to-one-node', CpuTune(numa_node=0, numa_mode='strict')),
    Case('cputune/numatune-added-after-cputune', CpuTune(vcpus={0: frozenset({0}), 1: frozenset({1})},
                                                         numa_node=0, numa_mode='preferred')),
]
BY_NAME = {case.name: case for case in CASES}
