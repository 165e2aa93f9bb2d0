#!/usr/bin/env python3
# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet model of docs/scale.md, computed from bench_fleet.py's measurements.

Reads benchmarks/results/fleet.json (the N x D matrix, cold and warm) and predicts the wall time of
`kvmio.tuning.tune` over H hosts of D domains with AWX job slicing across S execution nodes of F forks
and K cores each, printing which measured figure each step uses. For each S it takes the slowest of
three limits per node (hosts are independent with strategy free):

  forks        (H/S) / F x t_host     each fork takes a host through the whole play, one after another
  controller   (H/S) x c_host / K     the node's CPU: workers, templating, ssh clients
  main process (H/S) x m_host         ansible-playbook's one process that runs the strategy and every result

plus the job's fixed part (AWX starting the job, ansible-playbook starting, the first SSH handshake).
m_host is measured twice: as the slope over N of the SSH runs (which includes the strategy's polling
while it waits, inflated where the hosts wait for this machine's two CPUs), and per host and task in a
controller-only run at 50 forks and 1,000 hosts (--controller); the model prints both.

Usage: .venv/bin/python benchmarks/fleet_model.py [--results FILE] [--hosts 1000] [--forks 50] [--cores 16]
           [--budget 120] [--job-start 20] [--rtt-ms 0.5] [--image-gib 20]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))


def fit(points):
    """Least-squares (slope, intercept) of [(x, y)]; with one distinct x, y/x and 0 (an upper bound of the
    per-host part, as the fixed part is counted in it)."""
    xs = [x for x, _ in points]
    if len(set(xs)) < 2:
        return statistics.mean(y / x for x, y in points), 0.0
    mean_x, mean_y = statistics.mean(xs), statistics.mean(y for _, y in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x in xs)
    return slope, mean_y - slope * mean_x


def pick(rows, phase, domains, hosts=None):
    found = [r for r in rows if r['phase'] == phase and r['domains'] == domains and r.get('repeat', 1) == 1
             and r['rc'] == 0 and (hosts is None or r['hosts'] == hosts)]
    return sorted(found, key=lambda r: r['hosts'])


def measured(results):
    """The figures the model uses, each with where it comes from."""
    rows = results['rows']
    domains = max(r['domains'] for r in rows)
    warm, cold = pick(rows, 'warm', domains), pick(rows, 'cold', domains)
    if not warm or not cold:
        raise SystemExit('the results need a cold and a warm run at D=%d' % domains)
    one_warm, one_cold = warm[0], cold[0]       # the fewest hosts: the least contention on this machine
    mean_w, mean_c = one_warm['mean_per_host'], one_cold['mean_per_host']
    ctrl_slope, ctrl_fixed = fit([(r['hosts'], r['controller_cpu_s']) for r in warm])
    main_slope, main_fixed = fit([(r['hosts'], r['main_cpu_s']) for r in warm if r.get('main_cpu_s') is not None])
    where = 'warm runs at D=%d, N=%s' % (domains, '/'.join(str(r['hosts']) for r in warm))
    figures = {
        'domains': domains,
        't_host_warm': (mean_w['busy_s'], 'warm N=%d D=%d: sum of a host\'s task times' % (one_warm['hosts'], domains)),
        't_host_cold': (mean_c['busy_s'], 'cold N=%d D=%d: sum of a host\'s task times' % (one_cold['hosts'], domains)),
        'host_cpu_warm': (mean_w.get('host_cpu_s', 0) + one_warm.get('libvirtd_cpu_s_per_host', 0),
                          'warm N=%d: hypervisor CPU per host (modules, qemu-img, libvirtd)' % one_warm['hosts']),
        'c_host': (max(ctrl_slope, 0.0), 'slope of controller CPU over N (%s)' % where),
        'c_fixed': (ctrl_fixed, 'intercept of the same fit: one run\'s own controller CPU'),
        'm_host': (max(main_slope, 0.0), 'slope of ansible-playbook main-process CPU over N (%s)' % where),
        't_fixed': (one_warm['wall_s'] - mean_w['span_s'],
                    'warm N=%d: run wall time minus the host\'s span (start, parse, end)' % one_warm['hosts']),
        'handshake': (mean_w['handshake_s'], 'warm N=%d: first SSH exchange minus a later one' % one_warm['hosts']),
        'calls': (mean_w['module_calls'], 'warm N=%d: module calls per host' % one_warm['hosts']),
        'tasks': (mean_w['tasks'], 'warm N=%d: tasks per host' % one_warm['hosts']),
        'payload': (mean_w['payload_bytes'], 'warm N=%d: module payload bytes per host' % one_warm['hosts']),
        'conversion': (one_cold.get('conversion_direct_s_per_host', 0.0),
                       'cold N=%d: the host\'s %d images converted, timed on their own' % (one_cold['hosts'], 2 * domains)),
    }
    probe = results.get('conversion_probe')
    if probe:
        figures['conversion_mib_s'] = (probe['mib_per_s'], 'conversion probe: %d MiB of data in %.2f s'
                                       % (probe['data_mib'], probe['seconds']))
    return figures


def fleet_time(fig, hosts, nodes, forks, cores, job_start, t_host, m_host=None):
    per_node = math.ceil(hosts / nodes)
    limits = {
        'forks': per_node / min(forks, per_node) * t_host,
        'controller CPU': per_node * fig['c_host'][0] / cores,
        'main process': per_node * (fig['m_host'][0] if m_host is None else m_host),
    }
    fixed = job_start + fig['t_fixed'][0]
    bound = max(limits, key=limits.get)
    return fixed + limits[bound], bound, limits, per_node


def nodes_needed(fig, opts, t_warm, m_host=None):
    """Prints the limits for 1, 2, ... nodes until the budget is met; returns that node count or None."""
    for nodes in range(1, 65):
        total, bound, limits, per_node = fleet_time(fig, opts.hosts, nodes, opts.forks, opts.cores, opts.job_start,
                                                    t_warm, m_host)
        if nodes <= 8 or total <= opts.budget:
            print('  S=%2d nodes: %4d hosts each; forks %6.1f s, controller CPU %6.1f s, main process %6.1f s -> '
                  '%6.1f s (%s-bound)' % (nodes, per_node, limits['forks'], limits['controller CPU'],
                                          limits['main process'], total, bound))
        if total <= opts.budget:
            print('=> warm: %d execution node(s) of %d forks bring %d hosts under %.0f s (job_slice_count=%d).'
                  % (nodes, opts.forks, opts.hosts, opts.budget, nodes))
            return nodes
    print('=> warm: no node count up to 64 meets the budget with these figures.')
    return None


def controller_figure(path):
    """Main-process ms per host and task of the controller-only run (strategy free, median), if there is one."""
    if not path or not os.path.exists(path):
        return None
    with open(path, encoding='utf-8') as handle:
        data = json.load(handle)
    runs = [r for r in data['rows'] if r['strategy'] == 'free' and r.get('main_per_host_task_ms')]
    if not runs:
        return None
    return (statistics.median(r['main_per_host_task_ms'] for r in runs),
            'bench_fleet --controller-hosts %d, %d forks' % (runs[0]['hosts'], runs[0]['forks']))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--results', default=os.path.join(HERE, 'results', 'fleet.json'))
    parser.add_argument('--hosts', type=int, default=1000)
    parser.add_argument('--forks', type=int, default=50, help='forks per execution node (the job template\'s forks)')
    parser.add_argument('--cores', type=int, default=16, help='CPU cores of an execution node')
    parser.add_argument('--budget', type=float, default=120.0, help='target wall time of the whole fleet (s)')
    parser.add_argument('--job-start', type=float, default=20.0,
                        help='seconds AWX takes to start a job (EE container, project, inventory): not measured here')
    parser.add_argument('--rtt-ms', type=float, default=0.5, help='network round trip to a hypervisor (ms)')
    parser.add_argument('--gbit', type=float, default=1.0, help='network bandwidth to a hypervisor (Gbit/s)')
    parser.add_argument('--image-gib', type=float, default=20.0, help='data per image for the cold estimate (GiB)')
    parser.add_argument('--controller', default=os.path.join(HERE, 'results', 'fleet-controller-h1000.json'),
                        help='results of bench_fleet.py --controller-hosts, for the main process at fleet scale')
    opts = parser.parse_args(argv)
    with open(opts.results, encoding='utf-8') as handle:
        results = json.load(handle)
    fig = measured(results)
    print('Measured on this machine (%s, %s CPUs, load %s at the end; provisional on a shared machine):'
          % (results['meta'].get('date'), results['meta'].get('cpus'), results['meta'].get('loadavg_at_end')))
    for key, entry in fig.items():
        if key == 'domains':
            continue
        value, source = entry
        print('  %-16s %12.3f   %s' % (key, value, source))
    # The network this loopback lab does not have: one round trip per module call's session on the
    # master connection and one for its result, four for the first handshake, and the payload.
    network = ((2 * fig['calls'][0] + 4) * opts.rtt_ms / 1000 + fig['payload'][0] * 8 / (opts.gbit * 1e9))
    t_warm = fig['t_host_warm'][0] + network
    t_cold = fig['t_host_cold'][0] + network
    print('\nPer host, warm: t_host = %.2f s measured + %.3f s network (%d round trips of %.1f ms, %.0f KB at %.0f Gbit/s)'
          % (fig['t_host_warm'][0], network, 2 * fig['calls'][0] + 4, opts.rtt_ms, fig['payload'][0] / 1024, opts.gbit))
    print('Limits per execution node of %d forks and %d cores, %d hosts of %d domains, budget %.0f s, AWX job '
          'start %.0f s (assumed):' % (opts.forks, opts.cores, opts.hosts, fig['domains'], opts.budget, opts.job_start))
    needed = nodes_needed(fig, opts, t_warm)
    controller = controller_figure(opts.controller)
    if controller:
        per_task, source = controller
        m_alt = per_task / 1000 * fig['tasks'][0]
        print('\nThe same with the main process at %.1f ms per host and task (%s): m_host = %.3f s'
              % (per_task, source, m_alt))
        nodes_needed(fig, opts, t_warm, m_alt)
    conv_measured = fig['conversion'][0]
    print('\nCold: t_host = %.2f s measured, of which converting its %d (nearly empty) images took %.2f s on their own.'
          % (t_cold, 2 * fig['domains'], conv_measured))
    if 'conversion_mib_s' in fig:
        conv = 2 * fig['domains'] * opts.image_gib * 1024 / fig['conversion_mib_s'][0]
        nodes = needed or 1
        total, bound, _limits, _per_node = fleet_time(fig, opts.hosts, nodes, opts.forks, opts.cores, opts.job_start,
                                                     t_cold + conv)
        print('With %.0f GiB of data per image at the measured %.0f MiB/s (convert + compare): %.0f s per host of '
              'conversion; %d node(s) of %d forks: %.0f s for the fleet (%s-bound): conversions bound a cold run.'
              % (opts.image_gib, fig['conversion_mib_s'][0], conv, nodes, opts.forks, total, bound))
    return fig


if __name__ == '__main__':
    main()
