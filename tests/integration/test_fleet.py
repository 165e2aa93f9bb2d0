# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/tune.yml over real SSH on a small fleet: two simulated hypervisors (tests/helpers/fleet_lab.py,
as molecule/fleet and benchmarks/bench_fleet.py build them: a user and a session libvirtd each, modules
under the host's /usr/bin/python3), each with thin images to convert and one to create.

What a fleet run relies on: one module call per host and role (counted on the wire by the
kvmio_fleet_timing callback), one SSH exchange per call (pipelining, from the playbook), small results
(result_detail=summary from the roles), images converted, and a second run that changes nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from helpers.fleet_lab import FleetLab

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
CALLBACKS = os.path.join(REPO, 'tests', 'helpers', 'callback_plugins')
# Its own users, addresses, port and directory: never the molecule fleet's or the benchmark's.
LAB = {'prefix': 'kvmio-test-fleet-hv', 'root': '/var/lib/kvmio-test-fleet', 'subnet': '127.0.3.', 'port': 2242,
       'image_size': '16M'}
HOSTS = [1, 2]
DOMAINS = 2
_RECAP = re.compile(r'^(hv\d+)\s+:\s+(.*)$', re.MULTILINE)


def run_tune(lab, name):
    """One ansible-playbook run of kvmio.tuning.tune over the lab: (rc, output, recap, timing records)."""
    work = os.path.join(lab.root, name)
    os.makedirs(work)
    host_vars = {n: {'images_list': [{'path': p, 'size': LAB['image_size']} for p in lab.images(n, DOMAINS)]
                     + [{'path': os.path.join(lab.home(n), 'images', 'new-data.qcow2'), 'size': '32M'}]}
                 for n in HOSTS}
    inventory = lab.inventory(HOSTS, host_vars, {'images_convert': True, 'cpu_pinning_iothreads': 'auto'})
    with open(os.path.join(work, 'inventory.json'), 'w', encoding='utf-8') as handle:
        json.dump(inventory, handle)
    timing = os.path.join(work, 'timing.jsonl')
    control = os.path.join(lab.control_dir, name)
    os.makedirs(control, mode=0o700)
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''), ANSIBLE_NOCOLOR='1',
               ANSIBLE_COLLECTIONS_PATH=os.environ['KVMIO_TEST_COLLECTIONS'], ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false',
               ANSIBLE_HOST_KEY_CHECKING='False', ANSIBLE_SSH_CONTROL_PATH_DIR=control,
               ANSIBLE_LOCAL_TEMP=os.path.join(work, 'tmp'), ANSIBLE_CALLBACK_PLUGINS=CALLBACKS,
               ANSIBLE_CALLBACKS_ENABLED='kvmio_fleet_timing', KVMIO_FLEET_TIMING=timing)
    for key in ('ANSIBLE_PIPELINING', 'ANSIBLE_STRATEGY', 'ANSIBLE_CONFIG'):
        env.pop(key, None)
    proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', os.path.join(work, 'inventory.json'),
                           'kvmio.tuning.tune'], env=env, cwd=work, capture_output=True, text=True, check=False)
    lab.close_masters(control)
    records = []
    if os.path.exists(timing):
        with open(timing, encoding='utf-8') as handle:
            records = [json.loads(line) for line in handle]
    recap = {host: {k: int(v) for k, v in re.findall(r'(\w+)=(\d+)', text)} for host, text in _RECAP.findall(proc.stdout)}
    return {'rc': proc.returncode, 'output': proc.stdout + proc.stderr, 'recap': recap, 'records': records}


def calls(run, action):
    """How many times ``action`` ran on each host, counted on the SSH connection."""
    counts = {'hv%d' % n: 0 for n in HOSTS}
    for record in run['records']:
        if record['record'] == 'exec' and record['kind'] == 'module' and record.get('action') == action:
            counts[record['host']] += 1
    return counts


def qemu_img(*args):
    return json.loads(subprocess.run(['qemu-img'] + list(args), capture_output=True, text=True, check=True).stdout)


@pytest.fixture(scope='module')
def fleet_runs():
    if os.geteuid() != 0:
        pytest.skip('the fleet lab creates users, an sshd and their libvirt daemons: run as root')
    lab = FleetLab(**LAB)
    try:
        lab.create(len(HOSTS))
        lab.populate(HOSTS, DOMAINS)
        cold = run_tune(lab, 'cold')
        facts = {n: {p: (qemu_img('info', '--output=json', '-U', p), qemu_img('map', '--output=json', '-U', p))
                     for p in lab.images(n, DOMAINS)} for n in HOSTS}
        warm = run_tune(lab, 'warm')
        yield {'lab': lab, 'cold': cold, 'warm': warm, 'facts': facts,
               'backups': {n: sorted(os.listdir(os.path.join(lab.home(n), 'images'))) for n in HOSTS}}
    finally:
        lab.teardown()


def test_tune_converts_and_tunes_every_host_over_ssh_then_changes_nothing(fleet_runs):
    cold, warm = fleet_runs['cold'], fleet_runs['warm']
    assert cold['rc'] == 0, cold['output'][-5000:]
    assert sorted(cold['recap']) == ['hv1', 'hv2'] and all(c['changed'] > 0 for c in cold['recap'].values())
    for number, images in fleet_runs['facts'].items():
        for path, (info, extents) in images.items():
            assert info['format'] == 'qcow2', path
            assert all('offset' in e for e in extents), '%s is still thin: %s' % (path, extents)
        names = fleet_runs['backups'][number]
        assert 'new-data.qcow2' in names
        assert sum(n.endswith('.orig') for n in names) == 2 * DOMAINS, names      # the originals, kept
    assert warm['rc'] == 0, warm['output'][-5000:]
    assert all(c['changed'] == 0 and c['failed'] == 0 for c in warm['recap'].values()), warm['recap']


def test_each_role_makes_one_module_call_per_host_with_one_ssh_exchange_each(fleet_runs):
    for run in (fleet_runs['cold'], fleet_runs['warm']):
        assert calls(run, 'kvmio.tuning.kvm_disk_tune') == {'hv1': 1, 'hv2': 1}
        assert calls(run, 'kvmio.tuning.iothread_pin') == {'hv1': 1, 'hv2': 1}
        # Pipelining (the playbook sets it): no file copied, no mkdir/chmod before a module runs.
        kinds = {r['kind'] for r in run['records'] if r['record'] == 'exec'}
        assert kinds == {'module'}, kinds


def test_fleet_results_are_summaries(fleet_runs):
    tasks = {(r['host'], r['action']): r for r in fleet_runs['cold']['records'] if r['record'] == 'task'}
    for host in ('hv1', 'hv2'):
        # 2 domains: a summary is a few hundred bytes (the full result is about 2 KB per domain).
        assert tasks[(host, 'kvmio.tuning.kvm_disk_tune')]['result_bytes'] < 3000
        assert tasks[(host, 'kvmio.tuning.iothread_pin')]['result_bytes'] < 3000


def test_images_role_makes_one_qcow2_create_call_per_host(fleet_runs):
    for run in (fleet_runs['cold'], fleet_runs['warm']):
        assert calls(run, 'kvmio.tuning.qcow2_create') == {'hv1': 1, 'hv2': 1}
