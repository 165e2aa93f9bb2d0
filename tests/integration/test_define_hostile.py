# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The review of the define check and xml_path (issue 14, /work/review-def-report.md), as the
attacks and accidents happen: templates another user writes (``setpriv --reuid=65534``), planted
links and FIFOs, files edited during a run, a daemon whose qemu.conf differs from the check's, XML
over libvirt's RPC limit, killed modules. Each test failed on the code before its fix.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

import libvirt
import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils import _define_check
from ansible_collections.kvmio.tuning.plugins.module_utils._define_check import check_defines
from ansible_collections.kvmio.tuning.plugins.modules import kvm_disk_tune
from helpers import domain_xml as dx
from helpers.modules import finish_module_process, run_module, start_module_process

NOBODY = 65534
QEMU = '/usr/bin/qemu-system-x86_64'
INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE


def as_nobody(*argv):
    subprocess.run(['setpriv', '--reuid=%d' % NOBODY, '--regid=%d' % NOBODY, '--clear-groups'] + list(argv),
                   check=True)


@pytest.fixture
def nobody_home():
    """A directory under /var/tmp that belongs to the unprivileged user (as their home would)."""
    path = tempfile.mkdtemp(prefix='kvmio-nobody-', dir='/var/tmp')
    os.chown(path, NOBODY, NOBODY)
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def template(name='web', emulator=QEMU, extra_devices=''):
    return dx.domain(name, [dx.disk('/var/lib/libvirt/images/%s.qcow2' % name, 'vda', 'virtio')],
                     extra_devices=extra_devices).replace(QEMU, emulator)


BACKUPS = tempfile.mkdtemp(prefix='kvmio-hostile-backups-')     # root's, 0700


def tune_file(path, check=True, diff=False, **options):
    args = {'xml_path': str(path), 'probe_storage': False, 'cache': 'none', 'io': 'native', 'backup_dir': BACKUPS}
    args.update(options)
    return run_module(kvm_disk_tune, args, check_mode=check, diff=diff)


def run_file_module(args, timeout):
    """kvm_disk_tune as its own process, as Ansible runs it: (result or None when it did not finish, Popen)."""
    proc, args_file = start_module_process('kvm_disk_tune', args)
    try:
        return finish_module_process(proc, args_file, timeout=timeout), proc
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        os.unlink(args_file)
        return None, proc


# --- C1: nothing a template names is executed as root -------------------------------------------

WRAPPER = '#!/bin/sh\nid >> %s\nexec %s "$@"\n'


def test_a_template_another_user_writes_never_makes_root_run_its_emulator(nobody_home):
    """The review's C1: nobody's template names nobody's script as <emulator>; the define check's
    embedded libvirt probed it as root (``id`` printed uid=0), in check mode. Variants: nobody's link
    to the real QEMU (nobody could point it elsewhere between the check and the probe), a root-owned
    script in nobody's directory (nobody can replace it), and nobody's script reached through a link
    root made. Each domain is reported unchecked, naming the emulator; no script runs."""
    pwned = os.path.join(nobody_home, 'pwned')
    script = os.path.join(nobody_home, 'q')
    as_nobody('sh', '-c', 'printf "$1" > "$2" && chmod 755 "$2"', 'sh', WRAPPER % (pwned, QEMU), script)
    as_nobody('ln', '-s', QEMU, os.path.join(nobody_home, 'qemu-link'))
    rooted = os.path.join(nobody_home, 'root-q')
    with open(rooted, 'w', encoding='utf-8') as handle:
        handle.write(WRAPPER % (pwned, QEMU))
    os.chmod(rooted, 0o755)
    root_dir = tempfile.mkdtemp(prefix='kvmio-rootlink-', dir='/var/tmp')
    os.chmod(root_dir, 0o755)
    os.symlink(script, os.path.join(root_dir, 'q'))
    try:
        for emulator, why in ((script, 'owned by nobody (uid 65534)'),
                              (os.path.join(nobody_home, 'qemu-link'), 'owned by nobody (uid 65534)'),
                              (rooted, '%s is owned by nobody (uid 65534)' % nobody_home),
                              (os.path.join(root_dir, 'q'), 'owned by nobody (uid 65534)')):
            path = os.path.join(nobody_home, 'web.xml')
            as_nobody('sh', '-c', 'printf "%s" "$1" > "$2"', 'sh', template(emulator=emulator), path)
            for check in (True, False):
                result = tune_file(path, check=check)
                assert not result.failed, result['msg']
                assert not os.path.exists(pwned), 'root ran %s: %s' % (emulator, open(pwned).read())
                reason = result['define_check']['unchecked'].get('web', '')
                assert result['define_check']['checked'] == [], result['define_check']
                assert 'its emulator %s' % emulator in reason and why in reason, reason
    finally:
        shutil.rmtree(root_dir)
    plain = os.path.join(nobody_home, 'plain.xml')
    as_nobody('sh', '-c', 'printf "%s" "$1" > "$2"', 'sh', template(name='plain'), plain)
    assert tune_file(plain)['define_check'] == {'checked': ['plain'], 'unchecked': {}}


def test_the_check_never_probes_an_untrusted_emulator_whoever_asks():
    """The same rule inside check_defines (used by every module): an emulator in a directory another
    user can write is never run, in the current XML or the planned one."""
    home = tempfile.mkdtemp(prefix='kvmio-open-', dir='/var/tmp')
    os.chmod(home, 0o777)
    try:
        pwned = os.path.join(home, 'pwned')
        script = os.path.join(home, 'q')
        with open(script, 'w', encoding='utf-8') as handle:
            handle.write(WRAPPER % (pwned, QEMU))
        os.chmod(script, 0o755)
        good, bad = template('kvmio-test-good'), template('kvmio-test-bad', emulator=script)
        check = check_defines([('kvmio-test-before', bad, good), ('kvmio-test-after', good, bad.replace(
            'kvmio-test-bad', 'kvmio-test-after'))], redefine=False)
        assert not os.path.exists(pwned)
        assert check.checked == [] and sorted(check.unchecked) == ['kvmio-test-after', 'kvmio-test-before']
        assert 'is writable by others' in check.unchecked['kvmio-test-after']
    finally:
        shutil.rmtree(home)


def test_an_emulator_path_in_a_template_is_never_read_unbounded_or_opened_blocking(nobody_home):
    """The review's M3: with define_check false, the io_uring probe opened the template's emulator as
    root and read it to the end: a FIFO blocked the run forever, /dev/zero never ended."""
    fifo = os.path.join(nobody_home, 'fifo')
    as_nobody('mkfifo', fifo)
    for emulator in (fifo, '/dev/zero'):
        path = os.path.join(nobody_home, 'web.xml')
        as_nobody('sh', '-c', 'printf "%s" "$1" > "$2"', 'sh', template(emulator=emulator), path)
        started = time.monotonic()
        result, _proc = run_file_module({'xml_path': path, 'probe_storage': False, 'define_check': False,
                                         'cache': 'none', 'io': 'auto',
                                         'backup_dir': BACKUPS}, timeout=30)
        assert result is not None, 'the run hung on the emulator %s' % emulator
        assert not result.failed, result['msg']
        assert time.monotonic() - started < 20


# --- M5: a UEFI template whose nvram file exists -------------------------------------------------

def test_a_uefi_template_with_its_nvram_file_is_checked_and_the_file_kept(tmp_path):
    """The review's M5: the check undefined the current XML without flags and libvirt refused ("cannot
    undefine domain with nvram"), failing the run. The nvram file must stay as it is (never
    VIR_DOMAIN_UNDEFINE_NVRAM: it would delete the host's file)."""
    nvram = tmp_path / 'web_VARS.fd'
    nvram.write_bytes(b'\0' * 4096)
    loader = ("<os><type arch='x86_64' machine='q35'>hvm</type><loader readonly='yes' type='pflash'>"
              "/usr/share/OVMF/OVMF_CODE_4M.fd</loader><nvram>%s</nvram><boot dev='hd'/></os>"
              "<features><acpi/></features>" % nvram)
    text = template()
    start, end = text.index('<os>'), text.index('</os>') + len('</os>')
    path = tmp_path / 'web.xml'
    path.write_text(text[:start] + loader + text[end:])
    result = tune_file(path)
    assert not result.failed, result['msg']
    assert result['define_check'] == {'checked': ['web'], 'unchecked': {}}
    assert nvram.read_bytes() == b'\0' * 4096


# --- L1: a check orphaned by a killed module ends itself ----------------------------------------

def _processes_with(text):
    """Processes whose command line or environment holds ``text`` (the check's child has its root as HOME)."""
    found = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        for what in ('cmdline', 'environ'):
            try:
                with open('/proc/%s/%s' % (pid, what), 'rb') as handle:
                    if text.encode() in handle.read():
                        found.append(int(pid))
                        break
            except OSError:
                continue
    return found


def test_a_check_whose_module_is_killed_ends_with_its_probes_and_root(tmp_path):
    """The review's L1: the child runs in its own session, so a module killed by SIGKILL (or SIGHUP
    over ssh) left it, and the stuck probe it started, running for good, and its root in /dev/shm."""
    stuck_dir = tempfile.mkdtemp(prefix='kvmio-stuck-', dir='/var/tmp')
    os.chmod(stuck_dir, 0o755)
    marker = os.path.basename(stuck_dir)
    stuck = os.path.join(stuck_dir, 'qemu-system-x86_64')
    with open(stuck, 'w', encoding='utf-8') as handle:
        handle.write('#!/bin/sh\nwhile :; do sleep 1; done\n')     # its command line names stuck_dir
    os.chmod(stuck, 0o755)
    path = tmp_path / 'web.xml'
    path.write_text(template(emulator=stuck))
    roots_before = set(os.listdir('/dev/shm'))
    proc, args_file = start_module_process('kvm_disk_tune', {'xml_path': str(path), 'probe_storage': False,
                                                             'cache': 'none', 'io': 'native',
                                                             'backup_dir': str(tmp_path / 'b')})
    try:
        deadline = time.monotonic() + 60
        while not _processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _processes_with(marker), 'the probe never started'
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        deadline = time.monotonic() + 15
        while (_processes_with(marker) or _processes_with(_define_check.RUN_PREFIX)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _processes_with(marker), 'the probe outlived the killed module'
        assert not _processes_with(_define_check.RUN_PREFIX), 'the check outlived the killed module'
        left = [e for e in set(os.listdir('/dev/shm')) - roots_before if e.startswith(_define_check.RUN_PREFIX)]
        assert not left, 'roots left behind: %s' % left
    finally:
        for pid in _processes_with(marker):
            os.kill(pid, signal.SIGKILL)
        os.unlink(args_file)
        shutil.rmtree(stuck_dir)
