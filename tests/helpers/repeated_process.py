# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One step of a QEMU process that repeats the domain id and the vCPU thread id of an earlier one
(issue 18 review, F6). Run in a PID namespace of its own (``unshare -pf --mount-proc``), so that
``ns_last_pid`` chooses the next thread ids, on the embedded driver, whose domain ids start at 1 in
every process::

    python -m helpers.repeated_process ROOT IMAGE first|measure|again [TID DELTA]

``first`` starts the domain, applies discard=unmap live and managed-saves it; ``measure`` restores it
at a known pid and prints how far the vCPU thread id lies from it; ``again`` restores it so that the
vCPU thread gets the id of the first process, runs the module again and prints JSON: the module's
view of the disk and whether a guest discard then reached the image.
"""

from __future__ import annotations

import json
import subprocess
import sys

NAME = 'kvmio-test-repeated-process'
DEVICE = '/machine/peripheral/virtio-disk0/virtio-backend'


def main(argv):
    import libvirt
    import libvirt_qemu

    from ansible_collections.kvmio.tuning.plugins.module_utils._libvirt import _start_event_loop
    from ansible_collections.kvmio.tuning.plugins.modules import kvm_disk_tune
    from helpers import domain_xml as dx
    from helpers.modules import run_module

    root, image, step = argv[:3]
    uri = 'qemu:///embed?root=%s' % root
    _start_event_loop()
    conn = libvirt.open(uri)

    def qmp(dom, command, **arguments):
        return json.loads(libvirt_qemu.qemuMonitorCommand(
            dom, json.dumps({'execute': command, 'arguments': arguments}), 0))['return']

    def hmp(dom, command):
        return libvirt_qemu.qemuMonitorCommand(dom, command, libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)

    def vcpu_thread(dom):
        return qmp(dom, 'query-cpus-fast')[0]['thread-id']

    def next_pid(value):
        with open('/proc/sys/kernel/ns_last_pid', 'w', encoding='ascii') as handle:
            handle.write(str(value))

    def tune():
        return run_module(kvm_disk_tune, {'uri': uri, 'domains': [NAME], 'cache': 'keep', 'io': 'keep',
                                          'discard': 'unmap', 'apply': 'live', 'backup_dir': root + '/backups',
                                          'save_dir': root + '/save'})

    if step == 'first':
        dom = conn.defineXML(dx.domain(NAME, [dx.disk(image, 'vda', 'virtio', cache='writeback')], memory_mib=32))
        dom.create()
        result = tune()
        applied = result['domains'][0]['live']['disks'][0]['applied']
        print(json.dumps({'id': dom.ID(), 'tid': vcpu_thread(dom), 'applied': applied}))
        dom.managedSave(0)
    elif step == 'measure':
        dom = conn.lookupByName(NAME)
        next_pid(1000)
        dom.create()
        print(json.dumps({'id': dom.ID(), 'delta': vcpu_thread(dom) - 1000}))
        dom.managedSave(0)
    else:
        tid, delta = int(argv[3]), int(argv[4])
        dom = conn.lookupByName(NAME)
        next_pid(tid - delta)
        dom.create()
        if vcpu_thread(dom) != tid:
            # Another process took a pid meanwhile: saved again for the next attempt (a destroy would
            # drop the saved state, and a fresh start runs the configuration).
            print(json.dumps({'id': dom.ID(), 'tid': vcpu_thread(dom)}))
            dom.managedSave(0)
            return
        hmp(dom, 'qemu-io -d %s "write -P 0x7 0 1M"' % DEVICE)
        hmp(dom, 'qemu-io -d %s "flush"' % DEVICE)
        result = tune()
        disk = result['domains'][0]['live']['disks'][0]
        hmp(dom, 'qemu-io -d %s "discard 0 64k"' % DEVICE)
        hmp(dom, 'qemu-io -d %s "flush"' % DEVICE)
        extents = json.loads(subprocess.run(['qemu-img', 'map', '-U', '-f', 'qcow2', '--output=json', image],
                                            capture_output=True, text=True, check=True).stdout)
        print(json.dumps({'id': dom.ID(), 'tid': vcpu_thread(dom), 'status': disk['status'],
                          'running_discard': disk['running']['discard'], 'applied': disk['applied'],
                          'discarded': not any(e['data'] and e['start'] == 0 for e in extents)}))
        dom.destroy()
    conn.close()


if __name__ == '__main__':
    main(sys.argv[1:])
