# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Reads what ``HostSupport`` needs from this host: kernel, io_uring switch, emulator build.

The emulator path comes from domain XML (an ``xml_path`` template another user may write): it is read
only when it is a program only root can change (``_trusted_binary``), and then only its ELF dynamic
section, never the whole file."""

from __future__ import annotations

import os
import struct

from ._errors import KvmioError
from ._support import HostSupport, parse_version
from ._trusted_binary import open_trusted_binary

# An ELF file's program headers and dynamic section are a few KiB; more is not an emulator.
_MAX_TABLE_BYTES = 1 << 20
_MAX_NAME_BYTES = 4096
_PT_LOAD, _PT_DYNAMIC = 1, 2
_DT_NULL, _DT_NEEDED, _DT_STRTAB = 0, 1, 5


def _read_at(fd, offset, size):
    if size < 0 or size > _MAX_TABLE_BYTES or offset < 0:
        raise ValueError('not a plausible ELF table')
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise ValueError('truncated ELF file')
    return data


def needed_libraries(fd):
    """The DT_NEEDED names of the ELF file open at ``fd`` (its dynamic section only, a few KiB read
    with pread: never the whole file). Raises ValueError when it is not a dynamic ELF file."""
    ident = _read_at(fd, 0, 64)
    if ident[:4] != b'\x7fELF' or ident[4] not in (1, 2) or ident[5] not in (1, 2):
        raise ValueError('not an ELF file')
    wide, order = ident[4] == 2, '<' if ident[5] == 1 else '>'
    if wide:
        phoff, = struct.unpack_from(order + 'Q', ident, 32)
        phentsize, phnum = struct.unpack_from(order + 'HH', ident, 54)
        header, entry = order + 'IIQQQQQQ', order + 'qQ'
    else:
        phoff, = struct.unpack_from(order + 'I', ident, 28)
        phentsize, phnum = struct.unpack_from(order + 'HH', ident, 42)
        header, entry = order + 'IIIIIIII', order + 'iI'
    table = _read_at(fd, phoff, phentsize * phnum)
    loads, dynamic = [], None
    for index in range(phnum):
        fields = struct.unpack_from(header, table, index * phentsize)
        if wide:
            kind, offset, vaddr, filesz = fields[0], fields[2], fields[3], fields[5]
        else:
            kind, offset, vaddr, filesz = fields[0], fields[1], fields[2], fields[4]
        if kind == _PT_LOAD:
            loads.append((vaddr, offset, filesz))
        elif kind == _PT_DYNAMIC:
            dynamic = (offset, filesz)
    if dynamic is None:
        raise ValueError('no dynamic section')
    section = _read_at(fd, dynamic[0], dynamic[1])
    size = struct.calcsize(entry)
    needed, strtab = [], None
    for start in range(0, len(section) - size + 1, size):
        tag, value = struct.unpack_from(entry, section, start)
        if tag == _DT_NULL:
            break
        if tag == _DT_NEEDED:
            needed.append(value)
        elif tag == _DT_STRTAB:
            strtab = value
    base = next((offset + strtab - vaddr for vaddr, offset, filesz in loads
                 if strtab is not None and vaddr <= strtab < vaddr + filesz), None)
    if base is None:
        raise ValueError('no string table')
    names = []
    for value in needed:
        raw = os.pread(fd, _MAX_NAME_BYTES, base + value)
        names.append(raw.split(b'\0', 1)[0].decode('ascii', 'replace'))
    return names


def binary_links(path, soname_prefix):
    """True when the program at ``path`` names a shared library starting with ``soname_prefix``; None when
    that cannot be told: it is not a program only root can change (an ``xml_path`` template may name
    anything, a FIFO or /dev/zero included: those are never opened), or not a dynamic ELF file."""
    try:
        fd = open_trusted_binary(path)
    except KvmioError:
        return None
    try:
        return any(name.startswith(soname_prefix) for name in needed_libraries(fd))
    except (OSError, ValueError, struct.error):
        return None
    finally:
        os.close(fd)


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
