# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet report from facts recorded on three hosts, rendered by a real headless Chromium, and the
audit playbook writing it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

# The pure report functions the fleet_report filter wraps: importing the filter plugin would pull in
# ansible's controller display, which then takes the warnings of every module run in this process.
# The filter itself runs in test_audit_playbook_writes_the_three_reports, through ansible-playbook.
from ansible_collections.kvmio.tuning.plugins.module_utils._report import build_report, to_html, to_markdown
from ansible_collections.kvmio.tuning.plugins.modules import kvm_disk_tune, kvm_io_bench, kvm_io_info
from helpers import domain_xml as dx
from helpers.modules import run_module
from helpers.playbook import run_playbook, stats

URI = 'qemu:///system'
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')


def chromium(*args):
    if not CHROMIUM:
        pytest.fail('chromium is missing: tools/install-deps installs it (bindep profile test)')
    base = [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
            '--disable-background-networking', '--disable-component-update', '--disable-sync']
    return subprocess.run(base + list(args), capture_output=True, text=True, timeout=120, check=False)


def record_three_hosts(factory, backup_dir):
    """kvm_io_info results of three 'hosts' (three domain groups on this libvirtd), before and after tuning."""
    prefix = factory.name('rep')
    for host, count in (('h1', 2), ('h2', 1), ('h3', 3)):
        for index in range(count):
            name = '%s-%s-%d' % (prefix, host, index)
            bus = 'ide' if host == 'h3' and index == 0 else 'virtio'
            factory.define(dx.domain(name, [dx.disk(factory.image(name + '.qcow2'), 'hda' if bus == 'ide' else 'vda',
                                                    bus)]))

    def facts():
        return {host: run_module(kvm_io_info, {'uri': URI, 'domains': ['%s-%s-*' % (prefix, host)]})
                for host in ('h1', 'h2', 'h3')}
    before = facts()
    run_module(kvm_disk_tune, {'uri': URI, 'domains': [prefix + '-h1-*'], 'discard': 'unmap',
                               'backup_dir': backup_dir})
    return before, facts()


def test_report_from_three_hosts_in_a_real_browser(system_domains, tmp_path, backup_dir):
    before_facts, after_facts = record_three_hosts(system_domains, backup_dir)
    (tmp_path / 'recorded-facts.json').write_text(json.dumps({'before': before_facts, 'after': after_facts}))
    before = build_report(before_facts)
    bench = {'h1': run_module(kvm_io_bench, {'path': str(tmp_path), 'count': 100, 'size': '16M',
                                             'workloads': ['write']})}
    report = build_report(after_facts, before=before, bench=bench)
    assert report['hosts']['h1']['coverage'] == {'covered': 2, 'disks': 2}
    assert report['hosts']['h1']['coverage_before'] == {'covered': 0, 'disks': 2}
    assert report['hosts']['h3']['summary']['medium'] >= 1         # the IDE disk and thin images
    markdown = to_markdown(report)
    assert '| h1 | 2 | 2/2 (before: 0/2) |' in markdown and '## Benchmark on h1' in markdown
    html = tmp_path / 'report.html'
    html.write_text(to_html(report))
    dom = chromium('--dump-dom', html.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'KVM disk I/O fleet report' in dom.stdout
    # Findings per host and severity, coverage before/now, and a write bar per cache mode (baseline included)
    # and preallocation.
    assert dom.stdout.count('class="bar"') == 3 * 4 + 3 * 2 + 5 * 2, 'findings, coverage before/now, benchmark bars'
    for host in ('h1', 'h2', 'h3'):
        assert '%s now' % host in dom.stdout
    shot = tmp_path / 'report.png'
    taken = chromium('--screenshot=%s' % shot, '--window-size=1200,1500', html.as_uri())
    assert taken.returncode == 0 and shot.exists() and shot.stat().st_size > 20000, taken.stderr[-2000:]
    keep = os.environ.get('KVMIO_SCREENSHOT_DIR')
    if keep:
        shutil.copy(shot, os.path.join(keep, 'fleet-report.png'))


def test_audit_playbook_writes_the_three_reports(system_domains, tmp_path):
    name = system_domains.name('auditpb')
    system_domains.define(dx.domain(name, [dx.disk(system_domains.image(name + '.qcow2'), 'vda', 'virtio')]))
    out = tmp_path / 'report'
    result = run_playbook('audit.yml', tmp_path, {'audit_domains': [name], 'kvmio_report_dir': str(out)})
    assert result['rc'] == 0, result['stdout'][-3000:]
    assert stats(result)['failed'] == 0
    data = json.loads((out / 'report.json').read_text())
    assert data['hosts']['localhost']['domains'] == 1
    assert re.search(r'\| localhost \| 1 \| 0/1 \|', (out / 'report.md').read_text())
    assert (out / 'report.html').read_text().startswith('<!DOCTYPE html>')


def test_bench_playbook_writes_a_report_with_benchmark_bars(system_domains, tmp_path):
    name = system_domains.name('benchpb')
    system_domains.define(dx.domain(name, [dx.disk(system_domains.image(name + '.qcow2'), 'vda', 'virtio')]))
    out = tmp_path / 'report'
    scratch = tmp_path / 'pool'
    scratch.mkdir()
    result = run_playbook('bench.yml', tmp_path, {'audit_domains': [name], 'kvmio_report_dir': str(out),
                                                  'kvmio_bench_path': str(scratch), 'kvmio_bench_count': 100})
    assert result['rc'] == 0, result['stdout'][-3000:]
    data = json.loads((out / 'bench.json').read_text())
    assert data['hosts']['localhost']['bench']['recommendation']['cache'] in ('writeback', 'none', 'directsync')
    assert '## Benchmark on localhost' in (out / 'bench.md').read_text()
    assert (out / 'bench.html').read_text().count('class="bar"') >= 8
    assert os.listdir(scratch) == []


@pytest.fixture
def sticky_dir():
    """A directory every local user may write, like /tmp (world-writable, sticky)."""
    import tempfile
    path = tempfile.mkdtemp(prefix='kvmio-l7-', dir='/var/tmp')
    os.chmod(path, 0o1777)
    yield path
    subprocess.run(['rm', '-rf', path], check=False)


def test_a_report_directory_another_user_made_first_is_refused(system_domains, tmp_path, sticky_dir):
    # Issue 14, second review (L7): the report went to /tmp/kvm-io-report by default, created 0755 or used as
    # found: a local user who made it first (here, with a link named like a report) owned the reports.
    name = system_domains.name('auditl7')
    system_domains.define(dx.domain(name, [dx.disk(system_domains.image(name + '.qcow2'), 'vda', 'virtio')]))
    taken = os.path.join(sticky_dir, 'kvm-io-report')
    subprocess.run(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'sh', '-c',
                    'mkdir -m 0777 "$1" && ln -s /nonexistent/elsewhere "$1/report.json"', 'sh', taken], check=True)
    result = run_playbook('audit.yml', tmp_path, {'audit_domains': [name], 'kvmio_report_dir': taken})
    assert result['rc'] != 0 and 'is not safe to write to' in result['stdout'], result['stdout'][-3000:]
    assert os.listdir(taken) == ['report.json'] and os.stat(taken).st_mode & 0o777 == 0o777
    # A fresh directory is made for the running user alone.
    fresh = os.path.join(sticky_dir, 'mine')
    result = run_playbook('audit.yml', tmp_path, {'audit_domains': [name], 'kvmio_report_dir': fresh})
    assert result['rc'] == 0, result['stdout'][-3000:]
    assert os.stat(fresh).st_uid == os.geteuid() and os.stat(fresh).st_mode & 0o7777 == 0o700
    assert sorted(os.listdir(fresh)) == ['report.html', 'report.json', 'report.md']
