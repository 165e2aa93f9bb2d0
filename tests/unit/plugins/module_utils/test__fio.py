# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""fio jobs for the benchmark guest and reading its console (a console recorded from a real guest run)."""

from __future__ import annotations

import base64
import gzip
import json
import os

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._fio import (MAX_JOB_JSON, WORKLOADS, encode_jobs,
                                                                        job_figures, job_lines, parse_console,
                                                                        regions)

FIXTURE = os.path.join(os.path.dirname(__file__), 'fixtures', 'guest_console.txt')


def recorded_console():
    with open(FIXTURE, encoding='utf-8') as handle:
        return handle.read()


def test_regions_do_not_overlap_and_jobs_name_them():
    names = ['randwrite', 'syncwrite', 'randread', 'seqwrite']
    assert regions(names, 64 << 20) == {'randwrite': (0, 64 << 20), 'syncwrite': (64 << 20, 64 << 20),
                                        'randread': (128 << 20, 64 << 20), 'seqwrite': (192 << 20, 64 << 20)}
    text = job_lines(names, 64 << 20, 10)
    lines = text.splitlines()
    assert [line.split('\t')[0] for line in lines] == names
    assert '--rw=randwrite --bs=4k --iodepth=16 --ioengine=libaio --direct=1 --offset=0 --size=67108864' in lines[0]
    assert '--fsync=1' in lines[1] and '--ioengine=psync' in lines[1] and '--iodepth=1' in lines[1]
    assert '--bs=1M' in lines[3] and '--runtime=10' in lines[3]
    # The guest reads the jobs from the kernel command line: base64 has no spaces, and 4 jobs fit easily
    # in x86's 2048-byte command line.
    encoded = encode_jobs(text)
    assert ' ' not in encoded and len(encoded) < 1200
    assert base64.b64decode(encoded).decode() == text


@pytest.mark.parametrize('newline', ['\n', '\r\n'])
def test_recorded_console_parses_into_four_jobs(newline):
    # A serial console ends its lines with CRLF; the file is stored with LF.
    report = parse_console(recorded_console().replace('\n', newline))
    assert report.done and not report.errors
    assert report.booted_at > 0 and report.fio_at >= report.booted_at
    assert report.disk['name'] == 'vda' and report.disk['write_cache'] == 'write_back'
    assert 'virtio' in report.disk['path']
    assert report.started == ['randwrite', 'syncwrite', 'randread', 'seqwrite']
    for workload in report.started:
        figures = job_figures(workload, report.jobs[workload])
        assert isinstance(figures, dict), figures
        assert figures['iops'] > 0 and figures['mb_per_s'] > 0 and figures['p99_us'] > 0 and figures['ios'] > 0
    assert job_figures('syncwrite', report.jobs['syncwrite'])['sync_p99_us'] > 0
    assert report.jobs['randread']['jobs'][0]['read']['iops'] > 0


def _console(job_json, name='randwrite', tail='KVMIO-DONE\n'):
    packed = base64.encodebytes(gzip.compress(job_json)).decode()
    return 'KVMIO-BOOTED 1.5\nKVMIO-BEGIN %s\n%sKVMIO-END %s\n%s' % (name, packed, name, tail)


def test_guest_output_is_untrusted_each_problem_is_an_error_string_not_an_exception():
    # Cut short: the guest died in the middle of a job.
    report = parse_console('KVMIO-BOOTED 1\nKVMIO-BEGIN randwrite\nH4sIAAAA\n')
    assert report.jobs['randwrite'] == 'the guest stopped before fio finished' and not report.done
    # Corrupted base64 / gzip.
    assert parse_console('KVMIO-BEGIN randwrite\n!!!!\nKVMIO-END randwrite\n').jobs['randwrite'].startswith(
        'fio output unreadable')
    # A decompression bomb stops at the cap.
    bomb = _console(b'{"jobs": [' + b' ' * (MAX_JOB_JSON + 10) + b']}')
    assert 'larger than' in parse_console(bomb).jobs['randwrite']
    # Numbers that are not numbers, a failed job, a missing section.
    for doc, expected in (({'jobs': [{'write': {'iops': 'NaN', 'bw_bytes': 1, 'total_ios': 1, 'runtime': 1}}]},
                           'not numbers'),
                          ({'jobs': [{'error': 5, 'write': {}}]}, 'error 5'),
                          ({'jobs': []}, 'no job'),
                          ({'jobs': [{'read': {}}]}, 'no write figures')):
        report = parse_console(_console(json.dumps(doc).encode()))
        assert expected in job_figures('randwrite', report.jobs['randwrite'])
    # Unknown workloads and stray markers are ignored; kernel lines do not break a job.
    text = _console(json.dumps({'jobs': [{'write': {'iops': 10.0, 'bw_bytes': 40960, 'total_ios': 10,
                                                    'runtime': 1000}}]}).encode())
    text = text.replace('KVMIO-BEGIN randwrite\n', 'KVMIO-BEGIN rm -rf\nKVMIO-BEGIN randwrite\n[  1.0] ata1: link down\n')
    report = parse_console(text)
    assert report.started == ['randwrite'] and job_figures('randwrite', report.jobs['randwrite'])['iops'] == 10.0


def test_every_workload_has_a_metric_faster_means_more_of():
    assert {w.metric for w in WORKLOADS.values()} == {'iops', 'mb_per_s'}
    assert [w.name for w in WORKLOADS.values() if w.prefill] == ['randread']
