# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""qcow2 image planning: sizes, option validation, facts from qemu-img output, drift, the action.

Pure: it takes what ``qemu-img info``/``map`` printed and returns a plan; ``_qcow2_runner`` does
the I/O. An image is never shrunk and never rewritten in place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

from ._disk_xml import declared_format, disk_source, host_path
from ._errors import PlanError
from ._qcow2_header import is_protocol
from ._support import FEATURES, HostSupport, fmt_version

PREALLOCATION_CHOICES = ('off', 'metadata', 'falloc', 'full')
FORMATS = ('qcow2', 'raw')           # what qcow2_create reads; any other format is refused, never guessed
SECTOR = 512
# The action as results name it, in check mode as in a real run.
ACTION_DONE = {'create': 'created', 'grow': 'grown', 'convert': 'converted', 'remove': 'removed',
               'none': 'none', 'drift': 'drift'}
WRITE_ACTIONS = ('create', 'grow', 'convert', 'remove')
# How much of the image is allocated up front, as qemu-img map shows it. falloc and full look alike
# in a map (every cluster has a host offset and reads as data), so both count as 'falloc'.
_PREALLOC_RANK = {'off': 0, 'metadata': 1, 'falloc': 2, 'full': 2}
_UNITS = {'': 1, 'B': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40, 'P': 1 << 50, 'E': 1 << 60}
_SIZE_RE = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*([KMGTPE]?)(?:i?B)?\s*$', re.IGNORECASE)


def parse_size(value, what='size'):
    """'10G', '512M', '64K', '1.5T' or a number of bytes -> bytes (binary units, as qemu-img).

    Exact (no float): '1.1G' is 1181116006 bytes, as qemu-img reads it.
    """
    if isinstance(value, int):
        number, unit = value, ''
    else:
        match = _SIZE_RE.match(str(value))
        if not match:
            raise PlanError("%s '%s' is not a size: use a number of bytes or a number with K, M, G or T "
                            "(for example 10G)" % (what, value))
        number, unit = match.group(1), match.group(2).upper()
    size = int(Fraction(number) * _UNITS[unit])
    if size <= 0:
        raise PlanError('%s must be larger than 0, not %s' % (what, value))
    return size


def image_size(value):
    """A virtual size as qemu-img makes it: rounded up to a whole 512-byte sector (1000 -> 1024), so
    that a rerun with the same request finds the size it asked for."""
    return whole_sectors(parse_size(value, 'size'))


def whole_sectors(size):
    """``size`` rounded up to a whole number of 512-byte sectors."""
    return -(-size // SECTOR) * SECTOR


def human_size(size):
    for unit in ('E', 'P', 'T', 'G', 'M', 'K'):
        if size >= _UNITS[unit] and size % _UNITS[unit] == 0:
            return '%d%s' % (size // _UNITS[unit], unit)
    return str(size)


@dataclass(frozen=True)
class WantedImage:
    size: int | None
    preallocation: str = 'metadata'
    cluster_size: int | None = None
    lazy_refcounts: bool = False
    extended_l2: bool = False
    compat: str = '1.1'
    backing_file: str | None = None
    backing_format: str | None = None

    def create_options(self):
        """qemu-img -o options for a new image."""
        options = {'compat': self.compat, 'lazy_refcounts': 'on' if self.lazy_refcounts else 'off',
                   'preallocation': self.preallocation}
        if self.cluster_size:
            options['cluster_size'] = self.cluster_size
        if self.extended_l2:
            options['extended_l2'] = 'on'
        return options


def validate_wanted(wanted, qemu_version):
    """Refuses combinations QEMU would refuse, before anything touches the disk."""
    errors = []
    if wanted.cluster_size is not None:
        low = 16384 if wanted.extended_l2 else 512
        if wanted.cluster_size & (wanted.cluster_size - 1) or not low <= wanted.cluster_size <= 2 << 20:
            errors.append('cluster_size %s must be a power of two from %s to 2M%s' % (
                human_size(wanted.cluster_size), human_size(low), ' with extended_l2' if wanted.extended_l2 else ''))
    if wanted.extended_l2:
        if qemu_version is not None and not HostSupport(qemu=qemu_version).has('qcow2_extended_l2'):
            errors.append('extended_l2 needs QEMU %s or later; this host has %s'
                          % (fmt_version(FEATURES['qcow2_extended_l2'][0]), fmt_version(qemu_version)))
        if wanted.compat != '1.1':
            errors.append('extended_l2 needs compat 1.1')
    if wanted.lazy_refcounts and wanted.compat != '1.1':
        errors.append('lazy_refcounts needs compat 1.1')
    if wanted.backing_format is not None and wanted.backing_format not in FORMATS:
        errors.append("backing_format '%s' is not one of %s" % (wanted.backing_format, ', '.join(FORMATS)))
    if wanted.backing_file is not None and (not wanted.backing_file or is_protocol(wanted.backing_file)):
        errors.append("backing_file '%s' is not a local file name (QEMU would read a name with ':' before its "
                      "first '/' as a protocol; write ./%s for a file)" % (wanted.backing_file, wanted.backing_file))
    if wanted.backing_file and wanted.preallocation != 'off' and not wanted.extended_l2:
        errors.append('preallocation=%s with a backing file needs extended_l2=true (QEMU refuses it otherwise); '
                      'or use preallocation=off' % wanted.preallocation)
    if errors:
        raise PlanError('; '.join(errors))


def effective_preallocation(wanted, has_backing):
    """The preallocation an image can show: an overlay keeps unallocated clusters reading through to
    its backing file, so it can be preallocated (metadata at most, as qemu-img map shows it) only with
    extended_l2 (subclusters), and not at all without."""
    if not has_backing:
        return wanted.preallocation
    if wanted.extended_l2 and wanted.preallocation != 'off':
        return 'metadata'
    return 'off'


def preallocation_state(extents):
    """'off' (thin: some clusters have no host offset), 'metadata' or 'falloc', from qemu-img map."""
    if not extents or any('offset' not in e or e.get('depth', 0) > 0 for e in extents):
        return 'off'
    if any(e.get('zero') for e in extents):
        return 'metadata'
    return 'falloc'


def image_facts(info, extents):
    """The fields the module compares and returns, from qemu-img info (and map for qcow2)."""
    data = info.get('format-specific', {}).get('data', {}) if info.get('format') == 'qcow2' else {}
    return {
        'format': info.get('format'),
        'virtual_size': info.get('virtual-size'),
        'actual_size': info.get('actual-size'),
        'cluster_size': info.get('cluster-size'),
        'compat': data.get('compat'),
        'lazy_refcounts': data.get('lazy-refcounts'),
        'extended_l2': data.get('extended-l2', False) if info.get('format') == 'qcow2' else None,
        'backing_file': info.get('backing-filename'),
        'backing_format': info.get('backing-filename-format'),
        'preallocation': preallocation_state(extents) if extents is not None else None,
    }


def header_info(fmt, header, backing_name, size, actual_size):
    """The ``qemu-img info`` fields ``image_facts`` reads, from a header this module parsed itself
    (``_qcow2_header``) and the file's size: one qemu-img process less per image, and the backing
    name exactly as the header holds it (qemu-img prints U+FFFD for bytes that are not UTF-8)."""
    info = {'format': fmt, 'virtual-size': size, 'actual-size': actual_size}
    if fmt == 'qcow2':
        data = {'compat': header.compat, 'extended-l2': header.extended_l2}
        if header.version >= 3:             # version 2 has no feature bits: qemu-img prints none
            data['lazy-refcounts'] = header.lazy_refcounts
        info.update({'virtual-size': header.virtual_size, 'cluster-size': header.cluster_size,
                     'format-specific': {'type': 'qcow2', 'data': data}})
        if backing_name is not None:
            info['backing-filename'] = backing_name
            if header.backing_format:
                info['backing-filename-format'] = header.backing_format
    return info


def drift_of(facts, wanted):
    """The fields where an existing image differs from what is asked, as {field: (have, want)}."""
    drift = {}
    if facts['format'] != 'qcow2':
        drift['format'] = (facts['format'], 'qcow2')
        return drift
    if wanted.size is not None and facts['virtual_size'] != wanted.size:
        drift['virtual_size'] = (facts['virtual_size'], wanted.size)
    if wanted.cluster_size and facts['cluster_size'] != wanted.cluster_size:
        drift['cluster_size'] = (facts['cluster_size'], wanted.cluster_size)
    if facts['compat'] != wanted.compat:
        drift['compat'] = (facts['compat'], wanted.compat)
    if bool(facts['lazy_refcounts']) != wanted.lazy_refcounts:
        drift['lazy_refcounts'] = (facts['lazy_refcounts'], wanted.lazy_refcounts)
    if bool(facts['extended_l2']) != wanted.extended_l2:
        drift['extended_l2'] = (facts['extended_l2'], wanted.extended_l2)
    if wanted.backing_file is not None and facts['backing_file'] != wanted.backing_file:
        drift['backing_file'] = (facts['backing_file'], wanted.backing_file)
    if wanted.backing_file is not None and facts['backing_file'] == wanted.backing_file \
            and facts.get('backing_format') != wanted.backing_format:
        drift['backing_format'] = (facts.get('backing_format'), wanted.backing_format)
    want = effective_preallocation(wanted, bool(wanted.backing_file or facts['backing_file']))
    if _PREALLOC_RANK[facts['preallocation'] or 'off'] < _PREALLOC_RANK[want]:
        drift['preallocation'] = (facts['preallocation'], want)
    return drift


@dataclass
class ImagePlan:
    action: str                           # create | none | grow | convert | drift
    drift: dict = field(default_factory=dict)
    reason: str = ''


def plan_image(path, facts, wanted, resize='keep', convert=False):
    """What to do with ``path`` (facts None: it does not exist)."""
    if facts is None:
        if wanted.size is None:
            raise PlanError('%s does not exist and no size was given to create it' % path)
        return ImagePlan('create', reason='the image does not exist')
    drift = drift_of(facts, wanted)
    if 'virtual_size' in drift and wanted.size < facts['virtual_size']:
        raise PlanError('%s is %s and the requested size is %s: images are never shrunk (the guest\'s data at '
                        'the end would be lost); ask for a size of at least %s' % (
                            path, human_size(facts['virtual_size']), human_size(wanted.size),
                            human_size(facts['virtual_size'])))
    if not drift:
        return ImagePlan('none', reason='the image matches')
    other = {k: v for k, v in drift.items() if k != 'virtual_size'}
    if convert and other:
        return ImagePlan('convert', drift, 'convert=true and the image differs in %s' % ', '.join(sorted(other)))
    if resize == 'grow' and 'virtual_size' in drift and not other:
        return ImagePlan('grow', drift, 'resize=grow')
    hints = []
    if 'virtual_size' in drift:
        hints.append('resize=grow to grow it')
    if other:
        hints.append('convert=true to rewrite it with the requested settings')
    return ImagePlan('drift', drift, 'left alone; set %s' % ' or '.join(hints))


# --- who uses an image, and in which format ---------------------------------------------------

@dataclass(frozen=True)
class ImageUse:
    """A domain reads this file: as its disk (``via`` None), as a backing file of ``via``, or as another
    host file QEMU opens for it (``role``: 'NVRAM', 'kernel'... see HOST_FILES)."""

    domain: str
    running: bool
    declared_format: str            # the disk's <driver type>, or the format its overlay's header records
    via: str | None = None
    role: str | None = None


# Host files a domain uses besides its disks, and the role messages name each by: libvirt hands every
# one to QEMU (firmware, the UEFI variable store and the template it is first copied from, the kernel,
# initrd and device tree of a direct boot, ACPI tables, fw_cfg blobs). Removing or converting one
# breaks the domain as surely as removing its disk, so they count as used as disks do.
HOST_FILES = (
    ('os/loader', 'loader'), ('os/nvram', 'NVRAM'), ('os/kernel', 'kernel'), ('os/initrd', 'initrd'),
    ('os/dtb', 'device tree'), ('os/acpi/table', 'ACPI table'),
)
HOST_FILE_ROLES = frozenset(role for _xpath, role in HOST_FILES) | {'NVRAM template', 'fw_cfg file'}


# libvirt reads a declared <backingStore> chain at most this deep (as _image_chain.MAX_CHAIN).
MAX_DECLARED_CHAIN = 200


def image_disks(root, volume_paths=None):
    """[(path, declared format, device or role, via)] of every local file a domain uses: its disks (disks,
    cdroms, floppies, LUNs; device as in the XML), every level of a ``<backingStore>`` chain a disk
    declares (``via``: the path of the level above it; None for everything else), and the other host
    files QEMU opens for it (``HOST_FILES``; the role in HOST_FILE_ROLES).

    A disk without ``<driver type>`` is read by QEMU as raw (libvirt does not probe formats), and so is
    a declared backing level without ``<format type>``; a loader or NVRAM file is raw unless its
    ``format`` says otherwise (libvirt 9.2+), and the others are raw.

    A declared ``<backingStore>`` counts: libvirt (5.10+) keeps one a user writes in the persistent XML
    and hands it to QEMU as the disk's backing chain, whatever the top image's header says; an empty
    ``<backingStore/>`` ends it. A ``type='volume'`` source that ``volume_paths`` does not resolve (an
    inactive pool, a renamed volume, a libvirt without storage pools) is listed with path None and
    ``via`` saying which volume: the caller cannot know that file, so its users are unknown.
    """
    disks = []
    for disk in root.findall('devices/disk'):
        device = disk.get('device', 'disk')
        via = _add_source(disks, disk, declared_format(disk) or 'raw', device, None, volume_paths)
        level, depth = disk.find('backingStore'), 0
        while level is not None and len(level):
            depth += 1
            if depth > MAX_DECLARED_CHAIN:
                disks.append((None, 'raw', device, 'its declared <backingStore> chain is deeper than %d levels, '
                                                   'where libvirt stops' % MAX_DECLARED_CHAIN))
                break
            fmt_element = level.find('format')
            fmt = (fmt_element.get('type') if fmt_element is not None else None) or 'raw'
            via = _add_source(disks, level, fmt, device, via, volume_paths) or via
            level = level.find('backingStore')
    for xpath, role in HOST_FILES:
        for element in root.findall(xpath):
            path = _host_file(element)
            if path:
                disks.append((path, element.get('format') or 'raw', role, None))
            template = element.get('template') if role == 'NVRAM' else None
            if template:
                disks.append((host_path(template), element.get('templateFormat') or element.get('format') or 'raw',
                              'NVRAM template', None))
    for entry in root.findall("sysinfo[@type='fwcfg']/entry[@file]"):
        disks.append((host_path(entry.get('file')), 'raw', 'fw_cfg file', None))
    return disks


def _add_source(disks, element, fmt, device, via, volume_paths):
    """Adds the local file of a ``<disk>`` or ``<backingStore>`` element to ``disks`` (or, for a volume
    that cannot be resolved, an entry without a path); returns the path, or None."""
    source_type, path, _protocol = disk_source(element, volume_paths)
    if path:
        disks.append((path, fmt, device, via))
        return path
    source = element.find('source')
    if source_type == 'volume' and source is not None:
        disks.append((None, fmt, device, "volume '%s' of pool '%s' cannot be resolved to a file (an inactive pool, a "
                                         "renamed volume, or a libvirt without that pool)"
                                         % (source.get('volume'), source.get('pool'))))
    return None


def volume_keys(root):
    """(pool, volume) of every ``type='volume'`` source of a domain's disks and their declared
    backing chains: what ``image_disks`` needs resolved."""
    keys = []
    for disk in root.findall('devices/disk'):
        for element in [disk] + list(disk.iter('backingStore')):
            source = element.find('source')
            if element.get('type') == 'volume' and source is not None and source.get('pool') and source.get('volume'):
                keys.append((source.get('pool'), source.get('volume')))
    return keys


def _host_file(element):
    """The local path of a loader, NVRAM, kernel... element: its text, or (an NVRAM of libvirt 8.5+)
    its ``<source file|dev>``; None for a network NVRAM or none at all."""
    if element.get('type', 'file') not in ('file', 'block') and element.tag == 'nvram':
        return None
    source = element.find('source')
    if source is not None:
        return host_path(source.get('file') or source.get('dev')) or None
    return host_path((element.text or '').strip()) or None


def _who(uses):
    names = []
    for use in sorted(uses, key=lambda u: (u.domain, u.via or '', u.role or '')):
        if use.via is not None:
            text = '%s (through %s)' % (use.domain, use.via)
        elif use.role is not None:
            text = '%s (as its %s)' % (use.domain, use.role)
        else:
            text = use.domain
        if text not in names:
            names.append(text)
    return ', '.join(names)


def decide_format(path, uses, source_format, found):
    """(format, where it came from) of an existing image: the domains' declaration, else the
    ``source_format`` option, else the file's first bytes (``found``: 'qcow2', another format, or None).

    The bytes are the last resort: a guest can write a qcow2 header into a disk its domain declares
    raw, and that disk must stay raw to everyone.
    """
    declared = sorted({u.declared_format for u in uses or ()})
    if len(declared) > 1:
        raise PlanError('domains disagree on the format of %s: %s; nothing was done' % (path, '; '.join(
            '%s as %s' % (_who([u for u in uses if u.declared_format == fmt]), fmt) for fmt in declared)))
    if declared:
        fmt = declared[0]
        if fmt not in FORMATS:
            raise PlanError('%s is a %s image to domain %s; qcow2_create reads only qcow2 and raw images'
                            % (path, fmt, _who(uses)))
        if source_format not in (None, 'auto') and source_format != fmt:
            raise PlanError('source_format=%s, but domain %s reads %s as %s; nothing was done'
                            % (source_format, _who(uses), path, fmt))
        return fmt, 'domain'
    if source_format not in (None, 'auto'):
        return source_format, 'source_format'
    if found == 'qcow2':
        return 'qcow2', 'header'
    if found is not None:
        raise PlanError('%s looks like a %s image, which qcow2_create does not read; if it is a raw disk whose '
                        'data happens to start that way, set source_format=raw' % (path, found))
    return 'raw', 'header'


def check_disk_image(path, fmt, size):
    """A raw disk is a whole number of 512-byte sectors; anything else (a text file, an empty file) is not a
    disk image and is never converted."""
    if fmt == 'raw' and (size == 0 or size % SECTOR):
        raise PlanError('%s is %d bytes, not a whole number of 512-byte sectors: not a raw disk image, so '
                        'qcow2_create leaves it alone' % (path, size))


def check_users(path, action, uses, fmt, force, unknown=(), vouched=False):
    """Refuses to convert, grow or remove a file a domain uses anywhere in its chains.

    ``uses``: the domains known to use the file (None: libvirt could not be asked); ``unknown``: why
    other users may exist unseen (a chain walk that stopped early or timed out, naming the disk).
    Known running domains always refuse; a conversion that changes the format refuses every domain
    that reads the file as raw (it would read qcow2 metadata as its disk); a removal refuses defined
    domains unless ``force``. When users may be unknown, a removal needs ``force`` and a conversion
    needs ``force`` or ``vouched`` (the admin stated the format with source_format): the format then
    came from the file's own first bytes, which a guest may have written.
    """
    doing = ACTION_DONE[action]
    reasons = (['libvirt cannot be asked'] if uses is None else []) + list(unknown)
    running = [u for u in uses or () if u.running]
    if running:
        raise PlanError('%s is in use by running domain %s, so it is not %s; shut the domain down first'
                        % (path, _who(running), doing), users=sorted({u.domain for u in uses}))
    if action == 'convert':
        readers = [u for u in uses or () if u.declared_format != 'qcow2']
        if readers:
            raise PlanError('%s is read as %s by domain %s: converted to qcow2, it would show the guest qcow2 '
                            'metadata instead of its disk; nothing was done (convert it by hand and change '
                            'the format domains and overlays record, or leave it %s)'
                            % (path, readers[0].declared_format, _who(readers), readers[0].declared_format),
                            users=sorted({u.domain for u in uses}))
    if action == 'remove' and uses and not force:
        raise PlanError('%s is a %s of domain %s; remove it from the domain first, or set force=true'
                        % (path, 'disk' if all(u.role is None for u in uses) else 'file', _who(uses)),
                        users=sorted({u.domain for u in uses}))
    why = '; '.join(reasons)
    if reasons and action == 'remove' and not force:
        raise PlanError('cannot check whether a domain uses %s (%s); set force=true to remove it anyway'
                        % (path, why), unknown_users=reasons)
    if reasons and action == 'convert' and not (force or vouched):
        raise PlanError('cannot check whether a domain reads %s as another format than %s (%s); set source_format '
                        'to the format its users read it as (its own first bytes may be a guest\'s), or force=true, '
                        'to convert it anyway' % (path, fmt, why), unknown_users=reasons)


def planned_facts(before, wanted, action, has_backing):
    """The facts an image will have after ``action`` (what check mode and diffs show)."""
    if action in ('none', 'drift'):
        return before
    if action == 'remove':
        return None
    planned = dict(before or {})
    planned.update({'format': 'qcow2', 'virtual_size': wanted.size or (before or {}).get('virtual_size')})
    if action in ('create', 'convert'):
        planned.update({'compat': wanted.compat, 'lazy_refcounts': wanted.lazy_refcounts,
                        'extended_l2': wanted.extended_l2,
                        'preallocation': effective_preallocation(wanted, has_backing), 'actual_size': None})
        if wanted.cluster_size or action == 'create':
            planned['cluster_size'] = wanted.cluster_size or 65536
        if wanted.backing_file or action == 'create':
            planned['backing_file'] = wanted.backing_file
            planned['backing_format'] = wanted.backing_format
    return planned
