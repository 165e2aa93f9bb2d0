# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""The pure parts of building the benchmark guest's initramfs: ELF and module metadata, load order,
the ``/init`` script and the cpio archive.

Pure: bytes in, bytes or lists out; ``_guest_image`` reads the packages and writes the files. The ELF
reader does what ``ldd`` would tell without running anything: a binary from a package is data here,
never executed on the hypervisor.
"""

from __future__ import annotations

import struct

# Where the built guest is kept, and the kernel it is built from by default: the standard Debian kernel,
# whose modules include AHCI (SATA) and PIIX (IDE) besides virtio (linux-image-cloud-amd64 is a third
# of the download but has no AHCI driver, so no SATA candidates).
DEFAULT_CACHE_DIR = '/var/cache/kvmio/guest'
DEFAULT_KERNEL_PACKAGE = 'linux-image-amd64'
TOOL_PACKAGES = ('busybox-static', 'fio')

# The guest drivers of each bus this benchmark can measure, in the order they must load (each
# one's ``depends=`` are added before it). Soft dependencies (crc-t10dif's crypto backend, the
# generic one: the CPU-specific one needs PCLMUL, which TCG's default CPU lacks) are not in
# ``depends=``, so they are named first.
BUS_MODULES = {
    'virtio': ('virtio', 'virtio_ring', 'virtio_pci', 'virtio_blk'),
    'scsi': ('virtio', 'virtio_ring', 'virtio_pci', 'crct10dif_generic', 'scsi_mod', 'sd_mod', 'virtio_scsi'),
    'sata': ('crct10dif_generic', 'scsi_mod', 'sd_mod', 'libata', 'libahci', 'ahci'),
    'ide': ('crct10dif_generic', 'scsi_mod', 'sd_mod', 'libata', 'ata_piix'),
}
# Modules a bus needs that must exist (the others above are optional helpers).
BUS_DRIVERS = {'virtio': 'virtio_blk', 'scsi': 'virtio_scsi', 'sata': 'ahci', 'ide': 'ata_piix'}

ELF_MAGIC = b'\x7fELF'
_SHT_DYNAMIC = 6
_PT_INTERP = 3
_DT_NEEDED = 1
_DT_RPATH = 15
_DT_RUNPATH = 29


class ElfError(ValueError):
    """The bytes are not a 64-bit little-endian ELF file this reader understands."""


def _elf_header(data):
    if len(data) < 64 or data[:4] != ELF_MAGIC:
        raise ElfError('not an ELF file')
    if data[4] != 2 or data[5] != 1:
        raise ElfError('not a 64-bit little-endian ELF file')
    (phoff, shoff) = struct.unpack_from('<QQ', data, 32)
    (phentsize, phnum, shentsize, shnum, shstrndx) = struct.unpack_from('<HHHHH', data, 54)
    return phoff, phentsize, phnum, shoff, shentsize, shnum, shstrndx


def _sections(data):
    """[(name, type, offset, size, link)] of every section."""
    _phoff, _phentsize, _phnum, shoff, shentsize, shnum, shstrndx = _elf_header(data)
    if shoff == 0 or shentsize < 64 or shoff + shnum * shentsize > len(data):
        raise ElfError('section headers out of bounds')
    raw = []
    for index in range(shnum):
        name, sh_type, _flags, _addr, offset, size, link = struct.unpack_from('<IIQQQQI', data, shoff + index * shentsize)
        if sh_type != 8 and offset + size > len(data):       # 8 = SHT_NOBITS (.bss) has no bytes
            raise ElfError('section %d out of bounds' % index)
        raw.append((name, sh_type, offset, size, link))
    if shstrndx >= len(raw):
        raise ElfError('no section name table')
    names_at = raw[shstrndx][2]
    return [(_cstring(data, names_at + name), sh_type, offset, size, link) for name, sh_type, offset, size, link in raw]


def _cstring(data, offset):
    end = data.find(b'\0', offset)
    if offset >= len(data) or end < 0:
        raise ElfError('string out of bounds')
    return data[offset:end].decode('utf-8', errors='replace')


def elf_dynamic(data):
    """(needed sonames, runpath directories) of a dynamically linked ELF file; ([], []) when static."""
    sections = _sections(data)
    for _name, sh_type, offset, size, link in sections:
        if sh_type != _SHT_DYNAMIC:
            continue
        if link >= len(sections):
            raise ElfError('dynamic section names no string table')
        strings = sections[link][2]
        needed, runpath = [], []
        for entry in range(offset, offset + size - 15, 16):
            tag, value = struct.unpack_from('<qQ', data, entry)
            if tag == 0:
                break
            if tag == _DT_NEEDED:
                needed.append(_cstring(data, strings + value))
            elif tag in (_DT_RPATH, _DT_RUNPATH):
                runpath.extend(p for p in _cstring(data, strings + value).split(':') if p)
        return needed, runpath
    return [], []


def elf_interpreter(data):
    """The program interpreter (``/lib64/ld-linux-x86-64.so.2``) of an executable, or None."""
    phoff, phentsize, phnum, _shoff, _shentsize, _shnum, _shstrndx = _elf_header(data)
    for index in range(phnum):
        p_type, _flags, offset, _vaddr, _paddr, filesz = struct.unpack_from('<IIQQQQ', data, phoff + index * phentsize)
        if p_type == _PT_INTERP:
            if offset + filesz > len(data):
                raise ElfError('interpreter out of bounds')
            return data[offset:offset + filesz].rstrip(b'\0').decode('utf-8', errors='replace')
    return None


def modinfo(data):
    """{key: value} of a kernel module's ``.modinfo`` section (``depends``, ``name``, ...)."""
    for name, _type, offset, size, _link in _sections(data):
        if name == '.modinfo':
            info = {}
            for item in data[offset:offset + size].split(b'\0'):
                key, sep, value = item.decode('utf-8', errors='replace').partition('=')
                if sep and key not in info:
                    info[key] = value
            return info
    return {}


def module_name(path):
    """'kernel/arch/x86/crypto/crct10dif-pclmul.ko.xz' -> 'crct10dif_pclmul' (as the kernel names it)."""
    base = path.rsplit('/', 1)[-1]
    for suffix in ('.xz', '.gz', '.zst'):
        if base.endswith(suffix):
            base = base[:-len(suffix)]
    if base.endswith('.ko'):
        base = base[:-3]
    return base.replace('-', '_')


def module_load_order(wanted, depends):
    """Modules to insmod, dependencies first (what modules.dep gives ``modprobe``).

    ``wanted``: names in the order asked; ``depends``: {name: [names it depends on]} of the modules
    present (a name absent from ``depends`` is built into the kernel or missing: skipped here, the
    caller checks the drivers it needs). Raises ValueError on a dependency loop.
    """
    order, state = [], {}

    def visit(name, path):
        if name not in depends or state.get(name) == 'done':
            return
        if state.get(name) == 'visiting':
            raise ValueError('kernel module dependency loop: %s' % ' -> '.join(path + [name]))
        state[name] = 'visiting'
        for dep in depends[name]:
            visit(dep, path + [name])
        state[name] = 'done'
        order.append(name)

    for name in wanted:
        visit(name, [])
    return order


# --- cpio (newc), the format the kernel unpacks an initramfs from -----------------------------

S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR = 0o040000, 0o100000, 0o120000, 0o020000


def _cpio_entry(name, mode, data=b'', ino=0, rdev=(0, 0)):
    name_bytes = name.encode('utf-8') + b'\0'
    header = '070701' + ''.join('%08X' % v for v in (
        ino, mode, 0, 0, 2 if mode & 0o170000 == S_IFDIR else 1, 0, len(data), 0, 0,
        rdev[0], rdev[1], len(name_bytes), 0))
    out = header.encode('ascii') + name_bytes
    out += b'\0' * (-len(out) % 4)
    out += data + b'\0' * (-len(data) % 4)
    return out


def cpio_archive(files, symlinks=None, devices=None):
    """A newc cpio archive: ``files`` {path: (mode bits, bytes)}, ``symlinks`` {path: target},
    ``devices`` {path: (major, minor)} (character devices). Parent directories are added (0755);
    owner root, mtime 0, in sorted order: the same input gives the same bytes."""
    symlinks = symlinks or {}
    devices = devices or {}
    entries = {}
    for path in list(files) + list(symlinks) + list(devices):
        parts = path.strip('/').split('/')
        if '' in parts or '.' in parts or '..' in parts:
            raise ValueError('bad path in initramfs: %r' % path)
        for depth in range(1, len(parts)):
            entries.setdefault('/'.join(parts[:depth]), (S_IFDIR | 0o755, b'', (0, 0)))
    for path, (mode, data) in files.items():
        entries[path.strip('/')] = (S_IFREG | (mode & 0o7777), data, (0, 0))
    for path, target in symlinks.items():
        entries[path.strip('/')] = (S_IFLNK | 0o777, target.encode('utf-8'), (0, 0))
    for path, rdev in devices.items():
        entries[path.strip('/')] = (S_IFCHR | 0o600, b'', rdev)
    out = [_cpio_entry(name, mode, data, ino=index + 1, rdev=rdev)
           for index, (name, (mode, data, rdev)) in enumerate(sorted(entries.items()))]
    out.append(_cpio_entry('TRAILER!!!', 0))
    return b''.join(out)


def cpio_names(archive):
    """{name: (mode, bytes)} of a newc cpio archive (for tests and for checking a user's initrd)."""
    found, at = {}, 0
    while at + 110 <= len(archive):
        header = archive[at:at + 110]
        if header[:6] != b'070701':
            raise ValueError('not a newc cpio archive at offset %d' % at)
        fields = [int(header[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = archive[at + 110:at + 110 + namesize - 1].decode('utf-8', errors='replace')
        at += 110 + namesize
        at += -at % 4
        if name == 'TRAILER!!!':
            break
        found[name] = (mode, archive[at:at + size])
        at += size
        at += -at % 4
    return found


# --- the guest's /init ------------------------------------------------------------------------

# What the guest prints on its serial console, one marker per line; ``_fio`` parses them.
INIT_SCRIPT = r'''#!/bin/busybox sh
# kvmio.tuning benchmark guest: load the disk drivers of kvmio.bus, run the fio jobs kvmio.jobs names
# (base64 of 'name<TAB>options' lines) on the one disk there is, print each job's JSON (gzip, base64)
# between markers, power off (or, with kvmio.hold=1, keep running).
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin LD_LIBRARY_PATH=@LIBRARY_PATH@
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "KVMIO-BOOTED $(cut -d' ' -f1 /proc/uptime)"
jobs=""
bus=virtio
hold=""
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    kvmio.jobs=*) jobs="${arg#kvmio.jobs=}" ;;
    kvmio.bus=*) bus="${arg#kvmio.bus=}" ;;
    kvmio.hold=1) hold=1 ;;
  esac
done
# Only the drivers of the bus under test: probing the others costs seconds under TCG.
while read -r module; do
  insmod "/lib/modules/kvmio/$module.ko" 2>/dev/null || echo "KVMIO-MODULE-FAILED $module"
done < "/etc/kvmio-modules-$bus"
# Quiet the kernel on the console from here on: its messages would cut through our lines.
echo 1 > /proc/sys/kernel/printk
disk=""
for _ in $(seq 1 300); do
  for candidate in /sys/block/vd* /sys/block/sd* /sys/block/hd*; do
    [ -e "$candidate" ] && disk="${candidate##*/}" && break 2
  done
  sleep 0.1
done
if [ -z "$disk" ]; then
  echo "KVMIO-ERROR no disk appeared"
else
  echo "KVMIO-DISK name=$disk write_cache=$(tr ' ' _ < /sys/block/$disk/queue/write_cache)" \
       "path=$(readlink -f /sys/block/$disk/device) size=$(cat /sys/block/$disk/size)"
  echo "$jobs" | base64 -d > /tmp/jobs 2>/dev/null
  echo "KVMIO-FIO $(cut -d' ' -f1 /proc/uptime)"
  while IFS='	' read -r name args; do
    [ -n "$name" ] || continue
    echo "KVMIO-BEGIN $name"
    # shellcheck disable=SC2086
    fio --name="$name" --filename="/dev/$disk" --output-format=json $args 2>/tmp/fio.err | gzip -c | base64
    echo "KVMIO-END $name"
    [ -s /tmp/fio.err ] && sed -n '1,5s/^/KVMIO-STDERR /p' /tmp/fio.err
  done < /tmp/jobs
fi
echo "KVMIO-DONE"
sync
if [ -n "$hold" ]; then
  # Other tests boot this guest to have a real kernel behind a disk: keep running until destroyed.
  echo "KVMIO-HOLDING"
  while :; do sleep 3600; done
fi
poweroff -f
'''


def init_script(library_path):
    """The guest's /init; ``library_path``: directories holding fio's libraries (LD_LIBRARY_PATH)."""
    return INIT_SCRIPT.replace('@LIBRARY_PATH@', ':'.join(library_path))


def depends_names(field):
    """Package names of a Debian ``Depends:`` field; of alternatives (``a | b``) the first one."""
    names = []
    for clause in (field or '').split(','):
        first = clause.split('|')[0].strip()
        name = first.split(' ')[0].split('(')[0].split(':')[0].strip()
        if name and name not in names:
            names.append(name)
    return names
