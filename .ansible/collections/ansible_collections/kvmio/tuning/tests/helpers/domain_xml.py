# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Domain XML the way users really have it: type qemu (software emulation), thin qcow2 disks
with no cache set, IDE/SATA beside virtio, a cdrom. No graphics (<graphics type='none'/> needs
libvirt >= 10), no guest OS: QEMU starts and sits in the firmware, enough to test live state."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr


def disk(path, dev, bus, fmt='qcow2', device='disk', cache=None, io=None, extra='', source_type='file'):
    driver = "<driver name='qemu' type=%s%s%s/>" % (
        quoteattr(fmt), ' cache=%s' % quoteattr(cache) if cache else '', ' io=%s' % quoteattr(io) if io else '')
    if source_type == 'file':
        source = '<source file=%s/>' % quoteattr(path) if path else ''
    else:
        source = '<source dev=%s/>' % quoteattr(path)
    return ("<disk type='%s' device='%s'>%s%s<target dev='%s' bus='%s'/>%s</disk>"
            % (source_type, device, driver, source, dev, bus, extra))


def domain(name, disks=(), machine='pc', vcpus=1, memory_mib=64, extra_devices='', metadata=''):
    return """<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>%d</memory>
  <vcpu placement='static'>%d</vcpu>%s
  <os><type arch='x86_64' machine='%s'>hvm</type><boot dev='hd'/></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    %s
    %s
    <memballoon model='none'/>
  </devices>
</domain>""" % (name.replace('&', '&amp;').replace('<', '&lt;'), memory_mib, vcpus, metadata, machine,
                '\n    '.join(disks), extra_devices)
