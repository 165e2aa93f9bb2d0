# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Reads what ``HostSupport`` needs from this host: kernel, io_uring switch, emulator build."""

from __future__ import annotations

import os

from ._support import HostSupport, parse_version

_CHUNK = 1 << 20


def binary_links(path, soname_prefix):
    """True when the ELF file at ``path`` names a shared library starting with ``soname_prefix``."""
    needle = soname_prefix.encode()
    tail = b''
    try:
        with open(path, 'rb') as handle:
            while True:
                chunk = handle.read(_CHUNK)
                if not chunk:
                    return False
                if needle in tail + chunk:
                    return True
                tail = chunk[-len(needle):]
    except OSError:
        return None


def io_uring_enabled():
    try:
        with open('/proc/sys/kernel/io_uring_disabled', encoding='ascii') as handle:
            return handle.read().strip() == '0'
    except OSError:
        return True    # kernels before 6.6 have no switch: io_uring is on if the kernel has it


def host_support(qemu_version=None, libvirt_version=None, emulators=('/usr/bin/qemu-system-x86_64',)):
    emulators = [e for e in emulators if e]
    linked = [binary_links(e, 'liburing.so') for e in emulators]
    return HostSupport(qemu=qemu_version, libvirt=libvirt_version, kernel=parse_version(os.uname().release),
                       io_uring_enabled=io_uring_enabled(),
                       qemu_has_io_uring=bool(linked) and all(linked))
