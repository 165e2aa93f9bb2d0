#!/usr/bin/env python3
# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How long apply=live stops a Linux guest while it reopens a disk whose data sits in the host's page cache.

A blockdev-reopen flushes the disk while its I/O is drained and QEMU's global lock is held: every vCPU
waits for that flush. kvm_disk_tune writes the chain's data back from the host first (``host_sync_ms``
in its result), so little is left for the reopen. This boots the shell guest of tests/helpers on
libvirtd (TCG, 512 MiB), has it print /proc/uptime every 20 ms on its serial console, fills the host's
page cache with ``--dirty`` MiB written through QEMU (qemu-io in the monitor) on a disk the guest never
touches (vdb, cache=writeback: the guest's virtio driver keeps its write cache on), then runs
kvm_disk_tune apply=live cache=none on vdb, as its own process, and reports:
- reopen_ms and host_sync_ms from the module's result (monotonic clock around the QMP call, and around
  the host's fdatasync passes);
- the longest gap between two console lines arriving on the host while the module ran (a stopped
  guest prints nothing), beside the longest gap in the 1.7 s before it (the console's own jitter).

Usage: .venv/bin/python benchmarks/bench_reopen_stall.py [--dirty 1536] [--runs 2]
Prints a line per run and writes benchmarks/results/reopen_stall.json. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = 'kvmio-bench-stall-'
sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
sys.path.insert(0, os.path.join(REPO, 'tests'))

# pylint: disable=wrong-import-position
from bench_kvm_disk_tune import collection_path, host_python  # noqa: E402
from bench_live_apply import run_module  # noqa: E402


class Stamps:
    """(host arrival time, guest uptime) of every console line, read in a thread."""

    def __init__(self, console):
        self.console = console
        self.lines = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.read)
        self.thread.start()

    def read(self):
        pending = b''
        while not self.stop.is_set():
            try:
                data = self.console.sock.recv(65536)
            except OSError:
                continue
            now = time.monotonic()
            pending += data
            *complete, pending = pending.split(b'\n')
            for line in complete:
                match = re.match(rb'\s*(\d+\.\d+) \d+\.\d+\s*$', line)
                if match:
                    self.lines.append((now, float(match.group(1))))

    def longest_gap(self, start, end):
        gaps = [h1 - h0 for (h0, _g0), (h1, _g1) in zip(self.lines, self.lines[1:]) if start <= h1 <= end]
        return max(gaps, default=None)

    def close(self):
        self.stop.set()
        self.thread.join()


def one_run(conn, guest, python, pythonpath, work, dirty, number):
    import libvirt_qemu     # pylint: disable=import-outside-toplevel
    from helpers import domain_xml as dx     # pylint: disable=import-outside-toplevel

    name = '%s%d' % (PREFIX, number)
    images = []
    for target, size in (('vda', '64M'), ('vdb', '%dM' % max(dirty * 2, 64))):
        path = os.path.join(work, '%s-%s.qcow2' % (name, target))
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata', path, size],
                       check=True)
        images.append(dx.disk(path, target, 'virtio', cache='writeback', io='threads'))
    dom = conn.defineXML(guest.domain_xml(name, images))
    try:
        dom.create()
        console = guest.console(name)
        console.sock.sendall(b'while :; do cat /proc/uptime; usleep 20000; done\n')
        stamps = Stamps(console)
        time.sleep(2)
        if dirty:
            libvirt_qemu.qemuMonitorCommand(
                dom, 'qemu-io -d /machine/peripheral/virtio-disk1/virtio-backend "write -P 0x5 0 %dM"' % dirty,
                libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)
        time.sleep(2)
        start = time.monotonic()
        _elapsed, result = run_module(python, pythonpath, {
            'uri': 'qemu:///system', 'domains': [name], 'cache': 'none', 'io': 'keep', 'apply': 'live',
            'disks': [{'match': 'vda', 'skip': True}], 'backup_dir': os.path.join(work, 'backups'),
            'save_dir': os.path.join(work, 'save')})
        end = time.monotonic()
        time.sleep(1)
        stamps.close()
        console.close()
        (disk,) = [d for d in result['domains'][0]['live']['disks'] if d['target'] == 'vdb']
        return {'dirty_mib': dirty, 'reopen_ms': disk['reopen_ms'], 'host_sync_ms': disk.get('host_sync_ms'),
                'module_s': round(end - start, 3), 'gap_during_s': stamps.longest_gap(start, end + 0.2),
                'gap_before_s': stamps.longest_gap(start - 1.8, start - 0.1), 'load': os.getloadavg()[0]}
    finally:
        if dom.isActive():
            dom.destroy()
        dom.undefine()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dirty', type=int, default=1536, help='MiB written into the host page cache first')
    parser.add_argument('--runs', type=int, default=2, help='runs with --dirty, and as many with none')
    parser.add_argument('--python', default='/usr/bin/python3', help="the hypervisor's Python that runs the module")
    opts = parser.parse_args(argv)
    import libvirt     # pylint: disable=import-outside-toplevel

    pythonpath = collection_path()
    sys.path.insert(0, pythonpath)
    from helpers.shell_guest import ShellGuest     # pylint: disable=import-outside-toplevel

    python = host_python(opts.python)
    work = tempfile.mkdtemp(prefix='kvmio-bench-stall-', dir='/var/tmp')
    conn = libvirt.open('qemu:///system')
    rows = []
    guest = ShellGuest(work)
    try:
        for number, dirty in enumerate([opts.dirty, 0] * opts.runs):
            row = one_run(conn, guest, python, pythonpath, work, dirty, number)
            rows.append(row)
            print('dirty %5d MiB: reopen %7.1f ms, host write-back %7.1f ms, module %.2f s; longest console gap '
                  'while it ran %.3f s (before it: %.3f s); load %.1f'
                  % (dirty, row['reopen_ms'], row['host_sync_ms'] or 0, row['module_s'], row['gap_during_s'] or 0,
                     row['gap_before_s'] or 0, row['load']))
    finally:
        guest.cleanup()
        conn.close()
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(REPO, 'benchmarks', 'results'), exist_ok=True)
    with open(os.path.join(REPO, 'benchmarks', 'results', 'reopen_stall.json'), 'w', encoding='utf-8') as handle:
        json.dump(rows, handle, indent=2)
    return rows


if __name__ == '__main__':
    main()
