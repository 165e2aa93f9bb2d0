# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""The disk I/O policy: what each setting means when it runs, the rules a disk must keep, the
advisories an audit gives, and ``decide_disk``, which turns a request into settings that keep them.

Pure: no lxml, no libvirt, no files. Every consumer reads these tables and nothing else:
- ``kvm_disk_tune`` writes what ``decide_disk`` decides, and ``decide_disk`` checks its final
  settings against ``DISK_RULES``;
- ``kvm_io_info`` (the audit) runs ``DISK_RULES`` and ``ADVISORIES`` on the current settings, with
  the fix ``decide_disk`` would apply;
- ``kvm_io_bench`` takes the settings of each candidate from ``decide_disk``;
- the fleet report counts a disk "on policy" from the ``fixed_by`` of these tables;
- docs/disk-policy.md lists every code and every FEATURES version (a unit test checks it).

The choices, with the reasons:
- cache: ``auto`` is ``none`` where O_DIRECT works on the image and its whole backing chain, else
  ``writeback``; it never picks ``writethrough`` or ``unsafe``. A disk without a cache attribute
  runs ``writeback`` (QEMU's default since 1.2), not ``writethrough``.
- io: ``native`` only with O_DIRECT caches (libvirt refuses it otherwise); ``auto`` picks
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

SEVERITIES = ('critical', 'high', 'medium', 'low')
ODIRECT_CACHES = frozenset(('none', 'directsync'))
# The cache modes cache=auto chooses from (never writethrough, whose guest sees no write cache and
# whose every write waits, never unsafe).
AUTO_CACHES = ('none', 'writeback')
# What a benchmark can measure: 'default' (no cache attribute, what QEMU runs for a disk as virt-install
# makes it: the baseline), then every explicit mode but unsafe (which loses data by design).
MEASURABLE_CACHES = ('default', 'none', 'writeback', 'directsync', 'writethrough')
# The <disk><driver> attributes this collection owns, as libvirt names them.
SETTINGS = ('cache', 'io', 'discard', 'detect_zeroes')
# What QEMU runs when the XML sets nothing (libvirt then passes nothing): cache writeback since
# QEMU 1.2 (FEATURES['writeback_default']), aio=threads, discard ignored, no zero detection.
QEMU_DEFAULTS = {'cache': 'writeback', 'io': 'threads', 'discard': 'ignore', 'detect_zeroes': 'off'}
LEGACY_DEFAULT_CACHE = 'writethrough'
# Whether the guest sees a volatile write cache (the WCE bit), and so sends flushes: a disk with
# writethrough or directsync looks write-through to the guest, which then never flushes.
GUEST_WRITE_CACHE = {'none': True, 'writeback': True, 'unsafe': True, 'writethrough': False, 'directsync': False}
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
    iothread: str | None = None       # the iothread of the disk, or of its virtio-scsi controller
    current: dict = field(default_factory=dict)   # cache/io/discard/detect_zeroes as set now (None = unset)

    @property
    def label(self):
        where = self.path or ('%s network disk' % self.protocol if self.protocol else 'no source')
        return '%s (%s)' % (self.target, where)

    @property
    def local(self):
        return self.source_type in LOCAL_SOURCES


@dataclass
class DiskDecision:
    wanted: dict = field(default_factory=dict)     # setting -> value to write (only settings to touch)
    reasons: dict = field(default_factory=dict)    # setting -> why
    errors: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    skipped: str = ''                               # why the disk is left alone entirely
    final: dict = field(default_factory=dict)      # the literal settings after the decision
    decided: set = field(default_factory=set)      # settings the request set (changed or not)


# --- what a disk runs with -----------------------------------------------------------------------

def default_cache(host):
    """The cache mode of a disk without one: writeback, or writethrough on QEMU before 1.2."""
    if host is not None and host.qemu is not None and not host.has('writeback_default'):
        return LEGACY_DEFAULT_CACHE
    return QEMU_DEFAULTS['cache']


def effective_settings(disk, settings=None, host=None):
    """What QEMU really runs for ``disk`` with the literal ``settings`` (default: its current ones):
    unset values resolved to QEMU's defaults, plus what the guest sees of the write cache and
    whether the host page cache is bypassed. ``io`` is None for network disks (no host file)."""
    literal = disk.current if settings is None else settings
    cache = literal.get('cache') or default_cache(host)
    io = literal.get('io') or QEMU_DEFAULTS['io']
    return {
        'cache': cache,
        'io': None if disk.source_type == 'network' else io,
        'discard': literal.get('discard') or QEMU_DEFAULTS['discard'],
        'detect_zeroes': literal.get('detect_zeroes') or QEMU_DEFAULTS['detect_zeroes'],
        'guest_write_cache': GUEST_WRITE_CACHE.get(cache),
        'odirect': cache in ODIRECT_CACHES,
    }


def discard_passes(bus, host):
    if bus == 'virtio':
        return host.has('virtio_blk_discard')
    return bus in DISCARD_BUSES


# --- the rules: what a disk's settings must keep ---------------------------------------------------

@dataclass(frozen=True)
class Check:
    """One rule or advisory. ``check(disk, literal, effective, storage, host, guards)`` returns the
    problem in words, or ''. ``reads``: the settings it looks at (a decision that touches one of them
    is responsible for the outcome). ``fixed_by``: the module that fixes it, with ``remedy`` as its
    options. ``evidence``: where the severity comes from (a refusal, or a measurement)."""

    code: str
    severity: str
    reads: frozenset
    check: object
    fix: str                       # the way out, as an error message ends
    fixed_by: str = 'kvm_disk_tune'
    remedy: str = ''               # the options of ``fixed_by`` an audit recommends; '' = recommended()
    evidence: str = ''


def _odirect_refused(disk, literal, eff, storage, host, guards):
    if disk.local and eff['odirect'] and storage is not None and storage.odirect is False:
        return 'cache=%s needs O_DIRECT, which %s refuses (%s); the domain would not start' % (
            eff['cache'], storage.fstype or 'this storage', storage.detail)
    return ''


def _native_without_odirect(disk, literal, eff, storage, host, guards):
    if literal.get('io') == 'native' and not eff['odirect']:
        return 'io=native needs cache=none or directsync (O_DIRECT), not cache=%s; libvirt refuses it' % (
            literal.get('cache') or 'unset')
    return ''


def _io_uring_unsupported(disk, literal, eff, storage, host, guards):
    if literal.get('io') == 'io_uring' and not host.has('io_uring'):
        return 'io=io_uring is not available: %s' % host.why_not('io_uring')
    return ''


def _zeroes_unmap_without_discard(disk, literal, eff, storage, host, guards):
    if eff['detect_zeroes'] == 'unmap' and eff['discard'] != 'unmap':
        return 'detect_zeroes=unmap needs discard=unmap (QEMU refuses it otherwise)'
    return ''


def _unsafe_cache(disk, literal, eff, storage, host, guards):
    if eff['cache'] == 'unsafe' and not guards.allow_unsafe:
        return 'cache=unsafe ignores flushes and loses data on a host crash'
    return ''


def _shareable_cached(disk, literal, eff, storage, host, guards):
    if disk.shareable and not eff['odirect']:
        return 'a shareable disk must use cache=none or directsync, not %s (each host caches its own view)' % (
            literal.get('cache') or 'the default (%s)' % eff['cache'])
    return ''


def _unmigratable(disk, literal, eff, storage, host, guards):
    if (guards.migratable and disk.local and not disk.readonly and not disk.shareable and not eff['odirect']
            and storage is not None and storage.shared is False):
        return ('cache=%s on non-shared storage (%s) makes the domain unmigratable (migratable=true)'
                % (eff['cache'], storage.fstype))
    return ''


_CACHE, _IO = frozenset(('cache',)), frozenset(('io',))
DISK_RULES = (
    Check('odirect_refused', 'critical', _CACHE, _odirect_refused,
          'use cache=writeback or cache=auto', evidence='QEMU: "Could not open ...: Invalid argument"'),
    Check('native_without_odirect', 'critical', _CACHE | _IO, _native_without_odirect,
          'set io too (io=auto picks a valid mode)', evidence='libvirt refuses the definition'),
    Check('io_uring_unsupported', 'critical', _IO, _io_uring_unsupported,
          'use io=auto', evidence='QEMU refuses to start'),
    Check('detect_zeroes_unmap_without_discard', 'critical', frozenset(('discard', 'detect_zeroes')),
          _zeroes_unmap_without_discard, 'set discard=unmap, or detect_zeroes=auto',
          remedy='discard=unmap detect_zeroes=auto', evidence='QEMU refuses it'),
    Check('unsafe_cache', 'high', _CACHE, _unsafe_cache, 'set allow_unsafe=true to allow it',
          evidence='data the guest flushed is lost on a host crash'),
    Check('shareable_cached', 'high', _CACHE, _shareable_cached, 'use cache=none or directsync',
          evidence='guests sharing the disk read stale data'),
    Check('unmigratable_cache', 'high', _CACHE, _unmigratable,
          'use cache=none/directsync on storage with O_DIRECT, or set migratable=false',
          evidence='libvirt refuses to migrate it without copying storage'),
)


# --- the advisories: what an audit recommends, graded by what it costs ----------------------------

def _explicit_writethrough(disk, literal, eff, storage, host, guards):
    if eff['cache'] == 'writethrough' and disk.device == 'disk':
        return 'cache=%s: every write waits for the disk' % (literal.get('cache') or 'default (writethrough)')
    return ''


def _emulated_bus(bus):
    def check(disk, literal, eff, storage, host, guards):
        if disk.device == 'disk' and disk.bus == bus:
            return 'bus %s is emulated: far slower than virtio' % bus
        return ''
    return check


def _no_iothread(disk, literal, eff, storage, host, guards):
    if disk.device == 'disk' and disk.bus in ('virtio', 'scsi') and not disk.iothread:
        return 'no iothread: the vCPU that submits the I/O also runs it'
    return ''


def _host_page_cache(disk, literal, eff, storage, host, guards):
    if (disk.local and eff['cache'] == 'writeback' and not disk.shareable and storage is not None
            and storage.odirect is True):
        return ('cache=%s keeps the guest\'s data in the host page cache as well as in the guest\'s: host '
                'memory is used twice and flushed data waits on the host' % (literal.get('cache') or 'default (writeback)'))
    return ''


def _no_discard(disk, literal, eff, storage, host, guards):
    if disk.local and not disk.readonly and eff['discard'] != 'unmap':
        return 'guest discards do not free host space'
    return ''


ADVISORIES = (
    Check('writethrough', 'high', _CACHE, _explicit_writethrough, 'cache=auto',
          evidence='guest fio: 0.39x on 4K random writes, 0.43x on 1M sequential writes'),
    Check('ide_bus', 'high', frozenset(), _emulated_bus('ide'), 'move it to bus=scsi or bus=virtio',
          remedy='bus=scsi (the guest needs the virtio-scsi driver)',
          evidence='guest fio: 0.28x on 4K random reads, 0.54x on 4K random writes'),
    Check('sata_bus', 'medium', frozenset(), _emulated_bus('sata'), 'move it to bus=scsi or bus=virtio',
          remedy='bus=scsi (the guest needs the virtio-scsi driver)',
          evidence='guest fio: 0.54x on 4K random reads, 0.50x on 1M sequential writes'),
    Check('no_iothread', 'medium', frozenset(), _no_iothread, 'give it an iothread', fixed_by='iothread_pin',
          remedy='iothreads=auto',
          evidence='guest fio (TCG): an iothread takes none/native from 0.90x to 1.33x on 4K random writes, 0.97x to 1.75x on 4K random reads'),
    Check('host_page_cache', 'low', _CACHE, _host_page_cache, 'cache=auto',
          evidence='host memory and predictability; not speed (see docs/disk-policy.md)'),
    Check('no_discard', 'low', frozenset(('discard',)), _no_discard, 'set discard=unmap',
          remedy='discard=unmap detect_zeroes=auto',
          evidence='host space only'),
)


def _thin_qcow2(disk, literal, eff, storage, host, guards, image=None):
    if image and image.get('format') == 'qcow2' and image.get('preallocation') == 'off':
        return 'thin qcow2 image %s: every first write to a cluster allocates it' % disk.path
    return ''


# An image-level advisory, fixed by qcow2_create: it reads the image (qemu-img facts), not the disk's settings.
THIN_QCOW2 = Check('thin_qcow2', 'medium', frozenset(), _thin_qcow2, 'preallocate its metadata',
                   fixed_by='qcow2_create', remedy='convert=true preallocation=metadata (domain shut down)',
                   evidence='guest fio: metadata preallocation 1.26x on 4K writes with fsync, 1.34x on 1M sequential writes')
ALL_CODES = tuple(c.code for c in DISK_RULES + ADVISORIES + (THIN_QCOW2,))


def broken_rules(disk, literal, storage, host, guards=Guards(), checks=DISK_RULES):
    """[(Check, message)] of ``checks`` that ``disk`` with the literal ``settings`` breaks."""
    eff = effective_settings(disk, literal, host)
    found = []
    for rule in checks:
        message = rule.check(disk, literal, eff, storage, host, guards)
        if message:
            found.append((rule, message))
    return found


# --- the decision ----------------------------------------------------------------------------------

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


def _set(decision, key, value, why):
    decision.decided.add(key)
    decision.wanted[key] = value
    decision.reasons[key] = why
    return value


def _decide_cache(disk, want, storage, decision, disk_specific):
    requested = want.cache
    current = disk.current.get('cache')
    if requested is None:
        return current
    odirect = storage.odirect if (storage is not None and disk.local) else None
    fstype = (storage.fstype if storage is not None else None) or 'this storage'
    if disk.shareable and requested not in ODIRECT_CACHES and (requested == 'auto' or 'cache' not in disk_specific):
        # A policy for every disk does not apply to shared disks as such: they keep (or get) a mode
        # that is safe for sharing, as removable media are left alone. A per-disk request is taken
        # as asked, and the rules refuse it.
        if current in ODIRECT_CACHES:
            decision.reasons['cache'] = 'shareable disk: keeps cache=%s (sharing needs O_DIRECT)' % current
            return current
        if odirect is True or disk.source_type == 'network':
            return _set(decision, 'cache', 'none', 'shareable disk: sharing needs cache=none or directsync')
        decision.warnings.append('%s: shareable disk needs cache=none or directsync, which this storage does not '
                                 'allow; cache left as it is' % disk.label)
        return current
    if requested != 'auto':
        if requested in ODIRECT_CACHES and disk.local and storage is not None and odirect is None:
            decision.warnings.append('%s: cannot check that O_DIRECT works (%s); cache=%s set as asked'
                                     % (disk.label, storage.detail, requested))
        return _set(decision, 'cache', requested, 'as requested')
    if disk.source_type == 'network':
        return _set(decision, 'cache', 'writeback',
                    'auto: network disk (%s): QEMU caches, O_DIRECT does not apply' % disk.protocol)
    if odirect is True:
        return _set(decision, 'cache', 'none', 'auto: O_DIRECT works on %s' % fstype)
    if odirect is False:
        return _set(decision, 'cache', 'writeback', 'auto: O_DIRECT refused on %s (%s)' % (fstype, storage.detail))
    detail = storage.detail if storage is not None else 'probe_storage=false'
    decision.warnings.append('%s: storage could not be probed (%s); cache=auto chose writeback' % (disk.label, detail))
    return _set(decision, 'cache', 'writeback', 'auto: storage not probed (%s): writeback is safe everywhere' % detail)


def _decide_io(disk, want, cache, host, decision):
    current = disk.current.get('io')
    odirect = (cache or default_cache(host)) in ODIRECT_CACHES
    if want.io is None:
        return current
    if disk.source_type == 'network':
        # QEMU's network drivers do no file AIO: io is only kept valid (libvirt refuses native without O_DIRECT).
        if want.io not in ('auto', current):
            decision.warnings.append('%s: io=%s does not apply to network disks; left as it is' % (disk.label, want.io))
        if current == 'native' and not odirect:
            return _set(decision, 'io', 'threads', 'network disk: io=native needs an O_DIRECT cache')
        return current
    if want.io != 'auto':
        return _set(decision, 'io', want.io, 'as requested')
    if odirect:
        return _set(decision, 'io', 'native', 'auto: cache=%s uses O_DIRECT, so Linux native AIO works' % cache)
    if host.has('io_uring'):
        return _set(decision, 'io', 'io_uring', 'auto: cache=%s has no O_DIRECT; io_uring is supported here'
                    % (cache or 'unset'))
    reason = host.why_not('io_uring')
    suffix = '; ' + reason if reason else ''
    return _set(decision, 'io', 'threads', 'auto: cache=%s has no O_DIRECT%s' % (cache or 'unset', suffix))


def _decide_discard(disk, want, host, decision):
    if want.discard is None or disk.readonly:
        return disk.current.get('discard')
    why = 'as requested'
    if want.discard == 'unmap' and not discard_passes(disk.bus, host):
        why += '; note: bus %s does not pass discard to the host' % disk.bus
        decision.warnings.append('%s: discard=unmap has no effect on bus %s' % (disk.label, disk.bus))
    return _set(decision, 'discard', want.discard, why)


def _decide_detect_zeroes(disk, want, discard, decision):
    requested = want.detect_zeroes
    if requested is None or disk.readonly:
        return disk.current.get('detect_zeroes')
    if requested != 'auto':
        return _set(decision, 'detect_zeroes', requested, 'as requested')
    if discard == 'unmap':
        return _set(decision, 'detect_zeroes', 'unmap', 'auto: discard=unmap, so zero writes become unmaps')
    return disk.current.get('detect_zeroes')


def decide_disk(disk, want, storage, host, guards=Guards(), disk_specific=frozenset()):
    """The settings ``disk`` should get under ``want``, given its storage facts and the host.

    ``disk_specific``: the settings a per-disk rule asked for this very disk (taken literally).
    The final settings are checked against DISK_RULES: a rule broken through a setting the request
    sets (even to the value the disk has) is an error; one the disk already breaks by itself is an
    error when the decision would redefine the disk anyway (libvirt would refuse the definition),
    else a warning.
    """
    decision = DiskDecision()
    decision.skipped = disk_kind_skip_reason(disk)
    if decision.skipped:
        return decision
    cache = _decide_cache(disk, want, storage, decision, disk_specific)
    io = _decide_io(disk, want, cache, host, decision)
    discard = _decide_discard(disk, want, host, decision)
    detect_zeroes = _decide_detect_zeroes(disk, want, discard, decision)
    final = {'cache': cache, 'io': io, 'discard': discard, 'detect_zeroes': detect_zeroes}
    # Only report what differs from what the disk has now.
    for key in list(decision.wanted):
        if decision.wanted[key] == disk.current.get(key):
            del decision.wanted[key]
    for rule, message in broken_rules(disk, final, storage, host, guards):
        touched = rule.reads & decision.decided
        if touched or (rule.severity == 'critical' and decision.wanted):
            decision.errors.append('%s: %s; %s' % (disk.label, message, rule.fix))
            for key in touched:
                decision.wanted.pop(key, None)
        else:
            decision.warnings.append('%s: %s (left as it is)' % (disk.label, message))
    decision.final = final
    return decision


def recommended(disk, storage, host):
    """The cache and io the collection recommends for ``disk`` (``cache=auto io=auto``), as text."""
    decision = decide_disk(disk, DiskSettings(cache='auto', io='auto'), storage, host)
    final = decision.final or disk.current
    return 'cache=%s io=%s' % (final.get('cache') or 'default', final.get('io') or 'default')
