# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""fio in the benchmark guest: the workloads, the job lines the guest runs, and reading what the guest
printed on its serial console (markers, fio's JSON gzip'd and base64'd).

Pure: text in, dicts out. Everything read from the console was written by a guest: sizes are capped,
numbers are checked, and anything malformed is an error for that job, never an exception.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import zlib
from dataclasses import dataclass

MAX_JOB_JSON = 4 << 20          # decompressed fio JSON of one job
MARKER = 'KVMIO-'


@dataclass(frozen=True)
class Workload:
    name: str
    label: str
    rw: str
    block_size: str
    iodepth: int
    engine: str
    metric: str                  # 'iops' or 'mb_per_s': what "faster" means for this workload
    fsync: int = 0
    prefill: bool = False        # reads need data written before the guest starts


WORKLOADS = {
    'randwrite': Workload('randwrite', '4K random write, queue depth 16', 'randwrite', '4k', 16, 'libaio', 'iops'),
    'syncwrite': Workload('syncwrite', '4K write + fsync, queue depth 1', 'write', '4k', 1, 'psync', 'iops', fsync=1),
    'randread': Workload('randread', '4K random read, queue depth 16', 'randread', '4k', 16, 'libaio', 'iops',
                         prefill=True),
    'seqwrite': Workload('seqwrite', '1M sequential write, queue depth 4', 'write', '1M', 4, 'libaio', 'mb_per_s'),
}
DEFAULT_WORKLOADS = ('randwrite', 'syncwrite', 'randread', 'seqwrite')


def regions(workloads, region_size):
    """{workload: (offset, size)}: each workload gets a region of the scratch disk no other touches."""
    return {name: (index * region_size, region_size) for index, name in enumerate(workloads)}


def job_lines(workloads, region_size, runtime):
    """The jobs file the guest runs, one 'name<TAB>fio options' line per workload (the guest adds
    --name, --filename and --output-format=json). Direct I/O, so the guest's page cache is out of it."""
    lines = []
    for name, (offset, size) in regions(workloads, region_size).items():
        w = WORKLOADS[name]
        options = ['--rw=%s' % w.rw, '--bs=%s' % w.block_size, '--iodepth=%d' % w.iodepth, '--ioengine=%s' % w.engine,
                   '--direct=1', '--offset=%d' % offset, '--size=%d' % size, '--time_based=1',
                   '--runtime=%d' % runtime, '--randrepeat=0']
        if w.fsync:
            options.append('--fsync=%d' % w.fsync)
        lines.append('%s\t%s\n' % (name, ' '.join(options)))
    return ''.join(lines)


def encode_jobs(text):
    return base64.b64encode(text.encode('ascii')).decode('ascii')


# --- reading the console --------------------------------------------------------------------------

@dataclass
class ConsoleReport:
    booted_at: float | None = None        # guest uptime when /init started (seconds)
    fio_at: float | None = None           # guest uptime when the first fio job started
    disk: dict | None = None              # name, write_cache, path, size (sectors)
    jobs: dict = None                     # workload -> fio JSON (dict) or error text (str)
    started: list = None                  # workloads whose BEGIN marker was seen
    done: bool = False
    errors: list = None
    notes: list = None                    # module load failures, fio's stderr

    def __post_init__(self):
        self.jobs = {} if self.jobs is None else self.jobs
        self.started = [] if self.started is None else self.started
        self.errors = [] if self.errors is None else self.errors
        self.notes = [] if self.notes is None else self.notes


def _float(text):
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _decode_job(chunks):
    try:
        packed = base64.b64decode(''.join(chunks), validate=True)
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)       # gzip framing
        text = inflater.decompress(packed, MAX_JOB_JSON)
        if inflater.unconsumed_tail:
            return 'fio output larger than %d bytes' % MAX_JOB_JSON
        data = text.decode('utf-8', errors='replace')
        return json.loads(data[data.index('{'):])
    except (binascii.Error, zlib.error, ValueError) as err:
        return 'fio output unreadable: %s' % err


def parse_console(text):
    """What the guest reported, from the whole console text (kernel lines are ignored)."""
    report = ConsoleReport()
    current, chunks = None, []
    for raw in text.splitlines():
        line = raw.strip()
        if current is not None:
            if line == 'KVMIO-END %s' % current:
                report.jobs[current] = _decode_job(chunks)
                current, chunks = None, []
            elif line and not line.startswith(('[', MARKER)):
                chunks.append(line)
            continue
        if not line.startswith(MARKER):
            continue
        word, _sep, rest = line.partition(' ')
        if word == 'KVMIO-BOOTED':
            report.booted_at = _float(rest)
        elif word == 'KVMIO-FIO':
            report.fio_at = _float(rest)
        elif word == 'KVMIO-DISK':
            report.disk = dict(item.partition('=')[::2] for item in rest.split() if '=' in item)
        elif word == 'KVMIO-BEGIN' and rest in WORKLOADS:
            current, chunks = rest, []
            report.started.append(rest)
        elif word == 'KVMIO-DONE':
            report.done = True
        elif word == 'KVMIO-ERROR':
            report.errors.append(rest[:300])
        elif word in ('KVMIO-MODULE-FAILED', 'KVMIO-STDERR'):
            report.notes.append(('%s %s' % (word[6:].lower(), rest))[:300])
    if current is not None:
        report.jobs[current] = 'the guest stopped before fio finished'
    return report


def _percentile(section, key='clat_ns'):
    percentiles = (section.get(key) or {}).get('percentile') or {}
    for name in ('99.000000', '99.00'):
        value = percentiles.get(name)
        if isinstance(value, (int, float)) and value >= 0:
            return round(value / 1000.0, 1)
    return None


def job_figures(workload, fio):
    """{iops, mb_per_s, p99_us[, sync_p99_us], seconds, ios} of one job's fio JSON, or an error string."""
    if not isinstance(fio, dict):
        return fio
    jobs = fio.get('jobs')
    if not isinstance(jobs, list) or not jobs or not isinstance(jobs[0], dict):
        return 'fio printed no job'
    job = jobs[0]
    if job.get('error'):
        return 'fio job failed with error %s' % job.get('error')
    direction = 'read' if 'read' in WORKLOADS[workload].rw else 'write'
    section = job.get(direction)
    if not isinstance(section, dict):
        return 'fio printed no %s figures' % direction
    iops, bw, ios, runtime = (section.get(k) for k in ('iops', 'bw_bytes', 'total_ios', 'runtime'))
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in (iops, bw, ios, runtime)):
        return 'fio figures are not numbers'
    figures = {'iops': round(iops, 1), 'mb_per_s': round(bw / 1e6, 2), 'p99_us': _percentile(section),
               'seconds': round(runtime / 1000.0, 2), 'ios': int(ios)}
    if WORKLOADS[workload].fsync:
        figures['sync_p99_us'] = _percentile(job.get('sync') or {}, 'lat_ns')
    return figures
