# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A real Linux guest with a root shell on its serial console, for tests that need a guest kernel to
act (set a disk's write cache, write and fsync): the benchmark guest of ``_guest_image`` with another
``/init`` appended (the kernel unpacks concatenated cpio archives in order, so the later ``/init``
wins). The console is a unix socket QEMU listens on; ``Console.run`` types a command and returns its
output.

Booting takes 10-40 s under TCG: use one guest per test, for everything the test needs.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import tempfile
import time
from xml.sax.saxutils import quoteattr

from ansible_collections.kvmio.tuning.plugins.module_utils._guest_image import guest_image, stage_guest_image
from ansible_collections.kvmio.tuning.plugins.module_utils._initramfs import cpio_archive

READY = 'KVMIO-SHELL-READY'
# Loads the drivers of the buses named on the command line (kvmio.buses=virtio,scsi), then a shell.
SHELL_INIT = r'''#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
buses=virtio
for arg in $(cat /proc/cmdline); do
  case "$arg" in kvmio.buses=*) buses="${arg#kvmio.buses=}" ;; esac
done
for bus in $(echo "$buses" | tr , ' '); do
  while read -r m; do insmod "/lib/modules/kvmio/$m.ko" 2>/dev/null; done < "/etc/kvmio-modules-$bus"
done
echo 1 > /proc/sys/kernel/printk
echo KVMIO-SHELL-READY
exec /bin/sh </dev/ttyS0 >/dev/ttyS0 2>&1
'''


class ShellGuest:
    """Kernel, initrd and a console socket directory for shell guests, under ``directory``."""

    def __init__(self, directory):
        self.directory = directory
        kernel, initrd = stage_guest_image(guest_image(), directory)
        with open(initrd, 'ab') as handle:
            handle.write(cpio_archive({'init': (0o755, SHELL_INIT.encode())}))
        self.kernel, self.initrd = kernel, initrd
        # QEMU creates the console socket: under libvirtd it runs as libvirt-qemu.
        self.socket_dir = tempfile.mkdtemp(prefix='console-', dir=directory)
        try:
            qemu = pwd.getpwnam('libvirt-qemu')
            os.chown(self.socket_dir, qemu.pw_uid, qemu.pw_gid)
        except KeyError:
            pass
        os.chmod(directory, 0o755)

    def socket(self, name):
        return os.path.join(self.socket_dir, name[-40:] + '.sock')

    def domain_xml(self, name, disks, buses=('virtio',), memory_mib=512, extra_devices=''):
        return """<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>%d</memory>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>%s</kernel><initrd>%s</initrd>
    <cmdline>console=ttyS0 quiet kvmio.buses=%s</cmdline></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    %s
    %s
    <serial type='unix'><source mode='bind' path=%s/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>""" % (name, memory_mib, self.kernel, self.initrd, ','.join(buses), '\n    '.join(disks), extra_devices,
                quoteattr(self.socket(name)))

    def console(self, name, timeout=300):
        """The console of the running guest ``name``, once its shell is up."""
        console = Console(self.socket(name))
        console.read_until(READY, timeout)
        # Long lines unwrapped: the shell echoes each command line before its output.
        console.run('stty cols 4096 rows 100')
        return console

    def cleanup(self):
        shutil.rmtree(self.socket_dir, ignore_errors=True)


class Console:
    def __init__(self, path):
        self.path = path
        self.buffer = b''
        self.sock = None
        self.connect()

    def connect(self, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(self.path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.sock.settimeout(0.5)

    def read_until(self, marker, timeout=120):
        deadline = time.monotonic() + timeout
        wanted = marker.encode()
        while wanted not in self.buffer:
            if time.monotonic() > deadline:
                raise TimeoutError('no %r on the console; it shows %r' % (marker, self.buffer[-2000:]))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:                     # QEMU went away (a save): connect to the new one
                time.sleep(0.2)
                self.connect()
                continue
            self.buffer += data
        before, _sep, self.buffer = self.buffer.partition(wanted)
        return before.decode(errors='replace')

    def run(self, command, timeout=120):
        """Output of a shell command in the guest (its echo of the command line left out)."""
        tag = 'KVMIO-END-%d' % time.monotonic_ns()
        self.buffer = b''
        # The tag split in two on the command line, so the echo of the line does not match it.
        echoed = '%s""%s' % (tag[:5], tag[5:])
        line = ('%s; echo %s\n' % (command, echoed)).encode()
        try:
            self.sock.sendall(line)
        except OSError:                      # QEMU was replaced (a save/restore): its new socket
            self.sock.close()
            self.connect()
            self.sock.sendall(line)
        output = self.read_until(tag, timeout)
        # The terminal echoes the command line (wrapped at 80 columns) before its output.
        output = output.replace('\r', '')
        return output.rpartition(echoed)[2].partition('\n')[2].strip()

    def close(self):
        if self.sock is not None:
            self.sock.close()
