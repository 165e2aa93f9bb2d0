# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""What planners know of the host: which features its QEMU, libvirt and kernel support (one table),
and what a probe learnt about each disk's storage.

Pure data: ``HostSupport`` answers from versions and probe results passed in, ``StorageFacts`` is
filled by ``_storage_probe``; planners stay free of I/O and tests can describe any host.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# feature: (minimum QEMU, minimum libvirt, minimum kernel, why it matters)
FEATURES = {
    'io_uring': ((5, 0, 0), (6, 3, 0), (5, 1, 0), "io='io_uring'"),
    'virtio_blk_discard': ((4, 0, 0), (0, 0, 0), (0, 0, 0), 'discard through virtio-blk'),
    'qcow2_extended_l2': ((5, 2, 0), (0, 0, 0), (0, 0, 0), 'qcow2 extended_l2'),
    'scsi_iothread': ((2, 1, 0), (1, 2, 8), (0, 0, 0), 'an iothread for a virtio-scsi controller'),
    'writeback_default': ((1, 2, 0), (0, 0, 0), (0, 0, 0), 'writeback for a disk without a cache mode'),
}


def parse_version(text):
    """'7.2.22' or '6.18.44-foo' -> (7, 2, 22); missing parts are 0; None for no digits."""
    parts = []
    for chunk in str(text).split('.'):
        digits = ''
        for char in chunk:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        parts.append(int(digits))
        if len(parts) == 3:
            break
    if not parts:
        return None
    return tuple(parts + [0] * (3 - len(parts)))


def fmt_version(version):
    return '.'.join(str(v) for v in version) if version else 'unknown'


@dataclass(frozen=True)
class HostSupport:
    """What the host offers. Versions are (major, minor, micro) tuples or None when unknown."""

    qemu: tuple | None = None
    libvirt: tuple | None = None
    kernel: tuple | None = None
    io_uring_enabled: bool | None = None      # kernel.io_uring_disabled == 0 (or absent)
    qemu_has_io_uring: bool | None = None     # the emulator links liburing
    notes: dict = field(default_factory=dict)

    def has(self, feature):
        """True when every version this feature needs is known and high enough."""
        need_qemu, need_libvirt, need_kernel, _label = FEATURES[feature]
        for have, need in ((self.qemu, need_qemu), (self.libvirt, need_libvirt), (self.kernel, need_kernel)):
            if need != (0, 0, 0) and (have is None or have < need):
                return False
        if feature == 'io_uring':
            return bool(self.io_uring_enabled) and bool(self.qemu_has_io_uring)
        return True

    def why_not(self, feature):
        need_qemu, need_libvirt, need_kernel, label = FEATURES[feature]
        reasons = []
        for name, have, need in (('QEMU', self.qemu, need_qemu), ('libvirt', self.libvirt, need_libvirt),
                                 ('kernel', self.kernel, need_kernel)):
            if need != (0, 0, 0) and (have is None or have < need):
                reasons.append('%s %s < %s' % (name, fmt_version(have), fmt_version(need)))
        if feature == 'io_uring':
            if not self.io_uring_enabled:
                reasons.append('io_uring disabled in the kernel')
            if not self.qemu_has_io_uring:
                reasons.append('QEMU built without liburing')
        return '%s needs %s' % (label, ', '.join(reasons)) if reasons else ''


@dataclass(frozen=True)
class StorageFacts:
    """What the probe learnt about one disk source. ``odirect`` is None when it could not tell."""

    path: str
    kind: str                  # file | block | missing | unreadable | unsupported (FIFO, socket, ...)
    fstype: str | None = None
    mountpoint: str | None = None
    odirect: bool | None = None
    shared: bool | None = None
    image_format: str | None = None   # the format the domain declares (raw when it declares none)
    chain: tuple = ()                  # every file QEMU opens, the image first
    detail: str = ''                   # why odirect is False or None

    def as_dict(self):
        facts = asdict(self)
        facts['chain'] = list(self.chain)
        return facts
