# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The benchmark guest's pure parts: ELF reading, module order, cpio, Depends parsing, /init."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._initramfs import (
    BUS_DRIVERS, BUS_MODULES, ElfError, cpio_archive, cpio_names, depends_names, elf_dynamic, elf_interpreter,
    init_script, modinfo, module_load_order, module_name)


def _real_python():
    return os.path.realpath(sys.executable)


def test_elf_dynamic_lists_what_the_loader_lists():
    # The interpreter running this test is a real dynamically linked ELF file: the reader must name
    # the same libraries the dynamic loader resolves (ldd's list minus the vdso and the loader).
    with open(_real_python(), 'rb') as handle:
        data = handle.read()
    needed, _runpath = elf_dynamic(data)
    ldd = subprocess.run(['ldd', _real_python()], capture_output=True, text=True, check=True).stdout
    direct = {line.split()[0] for line in ldd.splitlines() if '=>' in line}
    assert 'libc.so.6' in needed
    assert set(needed) <= direct
    assert elf_interpreter(data) == '/lib64/ld-linux-x86-64.so.2'


def test_elf_reader_refuses_what_is_not_elf_or_is_cut_short():
    with pytest.raises(ElfError):
        elf_dynamic(b'#!/bin/sh\necho hi\n' * 10)
    with open(_real_python(), 'rb') as handle:
        data = handle.read()
    with pytest.raises(ElfError):
        elf_dynamic(data[:4096])            # section headers lie beyond the end
    with pytest.raises(ElfError):
        elf_dynamic(data[:4] + b'\x01' + data[5:])    # 32-bit class


def _elf_with_modinfo(info):
    """A minimal ELF relocatable file with a .modinfo section, as a kernel module has."""
    modinfo_bytes = b''.join(b'%s\0' % item for item in info)
    names = b'\0.modinfo\0.shstrtab\0'
    body = modinfo_bytes + names
    shoff = 64 + len(body)
    header = b'\x7fELF' + bytes([2, 1, 1]) + b'\0' * 9
    header += struct.pack('<HHIQQQIHHHHHH', 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 2)
    null = b'\0' * 64
    sec_modinfo = struct.pack('<IIQQQQIIQQ', 1, 1, 0, 0, 64, len(modinfo_bytes), 0, 0, 1, 0)
    sec_names = struct.pack('<IIQQQQIIQQ', 10, 3, 0, 0, 64 + len(modinfo_bytes), len(names), 0, 0, 1, 0)
    return header + body + null + sec_modinfo + sec_names


def test_modinfo_reads_depends_and_module_names_follow_the_kernel():
    data = _elf_with_modinfo([b'license=GPL', b'depends=scsi_mod,crc-t10dif', b'name=sd_mod'])
    info = modinfo(data)
    assert info['depends'] == 'scsi_mod,crc-t10dif' and info['name'] == 'sd_mod'
    assert module_name('kernel/arch/x86/crypto/crct10dif-pclmul.ko.xz') == 'crct10dif_pclmul'
    assert module_name('/lib/modules/6.1.0/kernel/drivers/block/virtio_blk.ko') == 'virtio_blk'


def test_module_load_order_puts_dependencies_first_and_skips_builtins():
    depends = {'virtio_blk': ['virtio', 'virtio_ring'], 'virtio_ring': ['virtio'], 'virtio': [],
               'virtio_pci': ['virtio', 'virtio_ring', 'virtio_pci_modern_dev'], 'virtio_pci_modern_dev': []}
    order = module_load_order(['virtio_pci', 'virtio_blk', 'built_in_one'], depends)
    assert order == ['virtio', 'virtio_ring', 'virtio_pci_modern_dev', 'virtio_pci', 'virtio_blk']
    with pytest.raises(ValueError, match='loop'):
        module_load_order(['a'], {'a': ['b'], 'b': ['a']})


def test_every_bus_lists_its_driver():
    for bus, driver in BUS_DRIVERS.items():
        assert BUS_MODULES[bus][-1] == driver


def test_cpio_round_trip_is_deterministic_and_refuses_escaping_paths():
    files = {'init': (0o755, b'#!/bin/busybox sh\n'), 'usr/lib/x86_64-linux-gnu/libz.so.1': (0o755, b'\x7fELF...')}
    one = cpio_archive(files, symlinks={'lib': 'usr/lib'}, devices={'dev/console': (5, 1)})
    assert one == cpio_archive(dict(reversed(list(files.items()))), symlinks={'lib': 'usr/lib'},
                               devices={'dev/console': (5, 1)})
    names = cpio_names(one)
    assert names['init'] == (0o100755, b'#!/bin/busybox sh\n')
    assert names['usr/lib/x86_64-linux-gnu/libz.so.1'][1] == b'\x7fELF...'
    assert names['usr'][0] == 0o040755 and names['usr/lib'][0] == 0o040755
    assert names['lib'] == (0o120777, b'usr/lib')
    assert names['dev/console'][0] == 0o020600
    assert len(one) % 4 == 0
    for bad in ('../etc/passwd', 'a/../../b', '/./x', 'a//b'):
        with pytest.raises(ValueError):
            cpio_archive({bad: (0o644, b'')})


def test_cpio_header_fields_are_newc():
    # The kernel's unpacker reads these fields; the integration tests boot the real thing.
    archive = cpio_archive({'a': (0o644, b'xyz')})
    assert archive[:6] == b'070701'
    fields = [int(archive[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
    assert fields[1] == 0o100644 and fields[6] == 3 and fields[11] == 2 and fields[2] == fields[3] == 0
    assert archive[110:112] == b'a\0' and archive[112:115] == b'xyz'
    assert b'TRAILER!!!\0' in archive[-16:] and len(archive) % 4 == 0


def test_depends_names_takes_first_alternative_and_drops_versions_and_arch():
    field = 'libaio1 (>= 0.3.93), libc6 (>= 2.34), initramfs-tools (>= 0.120) | linux-initramfs-tool, python3:any'
    assert depends_names(field) == ['libaio1', 'libc6', 'initramfs-tools', 'python3']
    assert depends_names('') == [] and depends_names(None) == []


def test_init_script_sets_the_library_path_and_speaks_the_protocol():
    script = init_script(['/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu/ceph'])
    assert script.startswith('#!/bin/busybox sh\n')
    assert 'LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu/ceph' in script
    for marker in ('KVMIO-BOOTED', 'KVMIO-DISK', 'KVMIO-FIO', 'KVMIO-BEGIN', 'KVMIO-END', 'KVMIO-DONE'):
        assert marker in script
    assert '/etc/kvmio-modules-$bus' in script and 'poweroff -f' in script and 'kvmio.hold=1' in script
