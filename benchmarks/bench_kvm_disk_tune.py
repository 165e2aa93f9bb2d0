#!/usr/bin/env python3
# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How long one kvm_disk_tune call takes for a whole host, beside a virt-xml loop doing the same edit.

Defines N domains with 2 thin qcow2 disks each on libvirtd (qemu:///system; virt-xml cannot use the
embedded driver: it registers no event loop), then times:
- kvm_disk_tune over all of them (changed run, then no-op run), as Ansible runs it on a hypervisor: a
  process of its own under the host's Python (--python, default /usr/bin/python3 with Debian's
  python3-libvirt and python3-lxml), with ansible-core's module_utils beside it as AnsiballZ ships them
  (AnsiballZ's own transfer and unpacking are not counted: they are one per task, not per domain);
- `virt-xml DOMAIN --edit all --disk cache=none,io=native,discard=unmap --define`, one process per
  domain, on the first --virt-xml-sample domains of a second, identical set (per-domain time).

Usage: .venv/bin/python benchmarks/bench_kvm_disk_tune.py [--sizes 50 500] [--virt-xml-sample 50]
Prints a table and writes benchmarks/results/kvm_disk_tune.json. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNDEFINE_SCRIPT = textwrap.dedent('''
    import libvirt, sys
    conn = libvirt.open(sys.argv[1])
    for dom in conn.listAllDomains():
        if dom.name().startswith(('kvmio-bench-', 'kvmio-vx-')):  # also kvmio-vx-bare-
            dom.undefine()
''')

DEFINE_SCRIPT = textwrap.dedent('''
    import libvirt, subprocess, sys
    uri, count, images, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    conn = libvirt.open(uri)
    for i in range(count):
        name = '%s%04d' % (prefix, i)
        disks = ''
        for dev in ('vda', 'vdb'):
            path = '%s/%s-%s.qcow2' % (images, name, dev)
            subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', path, '16M'], check=True)
            disks += ("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                      "<source file='%s'/><target dev='%s' bus='virtio'/></disk>" % (path, dev))
        conn.defineXML("<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
                       "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>%s"
                       "<memballoon model='none'/></devices></domain>" % (name, disks))
''')


def collection_path():
    """A PYTHONPATH holding this collection and ansible-core's ``ansible`` package, nothing else, so
    the module imports libvirt and lxml from the interpreter's own packages, as on a hypervisor."""
    import ansible
    link_root = tempfile.mkdtemp(prefix='kvmio-bench-import-')
    os.makedirs(os.path.join(link_root, 'ansible_collections', 'kvmio'))
    os.symlink(REPO, os.path.join(link_root, 'ansible_collections', 'kvmio', 'tuning'))
    os.symlink(os.path.dirname(ansible.__file__), os.path.join(link_root, 'ansible'))
    return link_root


def host_python(requested):
    """The interpreter to run the module with: the requested one if it has libvirt and lxml."""
    probe = subprocess.run([requested, '-c', 'import libvirt, lxml.etree'], capture_output=True, check=False)
    if probe.returncode:
        print('%s lacks libvirt or lxml; running the module with %s' % (requested, sys.executable))
        return sys.executable
    return requested


def run_module(python, pythonpath, root, args):
    args = dict(args, uri=root, _ansible_check_mode=False, _ansible_diff=False)
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': args}, handle)
    start = time.perf_counter()
    proc = subprocess.run([python, '-m', 'ansible_collections.kvmio.tuning.plugins.modules.kvm_disk_tune',
                           handle.name], capture_output=True, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=pythonpath))
    elapsed = time.perf_counter() - start
    os.unlink(handle.name)
    result = json.loads(proc.stdout[proc.stdout.index('{'):])
    if result.get('failed'):
        raise SystemExit('kvm_disk_tune failed: %s' % result.get('msg'))
    return elapsed, result


BARE_LOOP = textwrap.dedent('''
    # The floor any tool pays: read, edit (lxml) and define each domain, nothing else.
    import libvirt, sys, time
    from lxml import etree
    uri, names = sys.argv[1], sys.argv[2:]
    start = time.perf_counter()
    conn = libvirt.open(uri)
    for name in names:
        dom = conn.lookupByName(name)
        root = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE).encode())
        for driver in root.findall('devices/disk/driver'):
            driver.set('cache', 'none'); driver.set('io', 'native'); driver.set('discard', 'unmap')
        conn.defineXML(etree.tostring(root, encoding='unicode'))
    print(time.perf_counter() - start)
''')


def bare_loop(python, root, names):
    out = subprocess.run([python, '-c', BARE_LOOP, root] + names, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def settle():
    """Writes out what setting up left dirty (1,000 new images), so no timed run pays for it."""
    os.sync()
    time.sleep(0.5)


def process_floor(python, pythonpath, root, runs=5):
    """Median time of a process that only starts, imports what any such module imports (ansible-core's
    module_utils, libvirt, lxml) and connects: the part of a call that does not depend on domains."""
    script = 'import ansible.module_utils.basic, libvirt, lxml.etree, sys; libvirt.open(sys.argv[1]).close()'
    times = []
    for _run in range(runs):
        start = time.perf_counter()
        subprocess.run([python, '-c', script, root], check=True, env=dict(os.environ, PYTHONPATH=pythonpath))
        times.append(time.perf_counter() - start)
    return sorted(times)[runs // 2]


def virt_xml_loop(root, names):
    start = time.perf_counter()
    for name in names:
        subprocess.run(['virt-xml', '--connect', root, name, '--edit', 'all', '--disk',
                        'cache=none,io=native,discard=unmap', '--define', '--quiet'], check=True,
                       capture_output=True)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[50, 500])
    parser.add_argument('--virt-xml-sample', type=int, default=50)
    parser.add_argument('--uri', default='qemu:///system')
    parser.add_argument('--python', default='/usr/bin/python3', help="the hypervisor's Python that runs the module")
    opts = parser.parse_args(argv)
    pythonpath = collection_path()
    python = host_python(opts.python)
    rows = []
    for size in opts.sizes:
        work = tempfile.mkdtemp(prefix='kvmio-bench-', dir='/var/tmp')
        root = opts.uri
        images = os.path.join(work, 'images')
        os.makedirs(images)
        try:
            # Leftovers of an interrupted run would clash with the names defined here.
            subprocess.run([sys.executable, '-c', UNDEFINE_SCRIPT, root], check=True)
            subprocess.run([sys.executable, '-c', DEFINE_SCRIPT, root, str(size), images, 'kvmio-bench-'], check=True)
            settle()
            backups = os.path.join(work, 'backups')
            args = {'domains': ['kvmio-bench-*'], 'cache': 'none', 'io': 'native', 'discard': 'unmap', 'backup_dir': backups}
            floor_s = process_floor(python, pythonpath, root)
            changed_s, first = run_module(python, pythonpath, root, args)
            noop_s, second = run_module(python, pythonpath, root, args)
            sample = min(size, opts.virt_xml_sample)
            subprocess.run([sys.executable, '-c', DEFINE_SCRIPT, root, str(sample), images, 'kvmio-vx-'], check=True)
            settle()
            vx_s = virt_xml_loop(root, ['kvmio-vx-%04d' % i for i in range(sample)])
            subprocess.run([sys.executable, '-c', DEFINE_SCRIPT, root, str(size), images, 'kvmio-vx-bare-'], check=True)
            settle()
            bare_s = bare_loop(python, root, ['kvmio-vx-bare-%04d' % i for i in range(size)])
            rows.append({'domains': size, 'disks': 2 * size, 'python': python, 'module_changed_s': round(changed_s, 3),
                         'module_noop_s': round(noop_s, 3), 'changed_domains': sum(d['changed'] for d in first['domains']),
                         'noop_changed': second['changed'], 'virt_xml_sample': sample, 'virt_xml_s': round(vx_s, 3),
                         'virt_xml_per_domain_s': round(vx_s / sample, 4),
                         'module_per_domain_s': round(changed_s / size, 5),
                         'speedup_per_domain': round((vx_s / sample) / (changed_s / size), 1),
                         'process_floor_s': round(floor_s, 3), 'bare_loop_s': round(bare_s, 3), 'bare_per_domain_s': round(bare_s / size, 5)})
        finally:
            shutil.rmtree(work, ignore_errors=True)
            subprocess.run([sys.executable, '-c', UNDEFINE_SCRIPT, root], check=False)
    print('%8s %11s %9s %8s %16s %16s %8s %15s %9s' % ('domains', 'changed(s)', 'noop(s)', 'noop ok', 'virt-xml/dom(s)',
                                                       'module/dom(s)', 'speedup', 'bare loop/dom(s)', 'floor(s)'))
    for row in rows:
        print('%8d %11.3f %9.3f %8s %16.4f %16.5f %7.1fx %15.5f %9.3f' % (
            row['domains'], row['module_changed_s'], row['module_noop_s'], not row['noop_changed'],
            row['virt_xml_per_domain_s'], row['module_per_domain_s'], row['speedup_per_domain'],
            row['bare_per_domain_s'], row['process_floor_s']))
    print('floor: a process that imports ansible-core module_utils, libvirt and lxml and connects, nothing more')
    os.makedirs(os.path.join(REPO, 'benchmarks', 'results'), exist_ok=True)
    with open(os.path.join(REPO, 'benchmarks', 'results', 'kvm_disk_tune.json'), 'w', encoding='utf-8') as handle:
        json.dump(rows, handle, indent=2)
    return rows


if __name__ == '__main__':
    main()
