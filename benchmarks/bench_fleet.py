#!/usr/bin/env python3
# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How long `playbooks/tune.yml` takes over a fleet: N hypervisors of D domains, cold and warm, over SSH.

Builds N simulated hypervisors as molecule/fleet does (tests/helpers/fleet_lab.py: one user, one session libvirtd
and virtlogd each, reached over real SSH at 127.0.2.1..N through one sshd of the lab's own on port
2232; users kvmio-bench-hv1..N, everything under /var/lib/kvmio-bench-fleet), gives each D domains of
two thin qcow2 images, and runs `ansible-playbook kvmio.tuning.tune` (this checkout, not an installed
copy) over them with the modules under each host's /usr/bin/python3 (Debian's python3-libvirt and
python3-lxml):

- images: every image listed (images_list), thin ones converted to preallocation=metadata
  (images_convert: true);
- disk policy `auto` with discard (cache=none/io=native where O_DIRECT works);
- iothreads `auto` and vCPU, emulator and iothread pins `auto` (pinning_mode shared: all fit).

cold = the first run (every image converted, every domain redefined twice); warm = the same run again
(changes nothing). Each run starts without SSH connections (a fresh ControlPath directory, closed
after), as an AWX job does. tests/helpers/callback_plugins/kvmio_fleet_timing.py splits each host's
time into connection, transfer, run and controller (see its docstring for how).

Usage (as root, after `make test` or at least `make collection services`):

    .venv/bin/python benchmarks/bench_fleet.py                        # N in 1 4 10, D in 10 100
    .venv/bin/python benchmarks/bench_fleet.py --hosts 1 4 --domains 10 --warm-runs 2
    .venv/bin/python benchmarks/bench_fleet.py --hosts 4 --domains 100 --variant no-pipelining \
        --extra-vars '{"kvmio_tune_pipelining": false}' --phases warm

Prints a table, writes benchmarks/results/fleet[-VARIANT].json, and removes everything it created
(users, daemons, sshd, files) unless --keep. Not a test: nothing is asserted, but a warm run that
changes something or a failed run is reported as such.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BIN = os.path.dirname(sys.executable)
# The lab and the timing callback are shared with the fleet integration test.
HELPERS = os.path.join(REPO, 'tests', 'helpers')
sys.path.insert(0, os.path.dirname(HELPERS))

from helpers.fleet_lab import FleetLab  # noqa: E402  pylint: disable=wrong-import-position

POLICY = {
    'disk_policy_name': 'auto',
    'disk_policy_discard': True,
    'cpu_pinning_iothreads': 'auto',
    'cpu_pinning_vcpu_pinning': 'auto',
    'cpu_pinning_emulator_pinning': 'auto',
    'cpu_pinning_iothread_pinning': 'auto',
    'cpu_pinning_pinning_mode': 'shared',
    # The same under the names of commits before 15-conventions, for --collection of an older checkout.
    'cpu_pinning_vcpus': 'auto',
    'cpu_pinning_emulator': 'auto',
    'cpu_pinning_iothread_pins': 'auto',
    'cpu_pinning_mode': 'shared',
    'images_convert': True,
}
_RECAP = re.compile(r'^(hv\d+)\s+:\s+(.*)$', re.MULTILINE)


def collection_root(source):
    """ANSIBLE_COLLECTIONS_PATH holding ``source`` as kvmio.tuning (a link: that working tree is measured)."""
    root = tempfile.mkdtemp(prefix='kvmio-bench-fleet-collections-')
    os.makedirs(os.path.join(root, 'ansible_collections', 'kvmio'))
    os.symlink(os.path.abspath(source), os.path.join(root, 'ansible_collections', 'kvmio', 'tuning'))
    return root


# --- one run ---------------------------------------------------------------------------------------

def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def masters_cpu(control_dir):
    """CPU seconds of the SSH master processes (ControlPersist) of ``control_dir``: they detach from
    ansible-playbook, so its rusage does not count them, yet they carry (and encrypt) every session."""
    total = 0.0
    ticks = os.sysconf('SC_CLK_TCK')
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                if control_dir.encode() not in handle.read():
                    continue
            with open('/proc/%s/stat' % pid, encoding='ascii') as handle:
                fields = handle.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks      # utime, stime
    return total


def run_playbook(lab, run_id, inventory, forks, collections, extra_vars, timing=True, extra_env=None, adhoc=None,
                 playbook=None):
    """One run of kvmio.tuning.tune (or of the playbook text ``playbook``, or of the ad-hoc module
    ``adhoc``) over ``inventory``, from no SSH connection (a ControlPath directory of its own, closed after)."""
    work = os.path.join(lab.root, 'runs', run_id)
    os.makedirs(work)
    inventory_path = os.path.join(work, 'inventory.json')
    with open(inventory_path, 'w', encoding='utf-8') as handle:
        json.dump(inventory, handle)
    timing_path = os.path.join(work, 'timing.jsonl')
    control_dir = os.path.join(lab.control_dir, run_id)
    os.makedirs(control_dir, mode=0o700)
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''),
               ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false',
               ANSIBLE_HOST_KEY_CHECKING='False', ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0',
               ANSIBLE_FORKS=str(forks), ANSIBLE_SSH_CONTROL_PATH_DIR=control_dir,
               ANSIBLE_HOME=os.path.join(lab.root, 'ansible-home'), ANSIBLE_LOCAL_TEMP=os.path.join(work, 'tmp'),
               ANSIBLE_RETRY_FILES_ENABLED='false')
    for key in [k for k in env if k.startswith('ANSIBLE_') and k in ('ANSIBLE_CONFIG', 'ANSIBLE_PIPELINING',
                                                                       'ANSIBLE_STRATEGY', 'ANSIBLE_SSH_ARGS')]:
        del env[key]            # the playbook's own settings are measured, not the caller's
    env.update(extra_env or {})
    if timing:
        env.update(ANSIBLE_CALLBACK_PLUGINS=os.path.join(HELPERS, 'callback_plugins'),
                   ANSIBLE_CALLBACKS_ENABLED='kvmio_fleet_timing', KVMIO_FLEET_TIMING=timing_path,
                   ANSIBLE_LOAD_CALLBACK_PLUGINS='1')
    if adhoc:
        argv = [os.path.join(BIN, 'ansible'), '-i', inventory_path, 'hypervisors', '-m', adhoc]
    else:
        target = 'kvmio.tuning.tune'
        if playbook:
            target = os.path.join(work, 'playbook.yml')
            with open(target, 'w', encoding='utf-8') as handle:
                handle.write(playbook)
        argv = [os.path.join(BIN, 'ansible-playbook'), '-i', inventory_path, target, '-e', json.dumps(extra_vars or {})]
    cpu_before = children_cpu()
    daemons_before = {n: lab.daemon_cpu(n) for n in lab.hosts}
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, cwd=work)
    wall = time.perf_counter() - start
    controller_cpu = children_cpu() - cpu_before + masters_cpu(control_dir)
    daemons = {'hv%d' % n: lab.daemon_cpu(n) - daemons_before[n] for n in lab.hosts}
    lab.close_masters(control_dir)
    with open(os.path.join(work, 'output.log'), 'w', encoding='utf-8') as handle:
        handle.write(proc.stdout + proc.stderr)
    recap = {host: {k: int(v) for k, v in re.findall(r'(\w+)=(\d+)', counters)}
             for host, counters in _RECAP.findall(proc.stdout)}
    records = []
    if timing and os.path.exists(timing_path):
        with open(timing_path, encoding='utf-8') as handle:
            records = [json.loads(line) for line in handle]
    main = [r for r in records if r['record'] == 'process']
    return {'rc': proc.returncode, 'wall_s': wall, 'controller_cpu_s': controller_cpu, 'recap': recap,
            'records': records, 'daemon_cpu_s': daemons,
            'main_cpu_s': main[-1]['user'] + main[-1]['system'] if main else None,
            'tail': (proc.stdout + proc.stderr)[-3000:] if proc.returncode else ''}


# --- the split -------------------------------------------------------------------------------------

def split_exec(record):
    """(connection, transfer, run) seconds of one command the connection plugin ran."""
    wall = record['end'] - record['start']
    if record['kind'] == 'put':
        return 0.0, wall, 0.0
    if 'T0' not in record or 'T2' not in record:
        return wall, 0.0, 0.0
    remote = record.get('T3', record['T2']) - record['T0']
    connection = max(0.0, wall - remote)
    if record['kind'] == 'helper':
        return connection, record['T2'] - record['T0'], 0.0
    if record['piped'] and 'T1' in record:
        return connection, record['T1'] - record['T0'], record['T2'] - record['T1']
    return connection, 0.0, record['T2'] - record['T0']


def host_split(records):
    """Per host: tasks, module calls, payload, and the seconds of connection, transfer, run, controller."""
    hosts = {}
    for record in records:
        hosts.setdefault(record.get('host', '?'), []).append(record)
    result = {}
    for host, recs in sorted(hosts.items()):
        tasks = [r for r in recs if r['record'] == 'task']
        if host == '?':
            continue
        execs = sorted((r for r in recs if r['record'] == 'exec'), key=lambda r: r['start'])
        busy = sum(t['end'] - t['start'] for t in tasks)
        totals = {'connection': 0.0, 'transfer': 0.0, 'run': 0.0}
        by_action = {}
        overheads = []
        for record in execs:
            connection, transfer, run = split_exec(record)
            totals['connection'] += connection
            totals['transfer'] += transfer
            totals['run'] += run
            overheads.append(connection)
            entry = by_action.setdefault(record.get('action', '?'), {'calls': 0, 'connection': 0.0, 'transfer': 0.0,
                                                                     'run': 0.0, 'payload_bytes': 0, 'host_cpu': 0.0})
            entry['calls'] += record['kind'] == 'module'
            entry['host_cpu'] += record.get('cpu', 0.0)
            entry['connection'] += connection
            entry['transfer'] += transfer
            entry['run'] += run
            entry['payload_bytes'] += record['bytes']
        for task in tasks:
            entry = by_action.setdefault(task['action'], {'calls': 0, 'connection': 0.0, 'transfer': 0.0, 'run': 0.0,
                                                          'payload_bytes': 0, 'host_cpu': 0.0})
            entry['tasks'] = entry.get('tasks', 0) + 1
            entry['task_s'] = entry.get('task_s', 0.0) + task['end'] - task['start']
            entry['result_bytes'] = entry.get('result_bytes', 0) + task['result_bytes']
        exec_wall = sum(r['end'] - r['start'] for r in execs)
        handshake = 0.0
        if len(overheads) > 1:
            handshake = max(0.0, overheads[0] - statistics.median(overheads[1:]))
        result[host] = {
            'tasks': len(tasks), 'skipped': sum(t['status'] == 'skipped' for t in tasks),
            'module_calls': sum(r['kind'] == 'module' for r in execs), 'commands': len(execs),
            'payload_bytes': sum(r['bytes'] for r in execs),
            'busy_s': busy, 'controller_s': max(0.0, busy - exec_wall), 'handshake_s': handshake,
            'host_cpu_s': sum(r.get('cpu', 0.0) for r in execs),
            'instrument_s': sum(r['T3'] - r['T2'] for r in execs if 'T3' in r and 'T2' in r),
            'connection_s': totals['connection'], 'transfer_s': totals['transfer'], 'run_s': totals['run'],
            'first_start': min(r['start'] for r in recs), 'last_end': max(r['end'] for r in recs),
            'by_action': by_action,
        }
    return result


def summarize(per_host):
    keys = ('tasks', 'module_calls', 'busy_s', 'connection_s', 'handshake_s', 'transfer_s', 'run_s', 'controller_s',
            'payload_bytes', 'host_cpu_s', 'instrument_s')
    if not per_host:
        return {}
    mean = {k: statistics.mean(h[k] for h in per_host.values()) for k in keys}
    mean['span_s'] = statistics.mean(h['last_end'] - h['first_start'] for h in per_host.values())
    actions = sorted({a for h in per_host.values() for a in h['by_action']})
    mean['by_action'] = {}
    for action in actions:
        entries = [h['by_action'].get(action, {}) for h in per_host.values()]
        mean['by_action'][action] = {k: statistics.mean(e.get(k, 0) for e in entries)
                                     for k in ('tasks', 'calls', 'task_s', 'connection', 'transfer', 'run', 'host_cpu',
                                               'payload_bytes', 'result_bytes')}
    return mean


# --- conversions, measured on their own -------------------------------------------------------------

CONVERT_OPTIONS = 'compat=1.1,extended_l2=off,lazy_refcounts=off,preallocation=metadata'


def time_conversion(work, size, data_mib=0, repeat=3):
    """Median seconds of what qcow2_create runs to convert one thin image - ``qemu-img convert`` to
    preallocation=metadata, then ``qemu-img compare`` - on a fresh image of ``size`` holding ``data_mib``
    MiB of written data."""
    os.makedirs(work, exist_ok=True)
    src, dst = os.path.join(work, 'thin.qcow2'), os.path.join(work, 'converted.qcow2')
    times = []
    for _ in range(repeat):
        for path in (src, dst):
            if os.path.exists(path):
                os.unlink(path)
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', src, size], check=True)
        if data_mib:
            subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x5a 0 %dM' % data_mib, src], check=True,
                           capture_output=True)
        os.sync()
        start = time.perf_counter()
        subprocess.run(['qemu-img', 'convert', '-q', '-f', 'qcow2', '-O', 'qcow2', '-o', CONVERT_OPTIONS, '--', src,
                        dst], check=True)
        subprocess.run(['qemu-img', 'compare', '-q', '-f', 'qcow2', '-F', 'qcow2', '--', src, dst], check=True)
        times.append(time.perf_counter() - start)
    for path in (src, dst):
        os.unlink(path)
    return statistics.median(times)


# --- the matrix ------------------------------------------------------------------------------------

def measure(lab, opts, collections):
    rows = []
    max_hosts = max(opts.hosts)
    lab.create(max_hosts)
    run_number = 0
    for domains in opts.domains:
        for hosts in opts.hosts:
            numbers = list(range(1, hosts + 1))
            started = time.perf_counter()
            lab.populate(numbers, domains)
            os.sync()
            setup_s = time.perf_counter() - started
            host_vars = {n: {'images_list': [{'path': p, 'size': lab.image_size} for p in lab.images(n, domains)]}
                         for n in numbers}
            policy = dict(POLICY, **opts.group_vars)
            inventory = lab.inventory(numbers, host_vars, policy)
            per_image = time_conversion(os.path.join(lab.root, 'conversion'), lab.image_size)
            forks = opts.forks or hosts
            phases = [('cold', 1)] + [('warm', i + 1) for i in range(opts.warm_runs)]
            if opts.phases == ['warm']:
                # Warm only: one unmeasured run first brings the hosts to the tuned state.
                run_number += 1
                first = run_playbook(lab, 'r%03d-prime' % run_number, inventory, forks, collections, opts.extra_vars,
                                     timing=False, extra_env=opts.env)
                if first['rc']:
                    raise SystemExit('the priming run failed: %s' % first['tail'])
                phases = [('warm', i + 1) for i in range(opts.warm_runs)]
            for phase, repeat in phases:
                run_number += 1
                run_id = 'r%03d-n%d-d%d-%s%d' % (run_number, hosts, domains, phase, repeat)
                print('... %s' % run_id, flush=True)
                outcome = run_playbook(lab, run_id, inventory, forks, collections, opts.extra_vars, extra_env=opts.env)
                per_host = host_split(outcome['records'])
                changed = {h: c.get('changed', 0) for h, c in outcome['recap'].items()}
                failed = {h: c.get('failed', 0) + c.get('unreachable', 0) for h, c in outcome['recap'].items()}
                row = {'variant': opts.variant, 'hosts': hosts, 'domains': domains, 'images_per_host': 2 * domains,
                       'phase': phase, 'repeat': repeat, 'forks': forks, 'rc': outcome['rc'],
                       'wall_s': outcome['wall_s'], 'controller_cpu_s': outcome['controller_cpu_s'],
                       'controller_cpu_s_per_host': outcome['controller_cpu_s'] / hosts,
                       'main_cpu_s': outcome['main_cpu_s'],
                       'libvirtd_cpu_s_per_host': statistics.mean(outcome['daemon_cpu_s']['hv%d' % n] for n in numbers),
                       'changed': changed, 'failed': failed,
                       'noop': all(v == 0 for v in changed.values()), 'setup_s': setup_s,
                       'conversion_per_image_s': per_image, 'conversion_direct_s_per_host': per_image * 2 * domains,
                       'mean_per_host': summarize(per_host), 'per_host': per_host}
                if outcome['rc']:
                    row['output_tail'] = outcome['tail']
                    print(outcome['tail'])
                rows.append(row)
                if opts.uninstrumented and phase == 'warm' and repeat == 1:
                    run_number += 1
                    bare = run_playbook(lab, 'r%03d-n%d-d%d-warm-bare' % (run_number, hosts, domains), inventory,
                                        forks, collections, opts.extra_vars, timing=False, extra_env=opts.env)
                    row['uninstrumented_wall_s'] = bare['wall_s']
    add_conversion(rows)
    return rows


# --- what each setting is worth ---------------------------------------------------------------------

# Other shapes of tune.yml, with the same connection settings as the shipped one.
_PLAY = """- name: %s
  hosts: hypervisors
  gather_facts: false
  strategy: free
  vars:
    ansible_pipelining: true
  tasks:
"""
# Before issue 17: every role included (an include task per role and host), restart included unconditionally.
INCLUDES_PLAYBOOK = _PLAY % 'tune.yml as it was, every role included' + """
    - ansible.builtin.include_role: {name: kvmio.tuning.images}
      when: images_list | default([]) | length > 0
    - ansible.builtin.include_role: {name: kvmio.tuning.disk_policy}
    - ansible.builtin.include_role: {name: kvmio.tuning.cpu_pinning}
      when: kvmio_tune_cpu_pinning | default(true) | bool
    - ansible.builtin.include_role: {name: kvmio.tuning.restart}
"""
# The shipped structure without the roles' argument validation task.
NO_VALIDATION_PLAYBOOK = _PLAY % 'tune.yml without role argument validation' + """
    - ansible.builtin.include_role: {name: kvmio.tuning.images, rolespec_validate: false}
      when: images_list | default([]) | length > 0
    - ansible.builtin.import_role: {name: kvmio.tuning.disk_policy, rolespec_validate: false}
    - ansible.builtin.import_role: {name: kvmio.tuning.cpu_pinning, rolespec_validate: false}
      when: kvmio_tune_cpu_pinning | default(true) | bool
"""
# The floor: the modules as bare tasks (no roles, no exports), as the roles call them.
MODULES_ONLY_PLAYBOOK = _PLAY % 'the modules alone' + """
    - kvmio.tuning.qcow2_create:
        images: "{{ images_list }}"
        convert: "{{ images_convert }}"
        uri: qemu:///session
        result_detail: summary
      when: images_list | default([]) | length > 0
    - kvmio.tuning.kvm_disk_tune:
        uri: qemu:///session
        backup_dir: ~/kvmio-backups
        discard: unmap
        detect_zeroes: auto
        result_detail: summary
    - kvmio.tuning.iothread_pin:
        uri: qemu:///session
        backup_dir: ~/kvmio-backups
        iothreads: auto
        vcpu_pinning: auto
        emulator_pinning: auto
        iothread_pinning: auto
        pinning_mode: shared
        result_detail: summary
"""

# (name, extra vars, environment, playbook text or None for kvmio.tuning.tune): warm runs of the same
# tuned hosts, each against `shipped`, which is what `ansible-playbook kvmio.tuning.tune` gives with
# ansible-core's defaults (ssh_args "-C -o ControlMaster=auto -o ControlPersist=60s") and the playbook's
# own settings.
ABLATIONS = [
    ('shipped', {}, {}, None),
    ('no-pipelining', {'kvmio_tune_pipelining': False}, {}, None),
    ('linear', {'kvmio_tune_strategy': 'linear'}, {}, None),
    ('full-results', {'disk_policy_result_detail': 'full', 'cpu_pinning_result_detail': 'full',
                      'images_result_detail': 'full'}, {}, None),
    ('ee-ssh-args', {}, {'ANSIBLE_SSH_ARGS': '-o ControlMaster=auto -o ControlPersist=600s -o ServerAliveInterval=30'},
     None),
    ('no-controlpersist', {}, {'ANSIBLE_SSH_ARGS': '-C -o ControlMaster=no'}, None),
    ('all-included', {}, {}, INCLUDES_PLAYBOOK),
    ('no-validation', {}, {}, NO_VALIDATION_PLAYBOOK),
    ('modules-only', {}, {}, MODULES_ONLY_PLAYBOOK),
]


def ablate(lab, opts, collections):
    """Warm runs of each ABLATIONS variant, interleaved over --rounds rounds (a loaded machine drifts:
    each round runs every variant once, in a rotated order), plus gathering facts with `setup`."""
    hosts, domains = max(opts.hosts), max(opts.domains)
    numbers = list(range(1, hosts + 1))
    lab.create(hosts)
    lab.populate(numbers, domains)
    os.sync()
    host_vars = {}
    if opts.ablation_images:
        host_vars = {n: {'images_list': [{'path': p, 'size': lab.image_size} for p in lab.images(n, domains)]}
                     for n in numbers}
    inventory = lab.inventory(numbers, host_vars, dict(POLICY, **opts.group_vars))
    forks = opts.forks or hosts
    prime = run_playbook(lab, 'prime', inventory, forks, collections, opts.extra_vars, timing=False, extra_env=opts.env)
    if prime['rc']:
        raise SystemExit('the priming run failed: %s' % prime['tail'])
    variants = ABLATIONS + [('gather-facts', None, {}, None)]
    rows = []
    for round_number in range(opts.rounds):
        order = variants[round_number % len(variants):] + variants[:round_number % len(variants)]
        for name, extra_vars, env, playbook in order:
            run_id = 'a%d-%s' % (round_number + 1, name)
            print('... %s' % run_id, flush=True)
            outcome = run_playbook(lab, run_id, inventory, forks, collections, dict(opts.extra_vars, **(extra_vars or {})),
                                   extra_env=dict(opts.env, **env), adhoc='ansible.builtin.setup' if extra_vars is None
                                   else None, playbook=playbook)
            per_host = host_split(outcome['records'])
            changed = {h: c.get('changed', 0) for h, c in outcome['recap'].items()}
            rows.append({'variant': name, 'round': round_number + 1, 'hosts': hosts, 'domains': domains,
                         'images': bool(host_vars), 'forks': forks, 'rc': outcome['rc'], 'wall_s': outcome['wall_s'],
                         'controller_cpu_s_per_host': outcome['controller_cpu_s'] / hosts,
                         'main_cpu_s': outcome['main_cpu_s'],
                         'libvirtd_cpu_s_per_host': statistics.mean(outcome['daemon_cpu_s']['hv%d' % n] for n in numbers),
                         'noop': all(v == 0 for v in changed.values()), 'mean_per_host': summarize(per_host)})
            if outcome['rc']:
                print(outcome['tail'])
    return rows


def print_ablation(rows):
    print('warm runs, medians over rounds; per host (mean over hosts)')
    header = '%-18s %3s %8s | %5s %5s %8s %8s %8s %8s %8s | %7s %7s %7s | %9s' % (
        'variant', 'ok', 'wall(s)', 'tasks', 'calls', 'host(s)', 'conn(s)', 'xfer(s)', 'run(s)', 'ctrl(s)', 'ccpu(s)',
        'main(s)', 'hcpu(s)', 'result(KB)')
    print(header)
    print('-' * len(header))
    for name in dict.fromkeys(r['variant'] for r in rows):
        runs = [r for r in rows if r['variant'] == name]

        def med(get):
            return statistics.median(get(r) for r in runs)
        ok = 'yes' if all(r['rc'] == 0 and (r['noop'] or name == 'gather-facts') for r in runs) else 'NO'
        result_kb = med(lambda r: sum(e.get('result_bytes', 0) for a, e in r['mean_per_host'].get('by_action', {}).items()
                                      if a.startswith('kvmio.')) / 1024)
        print('%-18s %3s %8.2f | %5.1f %5.1f %8.2f %8.2f %8.2f %8.2f %8.2f | %7.2f %7.2f %7.2f | %9.1f' % (
            name, ok, med(lambda r: r['wall_s']), med(lambda r: r['mean_per_host'].get('tasks', 0)),
            med(lambda r: r['mean_per_host'].get('module_calls', 0)), med(lambda r: r['mean_per_host'].get('busy_s', 0)),
            med(lambda r: r['mean_per_host'].get('connection_s', 0)), med(lambda r: r['mean_per_host'].get('transfer_s', 0)),
            med(lambda r: r['mean_per_host'].get('run_s', 0)), med(lambda r: r['mean_per_host'].get('controller_s', 0)),
            med(lambda r: r['controller_cpu_s_per_host']), med(lambda r: r['main_cpu_s'] or 0),
            med(lambda r: r['mean_per_host'].get('host_cpu_s', 0) + r['libvirtd_cpu_s_per_host']), result_kb))
    print('ccpu: controller CPU per host; main: ansible-playbook\'s main process CPU for the run; hcpu: hypervisor '
          'CPU per host. gather-facts: `ansible hypervisors -m setup` over the same hosts, what gather_facts: true '
          'would add.')


# --- the controller alone, at fleet scale ---------------------------------------------------------------

CONTROLLER_PLAYBOOK = """- name: Controller cost per host and task, no SSH
  hosts: all
  gather_facts: false
  strategy: "{{ kvmio_tune_strategy | default('free') }}"
  tasks:
%s"""


def controller_scale(opts):
    """ansible-playbook alone over many hosts (--controller-hosts, no SSH, no hypervisor): T tasks of
    ansible.builtin.debug per host with --forks forks, strategy free and linear. A debug task costs the
    controller what every task costs it (a worker fork, templating, the result through the main process)
    without a connection: the part of a fleet run this 2-CPU machine can run at 50 forks and 1,000 hosts."""
    work = tempfile.mkdtemp(prefix='kvmio-bench-fleet-controller-', dir='/var/tmp')
    rows = []
    try:
        tasks = ''.join('    - name: Task %d\n      ansible.builtin.debug:\n        msg: "{{ inventory_hostname }} %d"\n'
                        % (i, i) for i in range(opts.controller_tasks))
        playbook = os.path.join(work, 'playbook.yml')
        with open(playbook, 'w', encoding='utf-8') as handle:
            handle.write(CONTROLLER_PLAYBOOK % tasks)
        inventory = os.path.join(work, 'inventory.json')
        with open(inventory, 'w', encoding='utf-8') as handle:
            json.dump({'all': {'hosts': {'h%04d' % i: {} for i in range(opts.controller_hosts)},
                               'vars': {'ansible_connection': 'local'}}}, handle)
        for round_number in range(opts.rounds):
            for strategy in ('free', 'linear'):
                timing = os.path.join(work, 'timing-%s-%d.jsonl' % (strategy, round_number))
                env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_FORKS=str(opts.forks or 50),
                           ANSIBLE_HOME=os.path.join(work, 'home'), ANSIBLE_LOCAL_TEMP=os.path.join(work, 'tmp'),
                           ANSIBLE_CALLBACK_PLUGINS=os.path.join(HELPERS, 'callback_plugins'),
                           ANSIBLE_CALLBACKS_ENABLED='kvmio_fleet_timing', KVMIO_FLEET_TIMING=timing,
                           ANSIBLE_STDOUT_CALLBACK='ansible.builtin.minimal')
                print('... controller %s round %d' % (strategy, round_number + 1), flush=True)
                cpu_before = children_cpu()
                start = time.perf_counter()
                proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', inventory, playbook,
                                       '-e', 'kvmio_tune_strategy=%s' % strategy], env=env, capture_output=True,
                                      text=True, check=False)
                wall = time.perf_counter() - start
                cpu = children_cpu() - cpu_before
                with open(timing, encoding='utf-8') as handle:
                    records = [json.loads(line) for line in handle]
                main = [r for r in records if r['record'] == 'process']
                host_tasks = opts.controller_hosts * opts.controller_tasks
                rows.append({'strategy': strategy, 'round': round_number + 1, 'hosts': opts.controller_hosts,
                             'tasks': opts.controller_tasks, 'forks': opts.forks or 50, 'rc': proc.returncode,
                             'wall_s': wall, 'controller_cpu_s': cpu,
                             'main_cpu_s': main[-1]['user'] + main[-1]['system'] if main else None,
                             'cpu_per_host_task_ms': 1000 * cpu / host_tasks,
                             'main_per_host_task_ms': 1000 * (main[-1]['user'] + main[-1]['system']) / host_tasks
                             if main else None,
                             'wall_per_host_task_ms': 1000 * wall / host_tasks})
                if proc.returncode:
                    print((proc.stdout + proc.stderr)[-2000:])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def print_controller(rows):
    print('ansible-playbook alone: %d hosts x %d debug tasks, %d forks (medians over rounds)'
          % (rows[0]['hosts'], rows[0]['tasks'], rows[0]['forks']))
    print('%-8s %3s %8s %10s %9s | %14s %15s %14s' % ('strategy', 'ok', 'wall(s)', 'ctrl cpu(s)', 'main(s)',
                                                     'cpu/host-task', 'main/host-task', 'wall/host-task'))
    for strategy in ('free', 'linear'):
        runs = [r for r in rows if r['strategy'] == strategy]

        def med(key):
            return statistics.median(r[key] or 0 for r in runs)
        print('%-8s %3s %8.1f %10.1f %9.1f | %11.1f ms %12.1f ms %11.1f ms' % (
            strategy, 'yes' if all(r['rc'] == 0 for r in runs) else 'NO', med('wall_s'), med('controller_cpu_s'),
            med('main_cpu_s'), med('cpu_per_host_task_ms'), med('main_per_host_task_ms'), med('wall_per_host_task_ms')))


def add_conversion(rows):
    """The images role's module run time cold minus warm: what converting the images cost per host
    (beside conversion_direct_s_per_host, the conversions timed on their own)."""
    warm = {(r['hosts'], r['domains']): r for r in rows if r['phase'] == 'warm' and r['repeat'] == 1}
    for row in rows:
        other = warm.get((row['hosts'], row['domains']))
        if row['phase'] != 'cold' or other is None:
            continue
        cold_run = row['mean_per_host'].get('by_action', {}).get('kvmio.tuning.qcow2_create', {}).get('run', 0.0)
        warm_run = other['mean_per_host'].get('by_action', {}).get('kvmio.tuning.qcow2_create', {}).get('run', 0.0)
        row['conversion_s_per_host'] = max(0.0, cold_run - warm_run)


def print_table(rows):
    header = ('%-5s %3s %4s %5s %3s %7s | %5s %5s %7s %7s %6s %7s %7s | %7s %7s %6s | %7s %8s %7s' % (
        'phase', 'N', 'D', 'forks', 'ok', 'wall(s)', 'tasks', 'calls', 'host(s)', 'conn(s)', 'xfer', 'run(s)',
        'ctrl(s)', 'ccpu(s)', 'hcpu(s)', 'main', 'conv(s)', 'tune(KB)', 'pin(KB)'))
    print(header)
    print('-' * len(header))
    for row in rows:
        mean = row['mean_per_host']
        actions = mean.get('by_action', {})
        tune_kb = actions.get('kvmio.tuning.kvm_disk_tune', {}).get('result_bytes', 0) / 1024
        pin_kb = actions.get('kvmio.tuning.iothread_pin', {}).get('result_bytes', 0) / 1024
        conv = row.get('conversion_direct_s_per_host') if row['phase'] == 'cold' else None
        ok = 'yes' if row['rc'] == 0 and (row['phase'] == 'cold' or row['noop']) else 'NO'
        main = row.get('main_cpu_s')
        print('%-5s %3d %4d %5d %3s %7.2f | %5.1f %5.1f %7.2f %7.2f %6.2f %7.2f %7.2f | %7.2f %7.2f %6s | %7s %8.1f %7.1f' % (
            row['phase'], row['hosts'], row['domains'], row['forks'], ok, row['wall_s'], mean.get('tasks', 0),
            mean.get('module_calls', 0), mean.get('busy_s', 0), mean.get('connection_s', 0),
            mean.get('transfer_s', 0), mean.get('run_s', 0), mean.get('controller_s', 0),
            row['controller_cpu_s_per_host'], mean.get('host_cpu_s', 0) + row.get('libvirtd_cpu_s_per_host', 0),
            '%.2f' % main if main is not None else '-', '%.2f' % conv if conv is not None else '-', tune_kb, pin_kb))
    print('Per host, mean over hosts: tasks and module calls; host = the sum of its task times = conn (ssh client, '
          'session, first handshake) + xfer (payload to the host) + run (host Python and the module) + ctrl '
          '(controller: templating, AnsiballZ, worker, results). CPU seconds: ccpu = controller per host '
          '(ansible-playbook, workers, ssh clients and masters, divided by N), hcpu = hypervisor per host (the '
          'modules with their qemu-img, and libvirtd); main = ansible-playbook\'s main process for the whole run '
          '(one core at most). conv = the 2D conversions of a host timed on their own (qemu-img convert + compare '
          'of each image, as qcow2_create runs them). tune/pin = kvm_disk_tune / iothread_pin result size.')


def print_actions(rows):
    print('\nper module, per host (mean): calls, run (s), its CPU on the host (s), connection+transfer (s), task time (s), '
          'result (KB)')
    for row in rows:
        print('%s N=%d D=%d:' % (row['phase'], row['hosts'], row['domains']))
        for action, entry in sorted(row['mean_per_host'].get('by_action', {}).items()):
            print('  %-38s tasks %4.1f calls %5.1f run %7.3f cpu %7.3f conn+xfer %7.3f task %7.3f result %8.1f' % (
                action, entry['tasks'], entry['calls'], entry['run'], entry['host_cpu'],
                entry['connection'] + entry['transfer'], entry['task_s'], entry['result_bytes'] / 1024))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--hosts', type=int, nargs='+', default=[1, 4, 10])
    parser.add_argument('--domains', type=int, nargs='+', default=[10, 100])
    parser.add_argument('--forks', type=int, default=0, help='ansible forks (default: one per host)')
    parser.add_argument('--warm-runs', type=int, default=1)
    parser.add_argument('--phases', nargs='+', choices=['cold', 'warm'], default=['cold', 'warm'])
    parser.add_argument('--image-size', default='64M')
    parser.add_argument('--conversion-probe-mib', type=int, default=256,
                        help='also time converting one image holding this much data (MiB; 0: skip), for the model')
    parser.add_argument('--extra-vars', type=json.loads, default={}, help='JSON extra vars for every run')
    parser.add_argument('--env', type=json.loads, default={},
                        help='JSON environment for ansible-playbook, e.g. {"ANSIBLE_SSH_ARGS": "-C -o ControlMaster=auto"}')
    parser.add_argument('--group-vars', type=json.loads, default={}, help='JSON inventory vars over the policy')
    parser.add_argument('--variant', default='', help='label; results go to fleet-VARIANT.json')
    parser.add_argument('--uninstrumented', action='store_true',
                        help='also time the first warm run without the timing callback (its overhead)')
    parser.add_argument('--collection', default=REPO,
                        help='checkout of kvmio.tuning to measure (default: this one), e.g. `git archive` of another commit')
    parser.add_argument('--ablation', action='store_true',
                        help='instead of the matrix: warm runs of each setting (ABLATIONS) on max(--hosts) hosts of '
                             'max(--domains) domains, interleaved over --rounds')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--ablation-images', action='store_true', help='ablation hosts also list their images')
    parser.add_argument('--controller-hosts', type=int, default=0,
                        help='instead of the matrix: ansible-playbook alone over this many hosts (no SSH), '
                             '--controller-tasks debug tasks each, strategy free and linear, --rounds rounds')
    parser.add_argument('--controller-tasks', type=int, default=8)
    parser.add_argument('--keep', action='store_true', help='leave the lab up (tear it down with --teardown)')
    parser.add_argument('--teardown', action='store_true', help='only remove a lab left by --keep')
    opts = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit('run as root: the lab creates users, an sshd and their libvirt daemons')
    if opts.controller_hosts:
        rows = controller_scale(opts)
        print()
        print_controller(rows)
        os.makedirs(os.path.join(HERE, 'results'), exist_ok=True)
        path = os.path.join(HERE, 'results', 'fleet-controller%s.json' % ('-' + opts.variant if opts.variant else ''))
        with open(path, 'w', encoding='utf-8') as handle:
            json.dump({'meta': {'cpus': os.cpu_count(), 'loadavg_at_end': os.getloadavg(),
                                'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')},
                       'rows': rows}, handle, indent=1)
        print('wrote %s' % path)
        return rows
    lab = FleetLab(image_size=opts.image_size)
    if opts.teardown:
        lab.teardown()
        return []
    collections = collection_root(opts.collection)
    try:
        rows = ablate(lab, opts, collections) if opts.ablation else measure(lab, opts, collections)
    finally:
        if not opts.keep:
            lab.teardown()
        shutil.rmtree(collections)     # removes the link, not the checkout it points to
    probe = None
    if opts.conversion_probe_mib and not opts.ablation:
        work = tempfile.mkdtemp(prefix='kvmio-bench-fleet-conversion-', dir='/var/tmp')
        try:
            seconds = time_conversion(work, '%dM' % (2 * opts.conversion_probe_mib), opts.conversion_probe_mib)
        finally:
            shutil.rmtree(work)
        probe = {'data_mib': opts.conversion_probe_mib, 'seconds': seconds,
                 'mib_per_s': opts.conversion_probe_mib / seconds}
    print()
    if opts.ablation:
        print_ablation(rows)
    else:
        print_table(rows)
        print_actions(rows)
    if probe:
        print('conversion of one image holding %d MiB of data (convert + compare): %.2f s, %.0f MiB/s of data'
              % (probe['data_mib'], probe['seconds'], probe['mib_per_s']))
    load = os.getloadavg()
    meta = {'variant': opts.variant, 'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
            'cpus': os.cpu_count(), 'loadavg_at_end': load, 'argv': sys.argv[1:] if argv is None else argv,
            'collection': os.path.abspath(opts.collection),
            'commit': subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=opts.collection, capture_output=True,
                                     text=True, check=False).stdout.strip()}
    os.makedirs(os.path.join(HERE, 'results'), exist_ok=True)
    name = 'fleet-ablation' if opts.ablation else 'fleet'
    path = os.path.join(HERE, 'results', '%s%s.json' % (name, '-' + opts.variant if opts.variant else ''))
    with open(path, 'w', encoding='utf-8') as handle:
        json.dump({'meta': meta, 'conversion_probe': probe, 'rows': rows}, handle, indent=1)
    print('\nload average at the end: %.2f %.2f %.2f on %d CPUs; wrote %s' % (load + (os.cpu_count(), path)))
    return rows


if __name__ == '__main__':
    main()
