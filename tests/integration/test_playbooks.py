# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/tune.yml and rollback.yml run with ansible-playbook against libvirtd on this host."""

from __future__ import annotations

import json
import os

import libvirt
import libvirt_qemu
from lxml import etree

from ansible_collections.kvmio.tuning.plugins.module_utils._domain_xml import canonical
from helpers import domain_xml as dx
from helpers.playbook import run_playbook, stats

INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE


def cache_of(xml, dev='vda'):
    root = etree.fromstring(xml.encode())
    for disk in root.findall('devices/disk'):
        if disk.find('target').get('dev') == dev:
            return disk.find('driver').get('cache')
    raise KeyError(dev)


def make_domains(factory, count):
    os.chmod(factory.image_dir, 0o755)
    prefix = factory.name('pb')
    doms = []
    for i in range(count):
        name = '%s-%d' % (prefix, i)
        doms.append(factory.define(dx.domain(name, [dx.disk(factory.image(name + '.qcow2'), 'vda', 'virtio')])))
    return prefix, doms


def policy_vars(prefix, backup_dir, **extra):
    variables = {'disk_policy_domains': [prefix + '-*'], 'cpu_pinning_domains': [prefix + '-*'],
                 'disk_policy_backup_dir': backup_dir, 'cpu_pinning_backup_dir': backup_dir}
    variables.update(extra)
    return variables


def test_tune_honours_overrides_then_reruns_with_no_change_and_rolls_back(system_domains, tmp_path, backup_dir):
    prefix, doms = make_domains(system_domains, 2)
    originals = [d.XMLDesc(INACTIVE) for d in doms]
    variables = policy_vars(prefix, backup_dir, disk_policy_overrides={prefix + '-1': {'cache': 'writeback'}})
    first = run_playbook('tune.yml', tmp_path, variables)
    assert first['rc'] == 0, first['stdout'][-3000:]
    assert stats(first)['changed'] >= 2
    assert cache_of(doms[0].XMLDesc(INACTIVE)) == 'none'
    assert cache_of(doms[1].XMLDesc(INACTIVE)) == 'writeback'
    assert etree.fromstring(doms[0].XMLDesc(INACTIVE).encode()).findtext('iothreads') == '1'
    second = run_playbook('tune.yml', tmp_path, variables)
    assert second['rc'] == 0 and stats(second)['changed'] == 0, stats(second)
    rollback_vars = {'kvmio_rollback_domains': [d.name() for d in doms], 'kvmio_rollback_which': 'earliest',
                     'kvmio_rollback_backup_dir': backup_dir}
    rolled = run_playbook('rollback.yml', tmp_path, rollback_vars)
    assert rolled['rc'] == 0 and stats(rolled)['changed'] == 1, rolled['stdout'][-3000:]
    assert [canonical(d.XMLDesc(INACTIVE)) for d in doms] == [canonical(x) for x in originals]
    again = run_playbook('rollback.yml', tmp_path, rollback_vars)
    assert again['rc'] == 0 and stats(again)['changed'] == 0


def test_check_mode_run_changes_nothing(system_domains, tmp_path, backup_dir):
    prefix, doms = make_domains(system_domains, 1)
    original = doms[0].XMLDesc(INACTIVE)
    report = run_playbook('tune.yml', tmp_path, policy_vars(prefix, backup_dir), check=True)
    assert report['rc'] == 0, report['stdout'][-3000:]
    assert stats(report)['changed'] >= 1, 'check mode reports what would change'
    assert doms[0].XMLDesc(INACTIVE) == original
    assert not os.path.exists(backup_dir)


def test_restart_brings_running_domains_back_with_the_new_settings_live(system_domains, tmp_path, backup_dir):
    prefix, doms = make_domains(system_domains, 1)
    dom = doms[0]
    dom.create()
    try:
        variables = policy_vars(prefix, backup_dir, restart_enabled=True, restart_force_off=True,
                                restart_shutdown_timeout=2)
        report = run_playbook('tune.yml', tmp_path, variables)
        assert report['rc'] == 0, report['stdout'][-3000:]
        assert dom.isActive()
        assert cache_of(dom.XMLDesc(0)) == 'none', 'the live domain runs with the new cache mode'
    finally:
        if dom.isActive():
            dom.destroy()


def test_restart_refuses_to_pull_the_plug_unless_asked(system_domains, tmp_path, backup_dir):
    prefix, doms = make_domains(system_domains, 1)
    dom = doms[0]
    dom.create()
    try:
        variables = policy_vars(prefix, backup_dir, restart_enabled=True, restart_shutdown_timeout=1)
        report = run_playbook('tune.yml', tmp_path, variables)
        assert report['rc'] != 0
        assert 'did not shut down within 1 s' in report['stdout'] and 'force_off=true' in report['stdout']
        assert dom.isActive(), 'a guest that ignores ACPI is left running'
    finally:
        dom.destroy()


def test_tune_applies_the_policy_to_running_domains_live(system_domains, tmp_path, backup_dir):
    prefix, doms = make_domains(system_domains, 1)
    dom = doms[0]
    dom.create()
    try:
        variables = policy_vars(prefix, backup_dir, disk_policy_apply='live', kvmio_tune_cpu_pinning=False,
                                disk_policy_save_dir=str(tmp_path / 'save'))
        report = run_playbook('tune.yml', tmp_path, variables)
        assert report['rc'] == 0, report['stdout'][-3000:]
        nodes = json.loads(libvirt_qemu.qemuMonitorCommand(
            dom, json.dumps({'execute': 'query-named-block-nodes', 'arguments': {'flat': True}}), 0))['return']
        assert {n['node-name']: n['cache']['direct'] for n in nodes} == {'libvirt-1-format': True,
                                                                         'libvirt-1-storage': True}
        assert cache_of(dom.XMLDesc(INACTIVE)) == 'none' and cache_of(dom.XMLDesc(0)) is None, 'no restart'
        again = run_playbook('tune.yml', tmp_path, variables)
        assert again['rc'] == 0 and stats(again)['changed'] == 0, stats(again)
    finally:
        dom.destroy()


RACE_DEMO_ROOT = r'''
import os, sys, time
root, victim = sys.argv[1], sys.argv[2]
print('ready', flush=True)
end = time.time() + 600
while time.time() < end:
    try:
        os.mkdir(root, 0o777)
        os.symlink(victim, os.path.join(root, 'images'))
    except OSError:
        pass
    time.sleep(0.001)
'''


def test_the_demo_root_is_never_one_another_user_made(tmp_path, monkeypatch):
    # Issue 14, second review (L7): the demo removed /tmp/kvmio-demo and then created directories in it;
    # a local user who made it again in between (a link to a root-only directory as its 'images') had
    # root chmod that directory and write the demo's images into it.
    import subprocess
    import tempfile
    import sys
    public = tempfile.mkdtemp(prefix='kvmio-demo-l7-', dir='/var/tmp')
    os.chmod(public, 0o1777)                         # as /tmp
    victim = tmp_path / 'root-only'
    victim.mkdir(mode=0o700)
    (victim / 'keep').write_text('root data\n')
    root = os.path.join(public, 'demo')
    monkeypatch.setenv('KVMIO_DEMO_ROOT', root)
    racer = subprocess.Popen(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', sys.executable, '-c',
                              RACE_DEMO_ROOT, root, str(victim)], stdout=subprocess.PIPE, text=True)
    try:
        assert racer.stdout.readline() == 'ready\n'
        result = run_playbook('demo.yml', tmp_path)
    finally:
        racer.kill()
        racer.wait()
    try:
        assert os.stat(victim).st_mode & 0o7777 == 0o700 and os.listdir(victim) == ['keep'], \
            'root wrote into a directory another user chose'
        if result['rc'] != 0:
            assert 'is not safe to write to' in result['stdout'] or 'was made by another user' in result['stdout'], \
                result['stdout'][-3000:]
        else:                                        # the user lost every race: the root is root's alone
            assert os.stat(root).st_uid == 0 and os.stat(root).st_mode & 0o7777 == 0o700
    finally:
        subprocess.run(['rm', '-rf', public], check=False)
