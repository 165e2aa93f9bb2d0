# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""The in-guest benchmark's decisions: which disk configurations to measure, which of them may run
on this storage, the order of runs, and what the figures say (medians, ratios, the fastest).

Pure. What is valid and what the collection would pick come from ``_disk_policy.decide_disk`` (the
same call ``kvm_disk_tune`` plans with), the default preallocation from ``_image_plan``: this file
holds no rule of its own about cache or io modes.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

from ._disk_policy import GUEST_WRITE_CACHE, MEASURABLE_CACHES, ODIRECT_CACHES, DiskInfo, DiskSettings, decide_disk, effective_settings
from ._fio import WORKLOADS
from ._image_plan import WantedImage
from ._initramfs import DEFAULT_CACHE_DIR, DEFAULT_KERNEL_PACKAGE

BUSES = ('virtio', 'scsi', 'sata', 'ide')
BENCH_CACHES = MEASURABLE_CACHES
BENCH_IOS = ('default', 'native', 'io_uring', 'threads')
PRESETS = ('none', 'quick', 'standard', 'matrix')
BASELINE = 'virt-install'
# Option defaults of kvm_io_bench that differ by mode (the host mode's are in _bench_runner).
GUEST_DEFAULTS = {'time_limit': 1800}

CANDIDATE_SPEC = {
    'name': {'type': 'str'},
    'bus': {'type': 'str', 'choices': list(BUSES), 'default': 'virtio'},
    'cache': {'type': 'str', 'choices': list(BENCH_CACHES), 'default': 'default'},
    'io': {'type': 'str', 'choices': list(BENCH_IOS), 'default': 'default'},
    'iothread': {'type': 'bool', 'default': False},
    'preallocation': {'type': 'str', 'choices': ['off', 'metadata', 'falloc', 'full'], 'default': 'off'},
    'format': {'type': 'str', 'choices': ['qcow2', 'raw'], 'default': 'qcow2'},
}

GUEST_ARGUMENT_SPEC = {
    'domain': {'type': 'str'},
    'disk': {'type': 'str'},
    'alternatives': {'type': 'str', 'choices': list(PRESETS), 'default': 'quick'},
    'references': {'type': 'bool', 'default': True},
    'candidates': {'type': 'list', 'elements': 'dict', 'options': CANDIDATE_SPEC, 'default': []},
    'ios': {'type': 'list', 'elements': 'str', 'choices': list(BENCH_IOS), 'default': ['native', 'io_uring', 'threads']},
    'buses': {'type': 'list', 'elements': 'str', 'choices': list(BUSES), 'default': ['virtio']},
    'iothreads': {'type': 'list', 'elements': 'bool', 'default': [False, True]},
    'runtime': {'type': 'int', 'default': 10},
    'repetitions': {'type': 'int', 'default': 1},
    'accelerator': {'type': 'str', 'choices': ['auto', 'kvm', 'tcg'], 'default': 'auto'},
    'kvm_boot_timeout': {'type': 'int', 'default': 20},
    'vcpus': {'type': 'int', 'default': 2},
    'memory': {'type': 'int', 'default': 1024},
    'kernel': {'type': 'path'},
    'initrd': {'type': 'path'},
    'kernel_package': {'type': 'str', 'default': DEFAULT_KERNEL_PACKAGE},
    'cache_dir': {'type': 'path', 'default': DEFAULT_CACHE_DIR},
    'refresh_guest': {'type': 'bool', 'default': False},
}


@dataclass(frozen=True)
class Candidate:
    """One disk configuration. cache/io None: the attribute is not written (QEMU's default)."""

    name: str
    origin: str                   # baseline | collection | domain | alternative | user
    bus: str = 'virtio'
    cache: str | None = None
    io: str | None = None
    iothread: bool = False
    preallocation: str = 'off'
    image_format: str = 'qcow2'
    note: str = ''

    @property
    def key(self):
        return (self.bus, self.cache, self.io, self.iothread, self.preallocation, self.image_format)

    def effective(self, host=None):
        """What QEMU runs for this configuration (``_disk_policy.effective_settings``: no cache attribute
        is writeback on QEMU >= 1.2, no io attribute is threads) and what the guest sees of its write cache."""
        return effective_settings(DiskInfo(target='vda', bus=self.bus), {'cache': self.cache, 'io': self.io}, host)

    @property
    def effective_cache(self):
        return self.effective()['cache']

    @property
    def effective_io(self):
        return self.effective()['io']

    @property
    def guest_write_cache(self):
        """What /sys/block/*/queue/write_cache says in the guest."""
        return 'write back' if GUEST_WRITE_CACHE.get(self.effective_cache) else 'write through'

    def describe(self):
        return {'name': self.name, 'origin': self.origin, 'bus': self.bus, 'cache': self.cache or 'default',
                'io': self.io or 'default', 'effective_cache': self.effective_cache, 'effective_io': self.effective_io,
                'iothread': self.iothread, 'preallocation': self.preallocation, 'format': self.image_format,
                'guest_write_cache': self.guest_write_cache, 'note': self.note}


def _none_if_default(value):
    return None if value in (None, 'default') else value


def baseline():
    """A disk as virt-install makes it: thin qcow2 on virtio-blk, no cache or io attribute, no iothread."""
    return Candidate(BASELINE, 'baseline')


def collection_candidates(storage, host, path):
    """What this collection's defaults give a new disk on ``storage``: kvm_disk_tune (cache=auto,
    io=auto) as ``decide_disk`` plans it, qcow2_create's default preallocation, without and with the
    iothread that iothread_pin adds. Returns (candidates, warnings)."""
    decision = decide_disk(DiskInfo(target='vda', bus='virtio', path=path, image_format='qcow2'), DiskSettings(),
                           storage, host)
    cache, io = decision.final.get('cache'), decision.final.get('io')
    prealloc = WantedImage(size=None).preallocation
    why = '; '.join('%s: %s' % item for item in sorted(decision.reasons.items()))
    plan = Candidate('collection', 'collection', cache=cache, io=io, preallocation=prealloc, note=why)
    return [plan, replace(plan, name='collection+iothread', iothread=True)], list(decision.warnings + decision.errors)


def domain_candidate(info):
    """The disk ``info`` (a DiskInfo read from a domain) as it is configured, on a fresh thin image."""
    bus = info.bus if info.bus in BUSES else None
    image_format = info.image_format if info.image_format in ('qcow2', 'raw') else 'qcow2'
    note = 'fresh thin %s image on the benchmark path (the domain image itself is never touched)' % image_format
    if info.image_format not in (None, 'qcow2', 'raw'):
        note += "; format '%s' measured as qcow2" % info.image_format
    if not bus:
        note += "; bus '%s' measured as virtio" % info.bus
    return Candidate('domain:%s' % info.target, 'domain', bus=bus or 'virtio', cache=info.current.get('cache'),
                     io=info.current.get('io'), iothread=bool(info.iothread) and bus in ('virtio', 'scsi'),
                     image_format=image_format if info.image_format else 'raw', note=note)


def preset_candidates(preset, plan):
    """The alternatives of a preset around the baseline and the collection's ``plan`` (a Candidate)."""
    base = baseline()
    quick = [
        replace(base, name='writethrough', origin='alternative', cache='writethrough'),
        replace(base, name='sata', origin='alternative', bus='sata'),
        replace(base, name='metadata', origin='alternative', preallocation='metadata'),
    ]
    if preset == 'quick':
        return quick
    if preset == 'standard':
        return quick + [
            replace(base, name='metadata+iothread', origin='alternative', preallocation='metadata', iothread=True),
            replace(plan, name='scsi', origin='alternative', bus='scsi', note=''),
            replace(plan, name='scsi+iothread', origin='alternative', bus='scsi', iothread=True, note=''),
            replace(plan, name='directsync+iothread', origin='alternative', cache='directsync', io='native',
                    iothread=True, note=''),
        ]
    return []


def matrix_candidates(caches, ios, buses, iothreads, preallocations):
    """Every combination of the given values (invalid ones are weeded out by ``check_candidate``)."""
    found = []
    for cache, io, bus, iothread, prealloc in itertools.product(caches, ios, buses, iothreads, preallocations):
        name = '%s/%s/%s/%s/%s' % (bus, cache, io, 'iothread' if iothread else 'no-iothread', prealloc)
        found.append(Candidate(name, 'alternative', bus=bus, cache=_none_if_default(cache), io=_none_if_default(io),
                               iothread=iothread, preallocation=prealloc))
    return found


def user_candidate(index, entry):
    return Candidate(entry.get('name') or 'candidate%d' % (index + 1), 'user', bus=entry.get('bus') or 'virtio',
                     cache=_none_if_default(entry.get('cache')), io=_none_if_default(entry.get('io')),
                     iothread=bool(entry.get('iothread')), preallocation=entry.get('preallocation') or 'off',
                     image_format=entry.get('format') or 'qcow2')


def dedupe(candidates):
    """Drops repeated configurations (keeps the first name); returns (unique, notes)."""
    seen, unique, notes = {}, [], []
    for candidate in candidates:
        if candidate.key in seen:
            notes.append('%s: same configuration as %s, measured once' % (candidate.name, seen[candidate.key]))
            continue
        if any(c.name == candidate.name for c in unique):
            candidate = replace(candidate, name='%s#%d' % (candidate.name, len(unique) + 1))
        seen[candidate.key] = candidate.name
        unique.append(candidate)
    return unique, notes


def check_candidate(candidate, storage, host, guest_buses, path):
    """Why ``candidate`` cannot run here ('' when it can). Cache and io validity is decide_disk's
    verdict for that configuration on this storage (O_DIRECT, io=native, io_uring support)."""
    if candidate.bus not in guest_buses:
        return 'the guest kernel has no %s driver (guest buses: %s)' % (candidate.bus, ', '.join(guest_buses))
    if candidate.iothread and candidate.bus not in ('virtio', 'scsi'):
        return 'iothreads serve virtio-blk and virtio-scsi only, not %s' % candidate.bus
    if candidate.iothread and candidate.bus == 'scsi' and not host.has('scsi_iothread'):
        return host.why_not('scsi_iothread')
    if candidate.image_format == 'raw' and candidate.preallocation not in ('off', 'falloc', 'full'):
        return 'preallocation=%s is a qcow2 option' % candidate.preallocation
    info = DiskInfo(target='vda', bus=candidate.bus, path=path, image_format=candidate.image_format)
    decision = decide_disk(info, DiskSettings(cache=candidate.cache, io=candidate.io), storage, host)
    if decision.errors:
        # decide_disk names the disk by its target and path; here the configuration is what matters.
        return '; '.join(e.replace(info.label + ': ', '') for e in decision.errors)
    return ''


def needs_odirect(candidate):
    return candidate.effective_cache in ODIRECT_CACHES or candidate.io == 'native'


def run_order(candidates, repetitions):
    """(repetition, candidate) pairs interleaved: A B C A B C, never A A A B B B, so a slow spell of a
    shared host spreads over every configuration instead of sinking one."""
    return [(rep, c) for rep in range(repetitions) for c in candidates]


# --- figures ------------------------------------------------------------------------------------

def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2.0


def summarise(candidates, runs, workloads):
    """{candidate name: {workload: summary}} from ``runs`` ([{candidate, figures: {workload: dict|str}}]).
    A summary has the workload's metric, its median, min, max and every value, and the p99 latency median."""
    table = {}
    for candidate in candidates:
        table[candidate.name] = {}
        for workload in workloads:
            metric = WORKLOADS[workload].metric
            measured = [r['figures'][workload] for r in runs
                        if r['candidate'] == candidate.name and isinstance(r['figures'].get(workload), dict)]
            if not measured:
                continue
            values = [m[metric] for m in measured]
            p99 = [m['p99_us'] for m in measured if m.get('p99_us') is not None]
            table[candidate.name][workload] = {
                'metric': metric, 'median': round(median(values), 2), 'min': min(values), 'max': max(values),
                'values': values, 'runs': len(values), 'p99_us': round(median(p99), 1) if p99 else None,
                'spread': round((max(values) - min(values)) / median(values), 3) if median(values) else None}
    return table


def _ratio(value, reference):
    return round(value / reference, 3) if reference else None


def compare(candidates, table, workloads, baseline_name=BASELINE):
    """Ratios to the baseline, the fastest configuration per workload, and the one with the best
    geometric mean over all workloads. Every measured configuration is safe: ``check_candidate``
    kept the ones decide_disk refuses from running."""
    for name, rows in table.items():
        for workload, row in rows.items():
            reference = table.get(baseline_name, {}).get(workload)
            row['ratio'] = _ratio(row['median'], reference['median']) if reference else None
    fastest = {}
    for workload in workloads:
        rows = [(name, rows[workload]) for name, rows in table.items() if workload in rows]
        if rows:
            name, row = max(rows, key=lambda item: item[1]['median'])
            fastest[workload] = {'name': name, 'metric': row['metric'], 'median': row['median'], 'ratio': row['ratio']}
    overall = []
    for candidate in candidates:
        rows = table.get(candidate.name, {})
        ratios = [rows[w]['median'] / fastest[w]['median'] for w in workloads
                  if w in rows and w in fastest and fastest[w]['median'] and rows[w]['median'] > 0]
        if ratios and len(ratios) == len(fastest):
            overall.append((math.exp(sum(math.log(r) for r in ratios) / len(ratios)), candidate))
    best = None
    if overall:
        score, candidate = max(overall, key=lambda item: item[0])
        best = dict(candidate.describe(), score=round(score, 3),
                    ratio={w: table[candidate.name][w]['ratio'] for w in workloads if w in table[candidate.name]})
    return fastest, best


def verdict(table, fastest, names, workloads, baseline_name=BASELINE, noise=0.05):
    """For each name (the collection's candidates): per workload its ratio to the baseline and to the
    fastest, whether it loses to the baseline beyond noise (``noise``, or the wider spread of the two
    configurations' repetitions) and whether it is within 10% of the fastest."""
    out = {}
    for name in names:
        rows = table.get(name)
        if not rows:
            continue
        out[name] = {}
        for workload in workloads:
            if workload not in rows or workload not in fastest:
                continue
            row = rows[workload]
            reference = table.get(baseline_name, {}).get(workload) or {}
            band = max(noise, row['spread'] or 0, reference.get('spread') or 0)
            to_fastest = _ratio(row['median'], fastest[workload]['median'])
            out[name][workload] = {
                'ratio_to_baseline': row['ratio'], 'ratio_to_fastest': to_fastest, 'noise': round(band, 3),
                'slower_than_baseline': row['ratio'] is not None and row['ratio'] < 1 - band,
                'within_10_percent_of_fastest': to_fastest is not None and to_fastest >= 0.9}
    return out
