# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The second adversarial review of issue 14 (/work/review2-14-report.md, F1-F10), as the attacks
happen: templates and files another user writes (``setpriv --reuid=65534``), planted links, renames in
world-writable directories, FUSE mounts that never answer, nested loop devices. Each test failed on
the code before its fix (main 81bd8ae).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from ansible_collections.kvmio.tuning.plugins.modules import kvm_disk_tune
from helpers import domain_xml as dx
from helpers.modules import run_module, run_module_bounded

NOBODY = 65534
QEMU = '/usr/bin/qemu-system-x86_64'
WRAPPER = '#!/bin/sh\nid >> %s\nexec %s "$@"\n'


def as_nobody(*argv, **kwargs):
    return subprocess.run(['setpriv', '--reuid=%d' % NOBODY, '--regid=%d' % NOBODY, '--clear-groups'] + list(argv),
                          check=True, **kwargs)


def write_as_nobody(path, text):
    as_nobody('sh', '-c', 'printf "%s" "$1" > "$2"', 'sh', text, str(path))


@pytest.fixture
def nobody_home():
    """A directory under /var/tmp that belongs to the unprivileged user (as their home would)."""
    path = tempfile.mkdtemp(prefix='kvmio-r2-nobody-', dir='/var/tmp')
    os.chown(path, NOBODY, NOBODY)
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def backup_dir():
    """Root's backup directory for these runs (0700)."""
    path = tempfile.mkdtemp(prefix='kvmio-r2-backups-')
    yield path
    shutil.rmtree(path, ignore_errors=True)


def template(name='web', emulator=QEMU, extra_devices='', disk='/var/lib/libvirt/images/web.qcow2'):
    return dx.domain(name, [dx.disk(disk, 'vda', 'virtio')], extra_devices=extra_devices).replace(
        '<emulator>%s</emulator>' % QEMU, '<emulator>%s</emulator>' % emulator)


def tune_file(path, backups, check=True, diff=False, **options):
    args = {'xml_path': str(path), 'probe_storage': False, 'cache': 'none', 'io': 'native', 'backup_dir': backups}
    args.update(options)
    return run_module(kvm_disk_tune, args, check_mode=check, diff=diff)


# --- F1: libvirt reads the string value of <emulator>; nothing a template names runs as root ---------

def test_markup_inside_emulator_never_makes_root_run_what_libvirt_reads(nobody_home, backup_dir):
    """F1: the check read ``<emulator>``'s first text node (``/etc/profile``, a root-owned regular file)
    while libvirt reads the whole string value (``/etc/profile.d/../../<nobody's dir>/q``): nobody's
    script ran as root, in check mode. A comment, a processing instruction and an element inside the
    emulator each split the path; every one is refused (unchecked, never probed), naming the markup."""
    pwned = os.path.join(nobody_home, 'pwned')
    script = os.path.join(nobody_home, 'q')
    as_nobody('sh', '-c', 'printf "$1" > "$2" && chmod 755 "$2"', 'sh', WRAPPER % (pwned, QEMU), script)
    climb = os.path.relpath(script, '/etc/profile.d')
    for markup, emulator in (('a comment', '/etc/profile<!---->.d/' + climb),
                             ('a processing instruction', '/etc/profile<?x?>.d/' + climb),
                             ('an element <x>', '/etc/profile<x>.d/</x>' + climb)):
        path = os.path.join(nobody_home, 'web.xml')
        write_as_nobody(path, template(emulator=emulator))
        for check in (True, False):
            result = tune_file(path, backup_dir, check=check)
            assert not result.failed, result['msg']
            assert not os.path.exists(pwned), 'root ran %s: %s' % (emulator, open(pwned).read())
            assert result['define_check']['checked'] == [], (emulator, result['define_check'])
            reason = result['define_check']['unchecked']['web']
            assert 'its <emulator> holds %s' % markup in reason, reason


def test_a_root_only_file_without_an_execute_bit_is_no_program(backup_dir, tmp_path):
    """F10/F1: any root-only regular file passed as a "program" (/etc/profile, mode 0644); it is not one."""
    path = tmp_path / 'web.xml'
    path.write_text(template(emulator='/etc/profile'))
    result = tune_file(path, backup_dir)
    assert not result.failed, result['msg']
    reason = result['define_check']['unchecked'].get('web', '')
    assert 'its emulator /etc/profile is not a program only root can change (/etc/profile is not a program ' \
           '(mode 0644: no execute bit))' in reason, result['define_check']


def test_the_check_probes_qemu_as_the_daemon_s_qemu_user_not_as_root(backup_dir, tmp_path):
    """F1 ("consider not probing as root at all"): the check's embedded libvirt ran QEMU's capability
    probe as root (``user = "+0"``); the daemon probes as its QEMU user. A root-only wrapper records who
    runs it."""
    import pwd
    expected = pwd.getpwnam('libvirt-qemu').pw_uid
    home = tempfile.mkdtemp(prefix='kvmio-r2-probe-', dir='/var/tmp')
    try:
        os.chmod(home, 0o755)
        ids = os.path.join(home, 'ids')
        with open(ids, 'w', encoding='utf-8'):
            pass
        os.chmod(ids, 0o666)
        wrapper = os.path.join(home, 'qemu-system-x86_64')
        with open(wrapper, 'w', encoding='utf-8') as handle:
            handle.write('#!/bin/sh\nid -u >> %s\nexec %s "$@"\n' % (ids, QEMU))
        os.chmod(wrapper, 0o755)
        path = tmp_path / 'web.xml'
        path.write_text(template(emulator=wrapper))
        result = tune_file(path, backup_dir)
        assert not result.failed, result['msg']
        assert result['define_check'] == {'checked': ['web'], 'unchecked': {}}, result['define_check']
        with open(ids, encoding='utf-8') as handle:
            seen = {int(line) for line in handle if line.strip()}
        assert seen == {expected}, 'the probe ran as uid %s' % sorted(seen)
    finally:
        shutil.rmtree(home)


# --- F2: a template's backup is never restored into a real domain ----------------------------------

INACTIVE_SECURE = 3         # VIR_DOMAIN_XML_SECURE | VIR_DOMAIN_XML_INACTIVE


def restore(args, check=False, diff=False):
    from ansible_collections.kvmio.tuning.plugins.modules import domain_restore
    return run_module(domain_restore, dict({'uri': 'qemu:///system'}, **args), check_mode=check, diff=diff)


@pytest.fixture
def pwned_log(nobody_home):
    """A file nobody's script appends to, whoever runs it (libvirtd's probes run as libvirt-qemu)."""
    path = os.path.join(nobody_home, 'pwned')
    as_nobody('sh', '-c', ': > "$1" && chmod 666 "$1"', 'sh', path)
    return path


def test_a_template_s_backup_is_never_restored_into_the_domain_it_names(
        system_domains, nobody_home, pwned_log, backup_dir):
    """F2: kvm_disk_tune wrote the backup of nobody's template (the real domain's name and UUID, an
    emulator of nobody's) into backup_dir beside the domains' backups; domain_restore domains:[X] then
    restored it into X, and libvirtd ran nobody's script at the define. The template's backups now live
    in backup_dir/xml_path, which domain_restore never reads and refuses when named."""
    factory = system_domains
    name = factory.name('r2-restore')
    dom = factory.define(dx.domain(name, [dx.disk(factory.image(name + '.qcow2'), 'vda', 'virtio')]))
    original = dom.XMLDesc(INACTIVE_SECURE)
    script = os.path.join(nobody_home, 'q')
    as_nobody('sh', '-c', 'printf "$1" > "$2" && chmod 755 "$2"', 'sh', WRAPPER % (pwned_log, QEMU), script)
    poisoned = original.replace('<emulator>%s</emulator>' % QEMU, '<emulator>%s</emulator>' % script)
    template_path = os.path.join(nobody_home, 'prod.xml')
    write_as_nobody(template_path, poisoned.replace('%', '%%'))
    tuned = tune_file(template_path, backup_dir, check=False)
    assert not tuned.failed and tuned['backups'], tuned.get('msg')
    by_name = restore({'domains': [name], 'backup_dir': backup_dir})
    assert open(pwned_log).read() == '', 'libvirtd ran nobody\'s script'
    assert dom.XMLDesc(INACTIVE_SECURE) == original
    assert by_name.failed and by_name['msg'] == 'no backup of domain %s from libvirt qemu:///system in %s' % (
        name, backup_dir), by_name['msg']
    assert os.path.dirname(tuned['backups'][0]) == os.path.join(backup_dir, 'xml_path'), tuned['backups']
    named = restore({'backups': tuned['backups'], 'backup_dir': backup_dir})
    assert named.failed and named['msg'].startswith('backup %s is the backup of an xml_path file' % tuned['backups'][0]), \
        named['msg']
    assert dom.XMLDesc(INACTIVE_SECURE) == original
    assert open(pwned_log).read() == '', 'libvirtd ran nobody\'s script'


def test_a_backup_naming_an_emulator_others_can_change_is_refused_unless_it_is_the_domain_s_own(
        system_domains, nobody_home, pwned_log, backup_dir):
    """F2: a backup in root's backup_dir whose emulator is another user's program (a template's backup
    written there before this fix, a file copied by hand) was restored, and libvirtd ran the program at
    the define. It is refused now, naming the emulator; a backup whose emulator is the one the domain
    already has (however it got it) is restored as before."""
    from ansible_collections.kvmio.tuning.plugins.module_utils._backup import write_backup
    factory = system_domains
    name = factory.name('r2-emu')
    dom = factory.define(dx.domain(name, [dx.disk(factory.image(name + '.qcow2'), 'vda', 'virtio')]))
    original = dom.XMLDesc(INACTIVE_SECURE)
    script = os.path.join(nobody_home, 'q')
    as_nobody('sh', '-c', 'printf "$1" > "$2" && chmod 755 "$2"', 'sh', WRAPPER % (pwned_log, QEMU), script)
    planted = write_backup(backup_dir, name, original.replace('<emulator>%s</emulator>' % QEMU,
                                                              '<emulator>%s</emulator>' % script),
                           origin='qemu:///system')
    for args in ({'domains': [name]}, {'backups': [planted]}):
        for check in (True, False):
            result = restore(dict(args, backup_dir=backup_dir), check=check)
            assert result.failed and result['msg'].startswith(
                'backup %s of domain %s is not restored: its emulator %s is not a program only root can change'
                % (planted, name, script)), result.get('msg')
    assert dom.XMLDesc(INACTIVE_SECURE) == original
    assert open(pwned_log).read() == '', 'libvirtd ran nobody\'s script'
    os.unlink(planted)
    # The domain's own emulator (group-writable, so not trusted, but already the one libvirt runs).
    shared = tempfile.mkdtemp(prefix='kvmio-r2-emu-', dir='/var/tmp')
    try:
        os.chmod(shared, 0o755)
        loose = os.path.join(shared, 'qemu')
        with open(loose, 'w', encoding='utf-8') as handle:
            handle.write('#!/bin/sh\nexec %s "$@"\n' % QEMU)
        os.chmod(loose, 0o775)
        current = original.replace('<emulator>%s</emulator>' % QEMU, '<emulator>%s</emulator>' % loose)
        factory.conn.defineXML(current)
        held = dom.XMLDesc(INACTIVE_SECURE)
        backup = write_backup(backup_dir, name, held.replace('</name>', '</name><description>restored</description>'),
                              origin='qemu:///system')
        done = restore({'backups': [backup], 'backup_dir': backup_dir})
        assert not done.failed and done['changed'], done.get('msg')
        assert '<emulator>%s</emulator>' % loose in dom.XMLDesc(INACTIVE_SECURE)
        assert '<description>restored</description>' in dom.XMLDesc(INACTIVE_SECURE)
    finally:
        shutil.rmtree(shared)


# --- F3: owner, group and mode only for files this run created, where others can rename --------------

def qcow2(path, check=False, **options):
    from ansible_collections.kvmio.tuning.plugins.modules import qcow2_create
    return run_module(qcow2_create, dict({'path': str(path), 'uri': 'qemu:///system'}, **options), check_mode=check)


def file_state(path):
    st = os.stat(path)
    return st.st_ino, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


@pytest.fixture
def world_writable_pool():
    """An image directory anyone can write (0777, no sticky bit: a pool shared by mistake)."""
    parent = tempfile.mkdtemp(prefix='kvmio-r2-pool-', dir='/var/tmp')
    os.chmod(parent, 0o755)
    pool = os.path.join(parent, 'pool')
    os.mkdir(pool)
    os.chmod(pool, 0o777)
    yield pool
    shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.parametrize('options', [
    {'size': '16M', 'owner': str(NOBODY), 'mode': '0644'},
    {'size': '16M', 'mode': '0644'},
    {'size': '16M', 'group': str(NOBODY)},
    {'convert': True, 'mode': '0644', 'source_format': 'raw'},
])
def test_a_file_another_user_renamed_into_the_image_name_keeps_its_owner_and_mode(world_writable_pool, options):
    """F3: in a directory others can write, nobody renamed root's 0600 image (another domain's disk)
    to the name of the image the run manages; owner/mode requests then made it nobody's, or 0644, and
    convert gave its copy the requested mode. Owner, group and mode are now given only to files the run
    creates there; for an existing file the run refuses, naming the directory."""
    from helpers import qemu_img
    victim = os.path.join(world_writable_pool, 'victim.raw')
    managed = os.path.join(world_writable_pool, 'web.raw')
    qemu_img.create(victim, '16M', fmt='raw')
    qemu_img.create(managed, '16M', fmt='raw')
    os.chmod(victim, 0o600)
    os.chmod(managed, 0o600)
    before = file_state(victim)
    as_nobody('sh', '-c', 'cd "$1" && mv web.raw .gone && mv victim.raw web.raw', 'sh', world_writable_pool)
    for check in (False, True):
        result = qcow2(managed, check=check, preallocation='off', **options)
        now = file_state(managed)
        assert (now[1:] == before[1:]), 'the renamed file became %s' % (now,)
        assert result.failed and result['msg'].startswith(
            '%s lies in a directory another user can change (%s is writable by others (mode 0777))'
            % (managed, world_writable_pool)), result.get('msg')
    # A file this run creates there gets what was asked.
    created = os.path.join(world_writable_pool, 'new.qcow2')
    made = qcow2(created, size='8M', mode='0640', owner=str(NOBODY))
    assert not made.failed and made['action'] == 'created', made.get('msg')
    assert file_state(created)[1:] == (NOBODY, 0, 0o640)


# --- F4: a file behind a json: backing name is used ---------------------------------------------------

module_process = run_module_bounded      # also imported by test_trust_review3


def json_overlay(path, description, backing_format='raw'):
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-u', '-b', 'json:' + description, '-F', backing_format,
                    str(path), '16M'], check=True)
    return str(path)


def test_a_file_behind_a_json_backing_name_counts_as_used(tmp_path, private_libvirt):
    """F4: a qcow2 whose backing name is json:{"driver":"raw","file":{"driver":"file","filename":...}}
    boots under libvirt 9.0 on that file, but the usage walk took every protocol-like name for a remote
    one: state=absent removed the file (used_by []) and convert: true converted it under the domain.
    The name is read as libvirt reads it: the nested form, the flattened one and the file wrapper all
    name the file; a JSON name libvirt would not read, or a prefix that is no network protocol, makes
    the users unknown."""
    from helpers import qemu_img
    hidden = qemu_img.create(str(tmp_path / 'hidden.raw'), '16M', fmt='raw')
    flat = qemu_img.create(str(tmp_path / 'flat.raw'), '16M', fmt='raw')
    wrapped = qemu_img.create(str(tmp_path / 'wrapped.raw'), '16M', fmt='raw')
    uri = private_libvirt(
        dx.domain('nested', [dx.disk(json_overlay(tmp_path / 'nested.qcow2',
                                                  '{"driver":"raw","file":{"driver":"file","filename":"%s"}}' % hidden),
                                     'vda', 'virtio')]),
        dx.domain('flat', [dx.disk(json_overlay(tmp_path / 'flat.qcow2',
                                                '{"driver":"raw","file.driver":"file","file.filename":"%s"}' % flat),
                                   'vda', 'virtio')]),
        dx.domain('wrapped', [dx.disk(json_overlay(tmp_path / 'wrapped.qcow2',
                                                   '{"file":{"driver":"file","filename":"%s"}}' % wrapped),
                                      'vda', 'virtio')]))
    for path, domain in ((hidden, 'nested'), (flat, 'flat'), (wrapped, 'wrapped')):
        removed = module_process('qcow2_create', {'path': path, 'state': 'absent', 'uri': uri})
        assert removed.failed and removed['msg'].startswith('%s is a disk of domain %s (through ' % (path, domain)), \
            removed.get('msg') or removed
        converted = module_process('qcow2_create', {'path': path, 'convert': True, 'uri': uri,
                                                    '_ansible_check_mode': True})
        assert converted.failed and converted['msg'].startswith('%s is read as raw by domain %s' % (path, domain)), \
            converted.get('msg') or converted
        assert os.path.exists(path)


def test_a_backing_name_libvirt_would_not_read_makes_users_unknown(tmp_path, private_libvirt):
    from helpers import qemu_img
    loose = qemu_img.create(str(tmp_path / 'loose.raw'), '16M', fmt='raw')
    for number, name in enumerate(('json:{"driver":"qcow2","file":{"driver":"file","filename":"%s"}}' % loose,
                                   'file:%s' % loose)):
        top = tmp_path / ('odd-%d.qcow2' % number)
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-u', '-b', name, '-F', 'raw', str(top), '16M'],
                       check=True)
        uri = private_libvirt(dx.domain('odd-%d' % number, [dx.disk(str(top), 'vda', 'virtio')]))
        removed = module_process('qcow2_create', {'path': loose, 'state': 'absent', 'uri': uri})
        assert removed.failed and removed['msg'].startswith('cannot check whether a domain uses %s (' % loose), \
            removed.get('msg') or removed
        assert 'domain odd-%d, disk %s: %s names %s as its backing file: ' % (number, top, top, name) \
            in removed['msg'], removed['msg']
        assert os.path.exists(loose)


# --- F5: no secret in any diff: URL queries, kernel command lines, text after markup ------------------

def secret_domain(name, disk, secret, comment=False):
    """A domain whose network disk URL carries a token, whose kernel command line carries a password, and
    (in a file) whose OEM string hides its secret after a comment."""
    oem = 'OEM-<!-- a note -->TAIL-%s' % secret if comment else 'OEM-TAIL-%s' % secret
    network = ("<disk type='network' device='cdrom'><driver name='qemu' type='raw'/>"
               "<source protocol='https' name='/images/seed.iso' query='token=QUERY-%s'>"
               "<host name='images.example.com' port='443'/></source><target dev='sda' bus='sata'/><readonly/></disk>"
               % secret)
    xml = dx.domain(name, [dx.disk(disk, 'vda', 'virtio'), network],
                    metadata="\n  <sysinfo type='smbios'><oemStrings><entry>%s</entry></oemStrings></sysinfo>" % oem)
    return xml.replace("<boot dev='hd'/>", "<kernel>/boot/vmlinuz-kvmio-test</kernel>"
                                           "<cmdline>console=ttyS0 rootpw=CMDLINE-%s</cmdline>" % secret)


def test_diffs_never_carry_url_tokens_kernel_command_lines_or_text_after_a_comment(
        system_domains, backup_dir, tmp_path):
    """F5: <source query='token=...'> and <os><cmdline> were shown in the diffs of kvm_disk_tune,
    iothread_pin and domain_restore, and the text after a comment inside a redacted element
    (``<entry>OEM-<!-- -->TAIL-SECRET</entry>``) in an xml_path diff."""
    from ansible_collections.kvmio.tuning.plugins.modules import iothread_pin
    import json
    secret = os.urandom(6).hex()
    name = system_domains.name('r2-secrets')
    dom = system_domains.define(secret_domain(name, system_domains.image(name + '.qcow2'), secret))
    held = dom.XMLDesc(INACTIVE_SECURE)
    assert 'QUERY-%s' % secret in held and 'CMDLINE-%s' % secret in held, held
    args = {'uri': 'qemu:///system', 'domains': [name], 'backup_dir': backup_dir, 'probe_storage': False}
    tuned = run_module(kvm_disk_tune, dict(args, cache='writeback'), diff=True)
    pinned = run_module(iothread_pin, {'uri': 'qemu:///system', 'domains': [name], 'backup_dir': backup_dir},
                        diff=True)
    restored = restore({'backups': tuned['backups'][:1], 'backup_dir': backup_dir}, diff=True)
    template = tmp_path / 'template.xml'
    template.write_text(secret_domain('template', str(tmp_path / 'disk.qcow2'), secret, comment=True))
    in_file = tune_file(template, backup_dir, check=False, diff=True, cache='writeback', io='threads')
    for result in (tuned, pinned, restored, in_file):
        assert not result.failed and result['diff'], result.get('msg')
        assert secret not in json.dumps(result['diff']), 'a secret reached the diff: %s' % json.dumps(result['diff'])
    assert 'TAIL-%s' % secret in template.read_text(), 'the file itself keeps its secrets'
    changed = [line for line in in_file['diff'][0]['after'].splitlines()
               if line not in in_file['diff'][0]['before'].splitlines()]
    assert changed and all('<driver' in line for line in changed), changed


# --- F6: a hang is blamed on the mount that hung; xml_path on a hung mount is bounded -----------------

@pytest.mark.parametrize('through', ['name', 'local link'])
def test_a_hang_behind_a_local_overlay_blocks_only_the_mount_that_hung(tmp_path, hung_mount, private_libvirt, through):
    """F6: a domain's local overlay whose backing file is on a dead mount: the walk timed out, and the
    hang was put on the overlay's own mount (/), so every later read on / was refused: a list creating
    a new image beside an existing one failed with "not read: an earlier read on / did not finish".
    Only the mount that hung is given up on now, also when the backing name is a local link into it."""
    import time
    from helpers import qemu_img
    overlay = tmp_path / 'far-overlay.qcow2'
    base = os.path.join(hung_mount, 'base.qcow2')
    if through == 'local link':
        os.symlink(base, str(tmp_path / 'base-link.qcow2'))
        base = str(tmp_path / 'base-link.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-u', '-b', base,
                    '-F', 'qcow2', str(overlay), '16M'], check=True)
    uri = private_libvirt(dx.domain('far', [dx.disk(str(overlay), 'vda', 'virtio')]))
    existing = qemu_img.create(str(tmp_path / 'unrelated.qcow2'), '8M')
    new = str(tmp_path / 'new2.qcow2')
    started = time.monotonic()
    result = module_process('qcow2_create', {'images': [{'path': existing, 'size': '8M'}, {'path': new, 'size': '8M'}],
                                             'preallocation': 'off', 'uri': uri}, timeout=120)
    assert result is not None and time.monotonic() - started < 60
    assert not result.failed, result['msg']
    assert [image['action'] for image in result['images']] == ['none', 'created']
    warned = ' '.join(result.warning_messages)
    assert 'domain far, disk %s: the read of %s did not finish within 10 s' % (overlay, base) in warned, warned


def test_xml_path_on_a_hung_mount_is_a_clear_error_not_a_hung_run(hung_mount, backup_dir):
    """F6: xml_path on a mount that never answers hung the module forever (its walk and read were not
    bounded)."""
    import time
    started = time.monotonic()
    path = os.path.join(hung_mount, 'web.xml')
    result = module_process('kvm_disk_tune', {'xml_path': path, 'probe_storage': False, 'backup_dir': backup_dir},
                            timeout=40)
    assert result is not None, 'the module hung on %s' % path
    assert time.monotonic() - started < 35
    assert result.failed and result['msg'].startswith('xml_path %s: the read of %s did not finish within 10 s'
                                                      % (path, path)), result['msg']


# --- F7: kvm_io_bench mode=host follows only links root or the running user made -------------------

def test_bench_never_follows_a_link_another_user_planted_for_path(nobody_home):
    """F7: ``path`` was resolved with realpath: nobody's link to a root-only directory made root create
    its work directory and scratch images there (and check free space there). The link is refused now,
    in check mode too, and nothing is written; root's own link is followed as before."""
    from ansible_collections.kvmio.tuning.plugins.modules import kvm_io_bench
    target = tempfile.mkdtemp(prefix='kvmio-r2-rootonly-', dir='/var/tmp')
    try:
        link = os.path.join(nobody_home, 'pool')
        as_nobody('ln', '-s', target, link)
        for check in (True, False):
            result = run_module(kvm_io_bench, {'path': link, 'count': 10, 'size': '16M', 'caches': ['writeback'],
                                               'workloads': ['write'], 'preallocations': ['off']}, check_mode=check)
            assert result.failed and result['msg'].startswith('path %s is not followed: the link %s' % (link, link)), \
                result['msg']
            assert 'nothing was written' in result['msg']
            assert os.listdir(target) == [], 'root wrote through nobody\'s link'
        own = os.path.join(target, 'own-link')
        os.symlink(target, own)
        result = run_module(kvm_io_bench, {'path': own, 'count': 10, 'size': '16M', 'caches': ['writeback'],
                                           'workloads': ['write'], 'preallocations': ['off']}, check_mode=True)
        assert not result.failed, result['msg']
    finally:
        shutil.rmtree(target, ignore_errors=True)


# --- F8: files a domain uses through stacked block devices, and the host files it boots from ---------

def losetup(*args):
    return subprocess.run(['losetup', '-f', '--show'] + list(args), check=True, capture_output=True,
                          text=True).stdout.strip()


def test_a_file_behind_stacked_loop_devices_counts_as_used(tmp_path, private_libvirt):
    """F8: a domain on /dev/loopB whose backing file is /dev/loopA, backed by base.raw: state=absent
    removed base.raw (only the first loop device was read). Loops on loops are followed now, as are
    partitions (the disk they are on) and /sys/block/*/slaves (device-mapper, md), which this host
    cannot make (no partition scan of loop devices, no device-mapper)."""
    from helpers import qemu_img
    base = qemu_img.create(str(tmp_path / 'base.raw'), '32M', fmt='raw')
    devices = []
    try:
        devices.append(losetup(base))
        devices.append(losetup(devices[0]))
        devices.append(losetup(devices[1]))
        uri = private_libvirt(
            dx.domain('stacked', [dx.disk(devices[1], 'vda', 'virtio', fmt='raw', source_type='block')]),
            dx.domain('deeper', [dx.disk(devices[2], 'vda', 'virtio', fmt='raw', source_type='block')]))
        removed = module_process('qcow2_create', {'path': base, 'state': 'absent', 'uri': uri})
        assert removed.failed and removed['msg'].startswith('%s is a disk of domain ' % base), \
            removed.get('msg') or removed
        for domain in ('deeper', 'stacked'):
            assert '%s (through %s (a loop device on %s))' % (domain, devices[0], base) in removed['msg'], \
                removed['msg']
        converted = module_process('qcow2_create', {'path': base, 'convert': True, 'uri': uri,
                                                    '_ansible_check_mode': True})
        assert converted.failed and converted['msg'].startswith('%s is read as raw by domain ' % base), \
            converted.get('msg') or converted
        assert os.path.exists(base)
    finally:
        for device in reversed(devices):
            subprocess.run(['losetup', '-d', device], check=False)


def test_the_firmware_nvram_kernel_and_initrd_of_a_domain_count_as_used(tmp_path, private_libvirt):
    """F8: a defined UEFI domain's <nvram> file was removable (state=absent: removed, used_by []), and so
    were its loader, kernel and initrd. Each is a file of that domain now, for removal and conversion."""
    from helpers import qemu_img
    files = {role: qemu_img.create(str(tmp_path / name), '1M', fmt='raw') for role, name in (
        ('loader', 'CODE.fd'), ('NVRAM', 'uefi_VARS.fd'), ('NVRAM template', 'VARS.fd'), ('kernel', 'vmlinuz'),
        ('initrd', 'initrd.img'))}
    boot = ("<loader readonly='yes' type='pflash'>%s</loader><nvram template='%s'>%s</nvram>"
            "<kernel>%s</kernel><initrd>%s</initrd>"
            % (files['loader'], files['NVRAM template'], files['NVRAM'], files['kernel'], files['initrd']))
    # libvirt refuses UEFI without ACPI on x86_64.
    xml = dx.domain('uefi').replace("<boot dev='hd'/></os>", boot + '</os><features><acpi/></features>')
    uri = private_libvirt(xml)
    for role, path in files.items():
        removed = module_process('qcow2_create', {'path': path, 'state': 'absent', 'uri': uri})
        assert removed.failed and removed['msg'] == (
            '%s is a file of domain uefi (as its %s); remove it from the domain first, or set force=true'
            % (path, role)), removed.get('msg') or removed
        assert os.path.exists(path)
    converted = module_process('qcow2_create', {'path': files['NVRAM'], 'convert': True, 'uri': uri})
    assert converted.failed and converted['msg'].startswith(
        '%s is read as raw by domain uefi (as its NVRAM)' % files['NVRAM']), converted.get('msg') or converted


# --- F9: the playbooks' private directories follow the one rule, every ancestor checked --------------

def test_a_report_directory_below_a_directory_others_can_change_is_refused(tmp_path):
    """F9: tasks/private_directory.yml checked only the immediate parent: with the report directory at
    /x/gp/reports/kvm, gp 0777 and reports root's, it passed and made the directory; nobody could later
    rename reports and put a link in its place before the report files were written. The play now runs
    kvmio.tuning.private_directory (the rule of _trusted_files): every directory and link from / down."""
    from helpers.playbook import REPO, run_playbook
    base = tempfile.mkdtemp(prefix='kvmio-r2-f9-', dir='/var/tmp')
    try:
        os.chmod(base, 0o755)
        open_dir = os.path.join(base, 'gp')
        os.mkdir(open_dir)
        os.chmod(open_dir, 0o777)
        os.mkdir(os.path.join(open_dir, 'reports'), 0o755)
        sticky = os.path.join(base, 'tmp')
        os.mkdir(sticky)
        os.chmod(sticky, 0o1777)
        play = tmp_path / 'private.yml'
        play.write_text('- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n'
                        '    - ansible.builtin.include_tasks: %s/playbooks/tasks/private_directory.yml\n' % REPO)
        deep = os.path.join(open_dir, 'reports', 'kvm')
        result = run_playbook(str(play), tmp_path, {'kvmio_private_dir': deep})
        assert result['rc'] != 0 and 'is not safe to write to: %s is writable by others' % open_dir in result['stdout'], \
            result['stdout'][-3000:]
        assert not os.path.exists(deep)
        mine = os.path.join(sticky, 'mine', 'reports')
        assert run_playbook(str(play), tmp_path, {'kvmio_private_dir': mine}, check=True)['rc'] == 0
        assert not os.path.exists(os.path.dirname(mine)), 'check mode made a directory'
        result = run_playbook(str(play), tmp_path, {'kvmio_private_dir': mine})
        assert result['rc'] == 0, result['stdout'][-3000:]
        for path in (os.path.dirname(mine), mine):
            info = os.lstat(path)
            assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) == 0o700
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_private_directory_closes_a_directory_of_ours_and_refuses_one_others_can_write(tmp_path):
    from ansible_collections.kvmio.tuning.plugins.modules import private_directory
    ours = tmp_path / 'ours'
    ours.mkdir(mode=0o755)
    os.chmod(ours, 0o755)
    checked = run_module(private_directory, {'path': str(ours)}, check_mode=True, diff=True)
    assert checked['changed'] and checked['done'] == 'tightened' and stat.S_IMODE(os.stat(ours).st_mode) == 0o755
    made = run_module(private_directory, {'path': str(ours)})
    assert made['changed'] and stat.S_IMODE(os.stat(ours).st_mode) == 0o700
    again = run_module(private_directory, {'path': str(ours)})
    assert not again['changed'] and again['done'] is None and again['path'] == str(ours)
    open_dir = tmp_path / 'open'
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    refused = run_module(private_directory, {'path': str(open_dir)})
    assert refused.failed and refused['msg'].startswith('%s is not safe to write to: %s is writable by others'
                                                        % (open_dir, open_dir)), refused['msg']
    assert stat.S_IMODE(os.stat(open_dir).st_mode) == 0o777
