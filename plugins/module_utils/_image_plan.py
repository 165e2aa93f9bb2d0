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

from ._errors import PlanError
from ._support import FEATURES, HostSupport, fmt_version

PREALLOCATION_CHOICES = ('off', 'metadata', 'falloc', 'full')
# How much of the image is allocated up front, as qemu-img map shows it. falloc and full look alike
# in a map (every cluster has a host offset and reads as data), so both count as 'falloc'.
_PREALLOC_RANK = {'off': 0, 'metadata': 1, 'falloc': 2, 'full': 2}
_UNITS = {'': 1, 'B': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40, 'P': 1 << 50, 'E': 1 << 60}
_SIZE_RE = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*([KMGTPE]?)(?:i?B)?\s*$', re.IGNORECASE)


def parse_size(value, what='size'):
    """'10G', '512M', '64K', '1.5T' or a number of bytes -> bytes (binary units, as qemu-img)."""
    if isinstance(value, int):
        number, unit = value, ''
    else:
        match = _SIZE_RE.match(str(value))
        if not match:
            raise PlanError("%s '%s' is not a size: use a number of bytes or a number with K, M, G or T "
                            "(for example 10G)" % (what, value))
        number, unit = match.group(1), match.group(2).upper()
    size = int(float(number) * _UNITS[unit])
    if size <= 0:
        raise PlanError('%s must be larger than 0, not %s' % (what, value))
    return size


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
    if wanted.backing_file and wanted.preallocation != 'off' and not wanted.extended_l2:
        errors.append('preallocation=%s with a backing file needs extended_l2=true (QEMU refuses it otherwise); '
                      'or use preallocation=off' % wanted.preallocation)
    if errors:
        raise PlanError('; '.join(errors))


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
    if _PREALLOC_RANK[facts['preallocation'] or 'off'] < _PREALLOC_RANK[wanted.preallocation]:
        drift['preallocation'] = (facts['preallocation'], wanted.preallocation)
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
