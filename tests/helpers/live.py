# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the live-apply tests read from QEMU and the host, independently of the module's code: QMP
through libvirt (``query-named-block-nodes``, ``query-block``), ``qemu-io`` inside QEMU on a guest
device (its write cache applies), ``qemu-io -U``/``qemu-img map -U`` on the image from the host."""

from __future__ import annotations

import json
import os
import subprocess
import time

import libvirt
import libvirt_qemu
from lxml import etree

from ansible_collections.kvmio.tuning.plugins.modules import kvm_disk_tune
from helpers import domain_xml as dx
from helpers.modules import run_module

URI = 'qemu:///system'
INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
VIRTIO = '/machine/peripheral/virtio-disk0/virtio-backend'
SATA = 'sata0-0-0'
SCSI = 'scsi0-0-0-0'


def qmp(dom, command, **arguments):
    reply = json.loads(libvirt_qemu.qemuMonitorCommand(dom, json.dumps({'execute': command, 'arguments': arguments}), 0))
    assert 'error' not in reply, reply
    return reply['return']


def qemu_io(dom, device, command):
    """Runs a qemu-io command inside QEMU on the guest device ``device`` (its BlockBackend)."""
    libvirt_qemu.qemuMonitorCommand(dom, 'qemu-io -d %s "%s"' % (device, command),
                                    libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)


def host_reads(path, fmt, pattern, offset, length):
    """Whether the image at ``path`` holds ``pattern`` there, read from the host beside the running QEMU."""
    out = subprocess.run(['qemu-io', '-U', '-r', '-f', fmt, '-c', 'read -P %s %d %d' % (pattern, offset, length), path],
                         capture_output=True, text=True, check=False)
    return 'read %d/%d bytes' % (length, length) in out.stdout and 'verification failed' not in out.stdout


def allocated(path, offset, length):
    """Whether any byte of the range is allocated data in the qcow2 image itself (not zero, not unmapped)."""
    out = subprocess.run(['qemu-img', 'map', '-U', '-f', 'qcow2', '--output=json', path], capture_output=True,
                         text=True, check=True)
    return any(e['data'] and e['depth'] == 0 and e['start'] < offset + length and e['start'] + e['length'] > offset
               for e in json.loads(out.stdout))


def nodes(dom):
    return {n['node-name']: n for n in qmp(dom, 'query-named-block-nodes', flat=True)}


def flags(dom, *names):
    found = nodes(dom)
    return [(found[n]['cache']['direct'], found[n]['cache']['no-flush']) for n in names]


def guest_write_caches(dom):
    return {b['qdev']: b['inserted']['cache']['writeback'] for b in qmp(dom, 'query-block') if 'inserted' in b}


def firmware_has_set_up_virtio_blk(dom, timeout=60):
    """Waits until the firmware's virtio-blk driver has negotiated its features: it cannot flush, so
    QEMU turns that device's write cache off (what a guest that set its disk to write through has)."""
    deadline = time.monotonic() + timeout
    while guest_write_caches(dom)[VIRTIO]:
        assert time.monotonic() < deadline, 'the firmware did not set up virtio-blk in %d s' % timeout
        time.sleep(0.1)


def named(dom, device, with_write_cache, without):
    """The cache mode a disk runs as its guest has it: SeaBIOS's virtio-blk driver cannot flush, so once
    the firmware has set the device up, QEMU runs it without a write cache (writeback as writethrough)."""
    return with_write_cache if guest_write_caches(dom)[device] else without


def tainted(dom):
    return any('custom monitor' in m for m in dom.messages(libvirt.VIR_DOMAIN_MESSAGE_TAINTING))


def driver(xml, target):
    root = etree.fromstring(xml.encode())
    disk = root.find("devices/disk/target[@dev='%s']/.." % target)
    return dict(disk.find('driver').attrib)


def qcow2_chain(factory, name):
    """A thin qcow2 with a backing file: QEMU gets four nodes (format and storage of each)."""
    base = os.path.join(factory.image_dir, name + '-base.qcow2')
    top = os.path.join(factory.image_dir, name + '.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', base, '16M'], check=True)
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top], check=True)
    return top, base


def running_domain(factory, disks, extra='', name=None, memory_mib=64, extra_devices=''):
    name = name or factory.name('live')
    dom = factory.define(dx.domain(name, disks, metadata=extra, memory_mib=memory_mib, extra_devices=extra_devices))
    dom.create()
    return dom


def tune(uri, backup_dir, save_dir, dom, check=False, diff=False, **options):
    args = {'uri': uri, 'backup_dir': backup_dir, 'save_dir': save_dir, 'domains': [dom.name()], 'io': 'keep',
            'cache': 'keep'}
    args.update(options)
    result = run_module(kvm_disk_tune, args, check_mode=check, diff=diff)
    assert not result.failed, result
    return result


def live_of(result):
    (domain,) = result['domains']
    return domain['live'], {d['target']: d for d in domain['live']['disks']}


def domain_id(dom):
    """The id libvirt gives the running domain now. (``virDomainGetID`` answers from the handle, which
    keeps the id it was looked up with: a restore elsewhere does not change it.)"""
    return dom.connect().lookupByUUID(dom.UUID()).ID()
