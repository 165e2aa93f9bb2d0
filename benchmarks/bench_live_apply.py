#!/usr/bin/env python3
# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What kvm_disk_tune apply=live and apply=live_or_pause cost a running guest.

Starts N domains on libvirtd (type qemu, TCG; no guest OS, the firmware idles) with a thin qcow2 on a
backing file (virtio) and a qcow2 on SATA, cache=writeback io=threads, each with --memory MiB of RAM of
which --fill MiB hold random data (QEMU's loader device writes a file into guest RAM at start, so the
save image is as large as a guest that uses that much memory), then times:
- apply=live, cache=none: the module's own measure of each blockdev-reopen (monotonic clock around
  the QMP call: the I/O of that disk chain is drained for that long), and the whole module call;
- the same call again (QEMU already runs it: nothing to do);
- apply=live_or_pause, io=native: each domain's pause, measured by the module from the save call to the
  restore's return (the vCPUs stop at the start of the save and run again at the end of the restore),
  with the save, save-image-define and restore parts and the image size.
The module runs as a process of its own, as Ansible runs it on a hypervisor.

Usage: .venv/bin/python benchmarks/bench_live_apply.py [--domains 4] [--memory 512] [--fill 256]
Prints a table and writes benchmarks/results/live_apply.json. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = 'kvmio-bench-live-'
sys.path.insert(0, os.path.join(REPO, 'benchmarks'))

# pylint: disable=wrong-import-position
from bench_kvm_disk_tune import collection_path, host_python  # noqa: E402

DOMAIN = """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>%(name)s</name><memory unit='MiB'>%(memory)d</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='writeback' io='threads'/>
      <source file='%(images)s/%(name)s-vda.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='writeback' io='threads'/>
      <source file='%(images)s/%(name)s-sda.qcow2'/><target dev='sda' bus='sata'/></disk>
    <memballoon model='none'/>
  </devices>%(fill)s
</domain>"""
FILL = """
  <qemu:commandline><qemu:arg value='-device'/><qemu:arg value='loader,file=%s,addr=0x1000000,force-raw=on'/>
  </qemu:commandline>"""


def run_module(python, pythonpath, args):
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': dict(args, _ansible_check_mode=False, _ansible_diff=False)}, handle)
    start = time.perf_counter()
    proc = subprocess.run([python, '-m', 'ansible_collections.kvmio.tuning.plugins.modules.kvm_disk_tune',
                           handle.name], capture_output=True, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=pythonpath))
    elapsed = time.perf_counter() - start
    os.unlink(handle.name)
    result = json.loads(proc.stdout[proc.stdout.index('{'):])
    if result.get('failed'):
        raise SystemExit('kvm_disk_tune failed: %s' % result.get('msg'))
    return elapsed, result


def setup(conn, count, memory, fill, work):
    import libvirt     # pylint: disable=import-outside-toplevel

    images = os.path.join(work, 'images')
    os.makedirs(images)
    os.chmod(work, 0o755)
    blob = ''
    if fill:
        path = os.path.join(work, 'fill.bin')
        with open('/dev/urandom', 'rb') as source, open(path, 'wb') as target:
            for _chunk in range(fill):
                target.write(source.read(1 << 20))
        os.chmod(path, 0o644)
        blob = FILL % path
    for dom in conn.listAllDomains():
        if dom.name().startswith(PREFIX):
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    for n in range(count):
        name = '%s%d' % (PREFIX, n)
        base = os.path.join(images, name + '-base.qcow2')
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', base, '64M'], check=True)
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2',
                        os.path.join(images, name + '-vda.qcow2')], check=True)
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', os.path.join(images, name + '-sda.qcow2'), '64M'],
                       check=True)
        dom = conn.defineXML(DOMAIN % {'name': name, 'memory': memory, 'images': images, 'fill': blob})
        dom.create()
    time.sleep(2)      # the firmware has set the devices up
    return libvirt


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--domains', type=int, default=4)
    parser.add_argument('--memory', type=int, default=512, help='guest RAM, MiB')
    parser.add_argument('--fill', type=int, default=256, help='MiB of guest RAM holding random data')
    parser.add_argument('--uri', default='qemu:///system')
    parser.add_argument('--python', default='/usr/bin/python3', help="the hypervisor's Python that runs the module")
    opts = parser.parse_args(argv)
    import libvirt     # pylint: disable=import-outside-toplevel

    pythonpath = collection_path()
    python = host_python(opts.python)
    work = tempfile.mkdtemp(prefix='kvmio-bench-live-', dir='/var/tmp')
    conn = libvirt.open(opts.uri)
    try:
        setup(conn, opts.domains, opts.memory, opts.fill, work)
        base = {'uri': opts.uri, 'domains': [PREFIX + '*'], 'backup_dir': os.path.join(work, 'backups'),
                'save_dir': os.path.join(work, 'save'), 'io': 'keep'}
        live_s, live = run_module(python, pythonpath, dict(base, cache='none', apply='live'))
        again_s, again = run_module(python, pythonpath, dict(base, cache='none', apply='live'))
        pause_s, paused = run_module(python, pythonpath, dict(base, cache='none', io='native', apply='live_or_pause'))
    finally:
        for dom in conn.listAllDomains():
            if dom.name().startswith(PREFIX):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
        conn.close()
        shutil.rmtree(work, ignore_errors=True)
    reopens = [d['reopen_ms'] for dom in live['domains'] for d in dom['live']['disks'] if d['reopen_ms'] is not None]
    pauses = [dom['live']['pause'] for dom in paused['domains'] if dom['live']['pause']]
    row = {'domains': opts.domains, 'memory_mib': opts.memory, 'fill_mib': opts.fill, 'load': os.getloadavg()[0],
           'reopen_ms': reopens, 'reopen_ms_median': statistics.median(reopens) if reopens else None,
           'live_call_s': round(live_s, 3), 'live_again_s': round(again_s, 3), 'live_again_changed': again['changed'],
           'pause_call_s': round(pause_s, 3), 'pauses': pauses,
           'statuses': sorted({d['live']['status'] for d in paused['domains']})}
    print('blockdev-reopen per disk chain (ms): %s; median %.1f' % (
        ', '.join('%.1f' % r for r in reopens), row['reopen_ms_median'] or 0))
    print('apply=live call for %d domains: %.2f s; again (nothing to do): %.2f s, changed=%s' % (
        opts.domains, live_s, again_s, again['changed']))
    print('%10s %10s %10s %10s %12s' % ('pause(s)', 'save(s)', 'define(s)', 'restore(s)', 'image(MiB)'))
    for pause in pauses:
        print('%10.2f %10.2f %10.3f %10.2f %12.1f' % (pause['pause_seconds'], pause['save_seconds'],
                                                     pause['define_seconds'], pause['restore_seconds'],
                                                     pause['image_bytes'] / 1048576.0))
    print('apply=live_or_pause call: %.2f s (one save at a time); load average at the end: %.1f on %d CPUs'
          % (pause_s, row['load'], os.cpu_count()))
    os.makedirs(os.path.join(REPO, 'benchmarks', 'results'), exist_ok=True)
    with open(os.path.join(REPO, 'benchmarks', 'results', 'live_apply.json'), 'w', encoding='utf-8') as handle:
        json.dump(row, handle, indent=2)
    return row


if __name__ == '__main__':
    main()
