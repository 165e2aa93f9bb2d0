# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Disk I/O policy decisions: from what a disk is and what its storage allows, to settings.

Pure: no lxml, no libvirt, no files. ``decide_disk()`` is shared by ``kvm_disk_tune`` (which
writes the result) and ``kvm_io_facts`` (which reports the difference as findings).

The rules, with the seeds' reasons:
- cache: ``auto`` is ``none`` where O_DIRECT works on the image and its whole backing chain,
  else ``writeback``; it never picks ``writethrough`` (10-100x slower small writes) or ``unsafe``.
- io: ``native`` only with O_DIRECT caches (QEMU refuses it otherwise); ``auto`` picks
  ``native`` there, else ``io_uring`` where QEMU, libvirt and the kernel support it, else ``threads``.
- discard/detect_zeroes: ``detect_zeroes=unmap`` only together with ``discard=unmap``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

# 'keep' leaves a setting as the disk has it (None inside the planner).
CACHE_CHOICES = ('none', 'writeback', 'directsync', 'writethrough', 'unsafe', 'auto', 'keep')
IO_CHOICES = ('native', 'threads', 'io_uring', 'auto', 'keep')
DISCARD_CHOICES = ('unmap', 'ignore', 'keep')
DETECT_ZEROES_CHOICES = ('off', 'on', 'unmap', 'auto', 'keep')
BUS_CHOICES = ('keep', 'virtio', 'scsi')

ODIRECT_CACHES = frozenset(('none', 'directsync'))
# The <disk><driver> attributes this collection owns, as libvirt names them.
SETTINGS = ('cache', 'io', 'discard', 'detect_zeroes')
# Buses whose emulated device passes discard (TRIM/UNMAP) to the image.
DISCARD_BUSES = frozenset(('scsi', 'sata', 'ide'))
LOCAL_SOURCES = frozenset(('file', 'block', 'volume'))


@dataclass(frozen=True)
class DiskSettings:
    """Requested settings for a disk; None leaves a setting as it is."""

    cache: str | None = 'auto'
    io: str | None = 'auto'
    discard: str | None = None
    detect_zeroes: str | None = None

    def __post_init__(self):
        for key in SETTINGS:
            if getattr(self, key) == 'keep':
                object.__setattr__(self, key, None)

    def merged(self, overrides):
        """A copy with the non-None values of ``overrides`` (a dict) applied; 'keep' unsets."""
        return replace(self, **{k: v for k, v in overrides.items() if k in SETTINGS and v is not None})


@dataclass(frozen=True)
class Guards:
    allow_unsafe: bool = False
    migratable: bool = False


@dataclass(frozen=True)
class DiskInfo:
    """A disk as the domain XML describes it (after any planned bus change)."""

    target: str
    bus: str
    device: str = 'disk'
    source_type: str = 'file'
    path: str | None = None           # file/block path, or a resolved volume path
    protocol: str | None = None       # network disks
    driver_name: str | None = None
    image_format: str | None = None   # the format the domain declares (<driver type>), None if none
    readonly: bool = False
    shareable: bool = False
    current: dict = field(default_factory=dict)   # cache/io/discard/detect_zeroes as set now (None = unset)

    @property
    def label(self):
        where = self.path or ('%s network disk' % self.protocol if self.protocol else 'no source')
        return '%s (%s)' % (self.target, where)


@dataclass
class DiskDecision:
    wanted: dict = field(default_factory=dict)     # setting -> value to write (only settings to touch)
    reasons: dict = field(default_factory=dict)    # setting -> why
    errors: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    skipped: str = ''                               # why the disk is left alone entirely


def disk_kind_skip_reason(disk):
    """Why a disk gets no I/O settings at all, or '' when it is tunable. (The docs' table.)"""
    if disk.device in ('cdrom', 'floppy'):
        return 'removable media (%s): left alone' % disk.device
    if disk.device == 'lun':
        return "SCSI passthrough (device='lun'): left alone"
    if disk.driver_name not in (None, '', 'qemu'):
        return "driver '%s' is not QEMU's: left alone" % disk.driver_name
    if disk.source_type not in LOCAL_SOURCES and disk.source_type != 'network':
        return "source type '%s' has no cache/io settings to tune" % disk.source_type
    if disk.source_type == 'network' and not disk.protocol:
        return 'network disk without a protocol: left alone'
    if disk.source_type in LOCAL_SOURCES and not disk.path:
        return 'no source (empty or unresolved): left alone'
    return ''


def _decide_cache(disk, want, storage, guards, decision):
    requested = want.cache
    if requested is None:
        return disk.current.get('cache')
    if disk.source_type == 'network':
        if requested == 'auto':
            decision.wanted['cache'] = 'writeback'
            decision.reasons['cache'] = ('auto: network disk (%s): QEMU caches, O_DIRECT does not apply'
                                         % disk.protocol)
            return 'writeback'
        return _explicit_cache(disk, requested, guards, decision, None)
    odirect = storage.odirect if storage is not None else None
    fstype = (storage.fstype if storage is not None else None) or 'this storage'
    if requested == 'auto':
        if odirect is True:
            choice, why = 'none', 'auto: O_DIRECT works on %s' % fstype
        elif odirect is False:
            choice, why = 'writeback', 'auto: O_DIRECT refused on %s (%s)' % (fstype, storage.detail)
        else:
            choice = 'writeback'
            why = 'auto: storage not probed (%s): writeback is safe everywhere' % (
                storage.detail if storage is not None else 'probing disabled')
            decision.warnings.append('%s: storage could not be probed (%s); cache=auto chose writeback'
                                     % (disk.label, storage.detail if storage is not None else 'probe_storage=false'))
        if disk.shareable and choice not in ODIRECT_CACHES:
            decision.warnings.append('%s: shareable disk needs cache=none or directsync, which this storage '
                                     'does not allow; cache left as it is' % disk.label)
            return disk.current.get('cache')
        decision.wanted['cache'] = choice
        decision.reasons['cache'] = why
        return choice
    return _explicit_cache(disk, requested, guards, decision, storage)


def _explicit_cache(disk, requested, guards, decision, storage):
    if requested == 'unsafe' and not guards.allow_unsafe:
        decision.errors.append('%s: cache=unsafe ignores flushes and loses data on a host crash; '
                               'set allow_unsafe=true to allow it' % disk.label)
        return disk.current.get('cache')
    if disk.shareable and requested not in ODIRECT_CACHES:
        decision.errors.append('%s: a shareable disk must use cache=none or directsync, not %s'
                               % (disk.label, requested))
        return disk.current.get('cache')
    if requested in ODIRECT_CACHES and storage is not None and disk.source_type != 'network':
        if storage.odirect is False:
            fstype = storage.fstype or 'this storage'
            decision.errors.append(
                '%s: cache=%s needs O_DIRECT, which %s refuses (%s); the domain would not start. '
                'Use cache=writeback or cache=auto' % (disk.label, requested, fstype, storage.detail))
            return disk.current.get('cache')
        if storage.odirect is None:
            decision.warnings.append('%s: cannot check that O_DIRECT works (%s); cache=%s set as asked'
                                     % (disk.label, storage.detail, requested))
    decision.wanted['cache'] = requested
    decision.reasons['cache'] = 'as requested'
    return requested


def _decide_io(disk, want, cache, host, decision):
    if want.io is None or disk.source_type == 'network':
        if want.io not in (None, 'auto') and disk.source_type == 'network':
            decision.warnings.append('%s: io=%s does not apply to network disks; left as it is' % (disk.label, want.io))
        current = disk.current.get('io')
        if current == 'native' and cache not in ODIRECT_CACHES and disk.source_type != 'network':
            decision.errors.append('%s: io=native needs cache=none or directsync, but cache would be %s; '
                                   'set io too (io=auto picks a valid mode)' % (disk.label, cache or 'unset'))
        return
    if want.io == 'auto':
        if cache in ODIRECT_CACHES:
            choice, why = 'native', 'auto: cache=%s uses O_DIRECT, so Linux native AIO works' % cache
        elif host.has('io_uring'):
            choice, why = 'io_uring', 'auto: cache=%s has no O_DIRECT; io_uring is supported here' % (cache or 'unset')
        else:
            reason = host.why_not('io_uring')
            suffix = '; ' + reason if reason else ''
            choice, why = 'threads', 'auto: cache=%s has no O_DIRECT%s' % (cache or 'unset', suffix)
    else:
        choice, why = want.io, 'as requested'
        if choice == 'native' and cache not in ODIRECT_CACHES:
            decision.errors.append('%s: io=native needs cache=none or directsync (O_DIRECT), not cache=%s'
                                   % (disk.label, cache or 'unset'))
            return
        if choice == 'io_uring' and not host.has('io_uring'):
            decision.errors.append('%s: io=io_uring is not available: %s' % (disk.label, host.why_not('io_uring')))
            return
    decision.wanted['io'] = choice
    decision.reasons['io'] = why


def discard_passes(bus, host):
    if bus == 'virtio':
        return host.has('virtio_blk_discard')
    return bus in DISCARD_BUSES


def _decide_discard(disk, want, host, decision):
    if want.discard is None or disk.readonly:
        return disk.current.get('discard')
    decision.wanted['discard'] = want.discard
    why = 'as requested'
    if want.discard == 'unmap' and not discard_passes(disk.bus, host):
        why += '; note: bus %s does not pass discard to the host' % disk.bus
        decision.warnings.append('%s: discard=unmap has no effect on bus %s' % (disk.label, disk.bus))
    decision.reasons['discard'] = why
    return want.discard


def _decide_detect_zeroes(disk, want, discard, decision):
    requested = want.detect_zeroes
    final = disk.current.get('detect_zeroes')
    if requested is not None and not disk.readonly:
        if requested == 'auto':
            if discard == 'unmap':
                decision.wanted['detect_zeroes'] = 'unmap'
                decision.reasons['detect_zeroes'] = 'auto: discard=unmap, so zero writes become unmaps'
                final = 'unmap'
        else:
            decision.wanted['detect_zeroes'] = requested
            decision.reasons['detect_zeroes'] = 'as requested'
            final = requested
    if final == 'unmap' and discard != 'unmap':
        decision.errors.append('%s: detect_zeroes=unmap needs discard=unmap (QEMU refuses it otherwise)' % disk.label)
        decision.wanted.pop('detect_zeroes', None)


def decide_disk(disk, want, storage, host, guards=Guards()):
    """The settings ``disk`` should get under ``want``, given its storage facts and the host."""
    decision = DiskDecision()
    decision.skipped = disk_kind_skip_reason(disk)
    if decision.skipped:
        return decision
    cache = _decide_cache(disk, want, storage, guards, decision)
    if (guards.migratable and disk.source_type in LOCAL_SOURCES and not disk.readonly and not disk.shareable
            and cache not in ODIRECT_CACHES and storage is not None and storage.shared is False
            and 'cache' in decision.wanted):
        decision.errors.append('%s: cache=%s on non-shared storage (%s) makes the domain unmigratable '
                               '(migratable=true); use cache=none/directsync on storage with O_DIRECT, '
                               'or set migratable=false' % (disk.label, cache, storage.fstype))
    _decide_io(disk, want, cache, host, decision)
    discard = _decide_discard(disk, want, host, decision)
    _decide_detect_zeroes(disk, want, discard, decision)
    # Only report what differs from what the disk has now.
    for key in list(decision.wanted):
        if decision.wanted[key] == disk.current.get(key):
            del decision.wanted[key]
    return decision
