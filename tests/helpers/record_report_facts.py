# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Records the input of the report goldens: real kvm_io_info results of two "hosts" (two groups of
domains on libvirt's embedded driver) before and after kvm_disk_tune, and a kvm_io_bench run.

    .venv/bin/python tests/helpers/record_report_facts.py \
        > tests/data/report/two-hosts-before-and-after-tuning-facts.json

Then ``pytest tests/unit/test_goldens.py --regenerate-goldens`` and review ``git diff tests/data``.
The temporary image directory is written as /var/lib/libvirt/images and the embedded driver's root
as /var/lib/kvmio-embed, so the goldens do not change with each recording's temporary names; nothing
else is edited. Benchmark figures are whatever this machine measured (small, fast
runs: they exercise the report, they are not a measurement to quote).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = '/var/lib/libvirt/images'
EMBED_ROOT = '/var/lib/kvmio-embed'


def _record():
    sys.path.insert(0, TESTS)
    # Imported here: conftest makes the collection importable (a link in a temporary directory).
    # pylint: disable=import-outside-toplevel
    import conftest
    from ansible_collections.kvmio.tuning.plugins.modules import kvm_disk_tune, kvm_io_bench, kvm_io_info
    from helpers import domain_xml as dx, embed, qemu_img
    from helpers.modules import run_module

    root = embed.make_root()
    images = tempfile.mkdtemp(prefix='kvmio-report-', dir='/var/tmp')
    uri = 'qemu:///embed?root=%s' % root
    # conftest._open starts the event loop the embedded driver needs.
    conn = conftest._open(uri)  # pylint: disable=protected-access
    try:
        fleet = {'hv01': [('web01', 'vda', 'virtio', None), ('db01', 'hda', 'ide', None)],
                 'hv02': [('mail01', 'vda', 'virtio', 'metadata')]}
        for host, domains in fleet.items():
            for name, dev, bus, preallocation in domains:
                path = qemu_img.create(os.path.join(images, '%s.qcow2' % name), '16M', 'qcow2', preallocation)
                conn.defineXML(dx.domain('%s-%s' % (host, name), [dx.disk(path, dev, bus)]))

        def facts():
            return {host: run_module(kvm_io_info, {'uri': uri, 'domains': ['%s-*' % host]}) for host in fleet}

        before = facts()
        tuned = run_module(kvm_disk_tune, {'uri': uri, 'domains': ['hv01-*'], 'discard': 'unmap', 'bus': 'scsi',
                                           'convert_boot_disk': True, 'backup_dir': os.path.join(images, 'backups')})
        if tuned.failed:
            raise SystemExit('kvm_disk_tune failed: %s' % tuned.get('msg'))
        after = facts()
        bench = {'hv01': run_module(kvm_io_bench, {'path': images, 'count': 200, 'size': '16M',
                                                   'workloads': ['write']})}
    finally:
        for dom in conn.listAllDomains():
            dom.undefine()
        conn.close()
    recorded = {'before': before, 'after': after, 'bench': bench}
    text = json.dumps(recorded, indent=1, sort_keys=True).replace(images, IMAGES).replace(root, EMBED_ROOT)
    shutil.rmtree(images, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    return text


if __name__ == '__main__':
    print(_record())
