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
import pathlib
import shutil
import signal
import stat
import subprocess
import tempfile
import time

import libvirt
import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils import _define_check
from ansible_collections.kvmio.tuning.plugins.module_utils._backup_origin import with_origin
from ansible_collections.kvmio.tuning.plugins.module_utils._define_check import check_defines
from ansible_collections.kvmio.tuning.plugins.module_utils._libvirt import lock_subject
from ansible_collections.kvmio.tuning.plugins.modules import kvm_disk_tune
from helpers import domain_xml as dx
from helpers import embed
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


@pytest.fixture(scope='module', autouse=True)
def backups():
    """Where these tests' runs keep backups: root's, 0700 (never in another user's directory)."""
    path = tempfile.mkdtemp(prefix='kvmio-hostile-backups-')
    BACKUPS[:] = [path]
    yield path
    shutil.rmtree(path, ignore_errors=True)


BACKUPS = []


def tune_file(path, check=True, diff=False, **options):
    args = {'xml_path': str(path), 'probe_storage': False, 'cache': 'none', 'io': 'native', 'backup_dir': BACKUPS[0]}
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
                                         'backup_dir': BACKUPS[0]}, timeout=30)
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


@pytest.fixture
def stuck_emulator():
    """(path, marker): a root-owned emulator in a root-only directory (so the check runs it) that never
    answers libvirt's probe; every process it runs has ``marker`` in its command line."""
    stuck_dir = tempfile.mkdtemp(prefix='kvmio-stuck-', dir='/var/tmp')
    os.chmod(stuck_dir, 0o755)
    marker = os.path.basename(stuck_dir)
    stuck = os.path.join(stuck_dir, 'qemu-system-x86_64')
    with open(stuck, 'w', encoding='utf-8') as handle:
        handle.write('#!/bin/sh\nwhile :; do sleep 1; done\n')     # its command line names stuck_dir
    os.chmod(stuck, 0o755)
    yield stuck, marker
    for pid in _processes_with(marker):
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(stuck_dir)


def _start_stuck_check(tmp_path, stuck, marker):
    path = tmp_path / 'web.xml'
    path.write_text(template(emulator=stuck))
    proc, args_file = start_module_process('kvm_disk_tune', {'xml_path': str(path), 'probe_storage': False,
                                                             'cache': 'none', 'io': 'native',
                                                             'backup_dir': str(tmp_path / 'b')})
    deadline = time.monotonic() + 60
    while not _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with(marker), 'the probe never started'
    return proc, args_file


def test_a_check_whose_module_is_killed_ends_with_its_probes_and_root(tmp_path, stuck_emulator):
    """The review's L1: the child runs in its own session, so a module killed by SIGKILL (or SIGHUP
    over ssh) left it, and the stuck probe it started, running for good, and its root in /dev/shm."""
    stuck, marker = stuck_emulator
    roots_before = set(os.listdir('/dev/shm'))
    proc, args_file = _start_stuck_check(tmp_path, stuck, marker)
    try:
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
        os.unlink(args_file)


def test_the_check_keeps_out_of_the_host_daemon_s_run_directory(tmp_path, stuck_emulator):
    """The review's L6: the check's libvirt read (or, on a host without a daemon, created)
    /run/libvirt/common/system.token, the host daemon's. The child now sees an empty tmpfs there (in a
    mount namespace of its own, which its probes share); the host's directory is untouched."""
    stuck, marker = stuck_emulator
    token = '/run/libvirt/common/system.token'
    before = os.stat(token) if os.path.exists(token) else None
    proc, args_file = _start_stuck_check(tmp_path, stuck, marker)
    try:
        probe = _processes_with(marker)[0]
        with open('/proc/%d/mountinfo' % probe, encoding='utf-8') as handle:
            mounts = {line.split()[4]: line.split(' - ')[1].split()[0] for line in handle}
        assert mounts.get('/run/libvirt') == 'tmpfs' or mounts.get('/run') == 'tmpfs', mounts
        inside = '/proc/%d/root%s' % (probe, token)
        if before is not None and os.path.exists(inside):
            assert os.stat(inside).st_dev != before.st_dev, 'the check used the host daemon\'s token'
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        os.unlink(args_file)
    if before is not None:
        after = os.stat(token)
        assert (after.st_ino, after.st_mtime_ns, after.st_atime_ns) == (before.st_ino, before.st_mtime_ns,
                                                                        before.st_atime_ns)


def test_an_iothread_moves_with_its_disk_onto_a_virtio_scsi_controller_libvirt_accepts():
    """The review's L6 (iothread): the controller that takes the moved disk's iothread is accepted by libvirt."""
    from ansible_collections.kvmio.tuning.plugins.module_utils._disk_plan import TunePolicy, plan_domain
    from ansible_collections.kvmio.tuning.plugins.module_utils._disk_policy import DiskSettings
    text = dx.domain('kvmio-test-iothread', [
        dx.disk('/var/lib/libvirt/images/a.qcow2', 'vda', 'virtio'),
        dx.disk('/var/lib/libvirt/images/b.qcow2', 'vdb', 'virtio').replace('type="qcow2"', 'type="qcow2" iothread="1"')],
        extra_devices="<controller type='scsi' index='0' model='virtio-scsi'/>",
        metadata='\n  <iothreads>1</iothreads>')
    plan = plan_domain(text, TunePolicy(settings=DiskSettings(cache='keep', io='keep'), bus='scsi',
                                        convert_boot_disk=True))
    assert 'iothread="1"' in plan.after.split('<controller')[1] and plan.changed
    check = check_defines([('kvmio-test-iothread', text, plan.after)], redefine=False)
    assert check.checked == ['kvmio-test-iothread'], check


# --- M1: a define that fails mid-run changes nothing: the check mirrors the daemon, the run rolls back

def virsh(root, *args):
    return subprocess.run(['virsh', '-q', '-c', 'qemu:///embed?root=%s' % root] + list(args), check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture
def spice_daemon(tmp_path):
    """An embedded root acting as a daemon whose qemu.conf sets spice_tls = 1, with six domains that
    have a SPICE TLS port (which libvirt accepts only with that setting); their XML as libvirt holds it,
    and backups of each with cache='writeback', the sixth also io='native' (libvirt refuses that pair)."""
    root = embed.make_root()
    with open(os.path.join(root, 'etc', 'qemu.conf'), 'a', encoding='utf-8') as handle:
        handle.write('spice_tls = 1\n')
    names = ['kvmio-test-spice-%d' % index for index in range(6)]
    originals, backups = {}, []
    files = tmp_path / 'files'
    files.mkdir(mode=0o700)
    for index, name in enumerate(names):
        path = files / ('%s.defined.xml' % name)
        path.write_text(dx.domain(name, [dx.disk('/var/tmp/%s.qcow2' % name, 'vda', 'virtio')], extra_devices=(
            "<graphics type='spice' port='%d' tlsPort='%d' autoport='no'/>" % (5900 + 2 * index, 5901 + 2 * index))))
        virsh(root, 'define', str(path))
        originals[name] = virsh(root, 'dumpxml', '--inactive', '--security-info', name)
        cache = "cache='writeback'" if index < 5 else "cache='writeback' io='native'"
        backup = files / ('%s.xml' % name)
        backup.write_text(with_origin(originals[name].replace("<driver name='qemu' type='qcow2'/>",
                                                              "<driver name='qemu' type='qcow2' %s/>" % cache),
                                      lock_subject('qemu:///embed?root=%s' % root)))
        os.chmod(backup, 0o600)
        backups.append(str(backup))
    yield root, names, originals, backups
    shutil.rmtree(root, ignore_errors=True)


def now_held(root, names):
    return {name: virsh(root, 'dumpxml', '--inactive', '--security-info', name) for name in names}


def restore(root, backups, tmp_path, check=False, **options):
    args = dict({'uri': 'qemu:///embed?root=%s' % root, 'backups': backups, 'backup_dir': str(tmp_path / 'b')},
                **options)
    proc, args_file = start_module_process('domain_restore', dict(args, _ansible_check_mode=check))
    return finish_module_process(proc, args_file, timeout=300)


def test_a_daemon_with_spice_tls_is_checked_as_it_is_configured(spice_daemon, tmp_path):
    """The review's M1: the throwaway qemu.conf had only user and group, so every domain with a SPICE
    TLS port was "unchecked", check mode said changed, and the real run redefined five of six before
    libvirt refused the sixth. The daemon's spice_tls is now copied: the refusal is seen before any
    define, in check mode too; and a backup that adds a TLS port is no longer refused by the check."""
    root, names, originals, backups = spice_daemon
    checked, real = (restore(root, backups, tmp_path, check=check) for check in (True, False))
    for result in (checked, real):
        assert result.failed, result
        assert result['msg'].startswith('libvirt refuses the planned XML of %s, so nothing was changed' % names[5])
        assert sorted(result['define_check']['checked']) == names[:5], result['define_check']
    assert now_held(root, names) == originals
    # The other way round: the backup adds the TLS port; the daemon takes it, so must the check.
    plain = (tmp_path / 'plain.xml')
    plain.write_text(dx.domain('kvmio-test-spice-plain', [dx.disk('/var/tmp/p.qcow2', 'vda', 'virtio')]))
    virsh(root, 'define', str(plain))
    held = virsh(root, 'dumpxml', '--inactive', '--security-info', 'kvmio-test-spice-plain')
    backup = tmp_path / 'files' / 'plain-with-tls.xml'
    backup.write_text(with_origin(held.replace('</devices>', "<graphics type='spice' port='5990' tlsPort='5991' "
                                                             "autoport='no'/></devices>"),
                                  lock_subject('qemu:///embed?root=%s' % root)))
    os.chmod(backup, 0o600)
    added = restore(root, [str(backup)], tmp_path)
    assert not added.failed, added['msg']
    assert added['define_check'] == {'checked': ['kvmio-test-spice-plain'], 'unchecked': {}}


def test_a_define_that_fails_mid_run_puts_back_what_the_run_defined(spice_daemon, tmp_path):
    """Where the check cannot see a refusal coming (here it is off), a define that fails after others
    must not leave them changed: each is defined again from the backup the run wrote, and verified;
    the failure says so, and keeps define_check and its warning."""
    root, names, originals, backups = spice_daemon
    real = restore(root, backups, tmp_path, define_check=False)
    assert real.failed
    assert real['msg'].startswith("libvirt refused to define domain %s: unsupported configuration: io='native'"
                                  % names[5]), real['msg']
    assert real['msg'].endswith('. Nothing was changed: the 5 domain(s) this run had defined before it stopped were '
                                'defined again from the backups it wrote, and verified: %s.' % ', '.join(names[:5]))
    assert real['rolled_back'] == names[:5] and real['defined'] == [] and real['rollback_failed'] == {}
    assert real['failed_domain'] == names[5] and len(real['backups']) == 6
    assert real['define_check'] == {'checked': [], 'unchecked': {name: 'define_check=false' for name in names}}
    assert any('could not be checked before the define' in w for w in real.warning_messages), real.warning_messages
    assert now_held(root, names) == originals


# --- M2: XML libvirt's RPC cannot carry is refused before any define; a remote URI is unchecked ---

def _padded(factory, name, size):
    """Defines ``name`` with <metadata> padding so that the XML libvirt stores has ``size`` bytes."""
    image = factory.image(name + '.qcow2')
    base = dx.domain(name, [dx.disk(image, 'vda', 'virtio')],
                     metadata="\n  <metadata><k:pad xmlns:k='urn:kvmio-test'>PAD</k:pad></metadata>")
    pad = 1000
    for _attempt in range(3):
        dom = factory.define(base.replace('PAD', 'x' * pad))
        base = base.replace('<name>', '<uuid>%s</uuid><name>' % dom.UUIDString(), 1) if '<uuid>' not in base else base
        stored = len(dom.XMLDesc(INACTIVE).encode('utf-8'))
        if stored == size:
            return dom
        pad += size - stored
    raise AssertionError('could not pad %s to %d bytes' % (name, size))


def test_planned_xml_libvirt_cannot_carry_is_refused_before_any_define(system_domains, tmp_path):
    """The review's M2: the embedded check has no RPC limit, so a plan that pushed a domain's XML past
    libvirt's 4 MiB passed it; libvirtd then refused that define ("Unable to encode message payload")
    after five others. Now the plan is refused before the first define, in check mode too."""
    factory = system_domains
    prefix = factory.name('rpc')
    names = ['%s-%d' % (prefix, index) for index in range(6)]
    for name in names[:5]:
        factory.define(dx.domain(name, [dx.disk(factory.image(name + '.qcow2'), 'vda', 'virtio')]))
    _padded(factory, names[5], 4194304 - 8)
    originals = {n: factory.conn.lookupByName(n).XMLDesc(INACTIVE) for n in names}
    args = {'uri': 'qemu:///system', 'domains': [prefix + '-*'], 'probe_storage': False, 'cache': 'none',
            'io': 'native', 'backup_dir': str(tmp_path / 'b')}
    for check in (True, False):
        result = run_module(kvm_disk_tune, args, check_mode=check)
        assert result.failed, result
        assert result['msg'].startswith('the planned XML of %s is larger than libvirt can define and read back (%s: '
                                        % (names[5], names[5])), result['msg']
        assert 'nothing was changed' in result['msg'] and not result.get('defined')
    assert {n: factory.conn.lookupByName(n).XMLDesc(INACTIVE) for n in names} == originals
    assert not (tmp_path / 'b').exists()


def test_a_backup_libvirt_cannot_carry_is_refused_before_any_restore(system_domains, tmp_path):
    """The report's M2 reproduction: six backups, the sixth with 4.1 MiB of <metadata>."""
    from ansible_collections.kvmio.tuning.plugins.modules import domain_restore
    factory = system_domains
    prefix = factory.name('rpcr')
    files = tmp_path / 'files'
    files.mkdir(mode=0o700)
    paths, originals = [], {}
    for index in range(6):
        name = '%s-%d' % (prefix, index)
        dom = factory.define(dx.domain(name, [dx.disk(factory.image(name + '.qcow2'), 'vda', 'virtio')]))
        originals[name] = dom.XMLDesc(INACTIVE)
        text = originals[name].replace("<driver name='qemu' type='qcow2'/>",
                                       "<driver name='qemu' type='qcow2' cache='writeback'/>")
        if index == 5:
            text = text.replace('</domain>', "<metadata><k:pad xmlns:k='urn:kvmio-test'>%s</k:pad></metadata>"
                                             "</domain>" % ('x' * (4300 * 1024)))
        path = files / ('%s.xml' % name)
        path.write_text(with_origin(text, 'qemu:///system'))
        os.chmod(path, 0o600)
        paths.append(str(path))
    for check in (True, False):
        result = run_module(domain_restore, {'uri': 'qemu:///system', 'backups': paths,
                                             'backup_dir': str(tmp_path / 'b')}, check_mode=check)
        assert result.failed and not result.get('defined'), result
        assert 'is %d bytes, more than the 4194304 a domain XML can be' % os.path.getsize(paths[5]) in result['msg']
    assert {n: factory.conn.lookupByName(n).XMLDesc(INACTIVE) for n in originals} == originals


def test_the_check_says_unchecked_for_a_libvirt_it_does_not_stand_for():
    """The review's M2 (second part): check_plans never knew the URI, so a qemu+ssh:// run was reported
    "checked" against this host's QEMU and libvirt."""
    xml = template('kvmio-test-remote')
    for uri in ('qemu+ssh://root@192.0.2.1/system', 'qemu+tcp://192.0.2.1/system', 'test:///default',
                'qemu+ssh:///system'):
        check = check_defines([('kvmio-test-remote', xml, xml)], uri=uri)
        assert check.checked == [] and check.unchecked == {'kvmio-test-remote': (
            "the URI %s is not this host's QEMU driver, and the check stands for this host's libvirt and QEMU "
            "only" % uri)}, check
    assert check_defines([('kvmio-test-local', xml, xml)], uri='qemu:///system', redefine=False).checked == [
        'kvmio-test-local']


# --- xml_path: H1, M4, M7, L2, L3, L5 -------------------------------------------------------------

def test_an_xml_path_diff_never_carries_a_password(tmp_path):
    """The review's H1: in diff mode the file's raw text went to the result, graphics password and all."""
    path = tmp_path / 'pw.xml'
    path.write_text(template(extra_devices="<graphics type='vnc' passwd='Secret12'/>"))
    for check in (True, False):
        path.write_text(template(extra_devices="<graphics type='vnc' passwd='Secret12'/>"))
        result = tune_file(path, check=check, diff=True)
        assert not result.failed and result['changed'], result.get('msg')
        assert 'Secret12' not in repr(result), 'the password is in the result'
        assert "passwd='********'" in result['diff'][0]['before'] and "cache='none'" in result['diff'][0]['after']
    assert "passwd='Secret12'" in path.read_text(), 'the file keeps its password'


def test_an_edit_in_place_during_the_run_is_never_overwritten(tmp_path):
    """The review's M4: replace() compared only device and inode, so an editor writing into the same
    file (``open(p, 'r+')``) while the run planned lost its edit. Here the edit lands between the read
    and the replace, as it did during the define check's probe."""
    from ansible_collections.kvmio.tuning.plugins.module_utils._errors import KvmioError
    from ansible_collections.kvmio.tuning.plugins.module_utils._xml_file import XmlFile
    path = tmp_path / 'race.xml'
    path.write_text(template())
    with XmlFile(str(path)) as xml_file:
        text = xml_file.text
        with open(path, 'r+', encoding='utf-8') as editor:
            editor.write(text.replace('<vcpu placement=\'static\'>1</vcpu>', '<vcpu placement=\'static\'>4</vcpu>'))
        with pytest.raises(KvmioError, match='was edited while this run worked on it; not overwriting that'):
            xml_file.replace(text.replace('<memory', '<!-- tuned --><memory'))
    assert "<vcpu placement='static'>4</vcpu>" in path.read_text()
    assert sorted(os.listdir(tmp_path)) == ['race.xml'], 'no temporary file is left'
    # The same with the edit's time stamps put back (touch -r): the bytes still differ.
    with XmlFile(str(path)) as xml_file:
        before = os.stat(path)
        with open(path, 'r+', encoding='utf-8') as editor:
            editor.write(xml_file.text.replace("'static'>4<", "'static'>2<"))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        with pytest.raises(KvmioError, match='was edited while this run worked on it'):
            xml_file.replace(xml_file.text)
    assert "<vcpu placement='static'>2</vcpu>" in path.read_text()


def test_xml_path_never_opens_what_it_will_refuse(nobody_home, tmp_path):
    """The review's M7: the file was opened before its type and its links were checked, so nobody's
    link to a device made root open it (a watchdog arms, a tape rewinds). A FIFO shows it: its writer,
    blocked in open(), wakes up when anyone opens the FIFO for reading."""
    fifo = os.path.join(nobody_home, 'fifo')
    as_nobody('mkfifo', '-m', '0666', fifo)
    woke = os.path.join(nobody_home, 'writer-woke')
    writer = subprocess.Popen(['setpriv', '--reuid=%d' % NOBODY, '--regid=%d' % NOBODY, '--clear-groups', 'sh', '-c',
                               'exec 3>"$1"; touch "$2"', 'sh', fifo, woke])
    root_fifo_dir = tempfile.mkdtemp(prefix='kvmio-rootfifo-', dir='/var/tmp')
    os.chmod(root_fifo_dir, 0o755)
    root_fifo = os.path.join(root_fifo_dir, 'fifo')
    os.mkfifo(root_fifo, 0o600)
    root_writer = subprocess.Popen(['sh', '-c', 'exec 3>"$1"; touch "$2"', 'sh', root_fifo, root_fifo + '-woke'])
    try:
        as_nobody('ln', '-s', fifo, os.path.join(nobody_home, 'tmpl.xml'))
        as_nobody('ln', '-s', root_fifo, os.path.join(nobody_home, 'root.xml'))
        for name, message in (('tmpl.xml', 'is a FIFO, not a regular file; nothing was read'),
                              ('root.xml', 'is a FIFO, not a regular file; nothing was read')):
            result = tune_file(os.path.join(nobody_home, name))
            assert result.failed and message in result['msg'], result['msg']
        time.sleep(0.5)
        assert not os.path.exists(woke), 'root opened the FIFO behind nobody\'s link'
        assert not os.path.exists(root_fifo + '-woke'), 'root opened a FIFO before checking it'
    finally:
        for proc in (writer, root_writer):
            proc.kill()
            proc.wait()
        shutil.rmtree(root_fifo_dir)


def _acl(*entries):
    """A system.posix_acl_access value: (tag, perm, id) entries (tags: 1 user_obj, 2 user, 4 group_obj,
    8 group, 0x10 mask, 0x20 other)."""
    import struct
    return struct.pack('<I', 2) + b''.join(struct.pack('<HHI', tag, perm, ident) for tag, perm, ident in entries)


def test_xml_path_keeps_acls_and_extended_attributes():
    """The review's L2: the replaced file lost its ACL (u:nobody:rw, group::r, mask::rw at mode 0664
    became plain 0664: nobody lost write, the group gained it) and its extended attributes."""
    home = tempfile.mkdtemp(prefix='kvmio-acl-', dir='/var/tmp')
    os.chmod(home, 0o755)
    try:
        path = pathlib.Path(home) / 'web.xml'
        path.write_text(template())
        os.chmod(path, 0o664)
        acl = _acl((1, 6, 0xffffffff), (2, 6, NOBODY), (4, 4, 0xffffffff), (0x10, 6, 0xffffffff), (0x20, 4, 0xffffffff))
        os.setxattr(path, 'system.posix_acl_access', acl)
        os.setxattr(path, 'user.origin', b'git@example.com:templates')
        mode = stat.S_IMODE(os.stat(path).st_mode)
        result = tune_file(path, check=False)
        assert not result.failed and result['changed'], result.get('msg')
        assert "cache='none'" in path.read_text()
        assert os.getxattr(path, 'system.posix_acl_access') == acl
        assert os.getxattr(path, 'user.origin') == b'git@example.com:templates'
        assert stat.S_IMODE(os.stat(path).st_mode) == mode
        as_nobody('sh', '-c', 'echo "<!-- nobody may still write -->" >> "$1"', 'sh', str(path))
    finally:
        shutil.rmtree(home)


def test_xml_path_with_domains_or_exclude_fails_instead_of_ignoring_them(tmp_path):
    """The review's L3: ``domains: ['db-*']`` and ``exclude: [web]`` were silently ignored with
    xml_path, so the file was tuned anyway."""
    path = tmp_path / 'web.xml'
    original = template()
    path.write_text(original)
    for options in ({'domains': ['db-*']}, {'exclude': ['web']}, {'domains': ['web'], 'exclude': ['x']}):
        result = tune_file(path, check=False, **options)
        assert result.failed and result['msg'].startswith('domains and exclude select domains of libvirt, and '
                                                          'xml_path names one file'), options
    assert path.read_text() == original


def test_xml_path_files_that_cannot_be_replaced_as_they_are(tmp_path):
    """The review's L5: a name of multibyte characters made the temporary name too long to create; a
    hard-linked file was replaced under one name only (the other names kept the old text, silently);
    a replace that failed (an immutable file) still left a backup of a file it did not change."""
    long_name = tmp_path / ('\u65e5' * 83 + '.xml')         # 253 bytes: a valid name
    long_name.write_text(template())
    result = tune_file(long_name, check=False)
    assert not result.failed and "cache='none'" in long_name.read_text(), result.get('msg')
    linked = tmp_path / 'linked.xml'
    linked.write_text(template())
    os.link(linked, tmp_path / 'other-name.xml')
    for check in (True, False):
        result = tune_file(linked, check=check)
        assert result.failed and result['msg'].startswith('xml_path %s has 2 names (hard links)' % linked), result
    assert (tmp_path / 'other-name.xml').read_text() == linked.read_text() == template()
    frozen = tmp_path / 'frozen.xml'
    frozen.write_text(template())
    backups = tempfile.mkdtemp(prefix='kvmio-frozen-backups-')
    subprocess.run(['chattr', '+i', str(frozen)], check=True)
    try:
        result = tune_file(frozen, check=False, backup_dir=backups)
        assert result.failed and 'Operation not permitted. The file is unchanged.' in result['msg'], result['msg']
        # xml_path backups live in backup_dir/xml_path (apart from libvirt's domains): that directory may stay.
        left = [os.path.join(top, name) for top, _dirs, names in os.walk(backups) for name in names]
        assert left == [], 'a backup of an unchanged file was left'
    finally:
        subprocess.run(['chattr', '-i', str(frozen)], check=True)
        shutil.rmtree(backups)
    assert frozen.read_text() == template()


# --- M6: a bus change never hides the other functions of a multifunction slot ------------------

def test_a_disk_at_function_0_of_a_slot_a_nic_shares_stays_and_the_guest_sees_both(system_domains, tmp_path):
    """The review's M6: vdb (virtio, slot 5 function 0, multifunction) moved to SCSI left the NIC at
    function 1 alone on slot 5; QEMU showed "device 5, function 1" without a function 0, which Linux's
    PCI scan never reaches. Now vdb stays (with a warning), vda moves, and slot 5 keeps function 0."""
    import libvirt_qemu
    factory = system_domains
    os.chmod(factory.image_dir, 0o755)      # QEMU runs as libvirt-qemu under libvirtd
    name = factory.name('w2mf')
    disks = [dx.disk(factory.image(name + '-a.qcow2'), 'vda', 'virtio'),
             dx.disk(factory.image(name + '-b.qcow2'), 'vdb', 'virtio', extra=(
                 "<address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0' multifunction='on'/>"))]
    nic = ("<interface type='user'><model type='virtio'/><address type='pci' domain='0x0000' bus='0x00' "
           "slot='0x05' function='0x1'/></interface>")
    dom = factory.define(dx.domain(name, disks, extra_devices=nic))
    result = run_module(kvm_disk_tune, {'uri': 'qemu:///system', 'domains': [name], 'cache': 'keep', 'io': 'keep',
                                        'bus': 'scsi', 'convert_boot_disk': True, 'backup_dir': str(tmp_path / 'b')})
    assert not result.failed, result['msg']
    assert any('%s: disk vdb stays on bus virtio: it is function 0 of a multifunction PCI slot that interface '
               '(function 1) also uses' % name in w for w in result.warning_messages), '\n'.join(result.warning_messages)
    dom.create()
    try:
        pci = libvirt_qemu.qemuMonitorCommand(dom, 'info pci', libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)
    finally:
        dom.destroy()
    functions = {line.split('function')[1].split(':')[0].strip() for line in pci.splitlines()
                 if 'Bus  0, device   5, function' in line}
    assert functions == {'0', '1'}, pci


# --- the rules themselves -------------------------------------------------------------------------

def test_only_programs_only_root_can_change_are_trusted(nobody_home):
    from ansible_collections.kvmio.tuning.plugins.module_utils._trusted_binary import binary_problem
    root_dir = tempfile.mkdtemp(prefix='kvmio-bin-', dir='/var/tmp')
    os.chmod(root_dir, 0o755)
    try:
        os.symlink(QEMU, os.path.join(root_dir, 'kvm'))
        group_writable = os.path.join(root_dir, 'gw')
        with open(group_writable, 'w', encoding='utf-8') as handle:
            handle.write('#!/bin/sh\n')
        os.chmod(group_writable, 0o775)
        for path in (QEMU, os.path.join(root_dir, 'kvm')):
            assert binary_problem(path) is None, path
        for path, why in (('qemu-system-x86_64', 'is not an absolute path'),
                          ('/usr/bin/kvmio-no-such-qemu', 'No such file or directory'),
                          (group_writable, 'is writable by its group'),
                          ('/dev/null', 'not a regular file (a character device)'),
                          ('/usr/bin', 'not a regular file (a directory)'),
                          (os.path.join(nobody_home, 'x', '..', '..', '..', 'usr', 'bin', 'qemu-system-x86_64'),
                           '%s is owned by nobody (uid 65534)' % nobody_home)):
            problem = binary_problem(path)
            assert problem and why in problem, (path, problem)
    finally:
        shutil.rmtree(root_dir)


def test_qemu_conf_settings_are_copied_only_as_plain_one_line_values(tmp_path):
    from ansible_collections.kvmio.tuning.plugins.module_utils._define_check import mirrored_settings
    conf = tmp_path / 'qemu.conf'
    conf.write_text('# spice_tls = 0\nspice_tls = 1  # on\nvnc_tls=1\ncapability_filters = [ "a", "b" ]\n'
                    'security_driver = "none"\nbridge_helper = "/var/tmp/helper"\nnvram = [\n  "/x:/y"\n]\n'
                    'chardev_tls = [\n]\nnbd_tls = "1; rm -rf /"\n')
    notes = []
    assert mirrored_settings(str(conf), notes) == ['spice_tls = 1', 'vnc_tls = 1', 'capability_filters = [ "a", "b" ]']
    assert notes == ['define check: could not copy chardev_tls, nbd_tls from %s (only plain one-line values of the '
                     'expected type are copied); domains that depend on them may be judged as with libvirt\'s '
                     'defaults' % conf]
    fifo = tmp_path / 'fifo.conf'
    os.mkfifo(fifo)
    notes = []
    assert mirrored_settings(str(fifo), notes) == [] and 'is not a regular file' in notes[0]
    assert mirrored_settings(str(tmp_path / 'missing.conf'), []) == []


def test_a_rollback_never_overwrites_what_someone_else_changed_and_says_so(system_domains, tmp_path):
    """The other side of M1: a domain edited by someone else after this run defined it is not put back
    over that edit, and a backup that no longer holds what the run wrote is not used; both are named."""
    from ansible_collections.kvmio.tuning.plugins.module_utils._backup import write_backup
    from ansible_collections.kvmio.tuning.plugins.module_utils._define import roll_back
    from ansible_collections.kvmio.tuning.plugins.module_utils._disk_plan import TunePolicy, plan_domain
    from ansible_collections.kvmio.tuning.plugins.module_utils._disk_policy import DiskSettings
    from ansible_collections.kvmio.tuning.plugins.module_utils._libvirt import LibvirtClient
    factory = system_domains
    names = [factory.name('rb') for _index in range(3)]
    for name in names:
        factory.define(dx.domain(name, [dx.disk(factory.image(name + '.qcow2'), 'vda', 'virtio')]))
    policy = TunePolicy(settings=DiskSettings(cache='writeback', io='keep'))
    with LibvirtClient('qemu:///system') as client:
        doms = {name: client.lookup(name) for name in names}
        plans = [plan_domain(client.inactive_xml(doms[name]), policy) for name in names]
        backups = {plan.name: write_backup(str(tmp_path / 'b'), plan.name, plan.source, origin='qemu:///system')
                   for plan in plans}
        for plan in plans:
            plan.after = client.inactive_xml(client.define(plan.after, plan.name))     # this run's define
        edited = plans[1].after.replace('<memory unit', '<description>edited by hand</description><memory unit', 1)
        client.define(edited, names[1])
        with open(backups[names[2]], 'a', encoding='utf-8') as handle:
            handle.write('<!-- changed -->')
        rolled_back, failed = roll_back(client, doms, plans, backups)
        assert rolled_back == [names[0]]
        assert failed[names[1]].startswith('it was changed again by someone else after this run defined it')
        assert failed[names[2]] == 'its backup %s does not hold what this run wrote to it' % backups[names[2]]
        assert client.inactive_xml(doms[names[0]]) == plans[0].source
        assert 'edited by hand' in client.inactive_xml(doms[names[1]])
        assert "cache='writeback'" in client.inactive_xml(doms[names[2]])
