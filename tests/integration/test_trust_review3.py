# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The third adversarial review of issue 14 (/work/review3-14-report.md, G1-G4), as the attacks happen:
an embedded libvirt root another user made (``setpriv --reuid=65534``), two libvirts holding a domain
with one name and UUID, a ``<backingStore>`` the domain XML declares, a world-writable directory above
an image directory. Each test failed on the code before its fix (refactor-15, 5111242).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

from helpers import domain_xml as dx
from helpers import embed
from helpers import qemu_img
from test_trust_review2 import NOBODY, QEMU, WRAPPER, as_nobody, module_process, nobody_home, world_writable_pool  # noqa: F401 pylint: disable=unused-import


def with_uuid(xml, name, value):
    return xml.replace('<name>%s</name>' % name, '<name>%s</name><uuid>%s</uuid>' % (name, value), 1)


def virsh(uri, *args):
    return subprocess.run(['virsh', '-q', '-c', uri] + list(args), check=True, capture_output=True, text=True).stdout


@pytest.fixture
def backup_dir():
    path = tempfile.mkdtemp(prefix='kvmio-r3-backups-')
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def embedded_roots():
    """Embedded libvirt roots of root's own (as the tests' other roots are), removed afterwards."""
    made = []

    def make():
        made.append(embed.make_root())
        return made[-1]
    yield make
    for root in made:
        shutil.rmtree(root, ignore_errors=True)


# --- G1 (a): an embedded root another user controls is never opened --------------------------------

def nobody_root(home, pwned):
    """nobody's embedded root: qemu.conf runs QEMU as root, and a domain whose emulator is nobody's script."""
    script = os.path.join(home, 'q')
    as_nobody('sh', '-c', 'printf "$1" > "$2" && chmod 755 "$2"', 'sh', WRAPPER % (pwned, QEMU), script)
    root = os.path.join(home, 'root')
    xml = with_uuid(dx.domain('r3-nb', [dx.disk('/nonexistent/r3.qcow2', 'vda', 'virtio')]), 'r3-nb',
                    str(uuid.uuid4())).replace('<emulator>%s</emulator>' % QEMU, '<emulator>%s</emulator>' % script)
    as_nobody('sh', '-c', 'mkdir -p "$1/etc/qemu" && printf "user = \\"root\\"\\ngroup = \\"root\\"\\n" > "$1/etc/qemu.conf"'
              ' && printf "%s" "$2" > "$1/etc/qemu/r3-nb.xml" && chmod -R a+rX "$1"', 'sh', root, xml)
    as_nobody('sh', '-c', ': > "$1" && chmod 666 "$1"', 'sh', pwned)
    return root


MODULE_RUNS = {
    'kvm_io_info': {},
    'kvm_disk_tune': {'probe_storage': False, 'cache': 'none'},
    'qcow2_create': {'state': 'absent'},
    'iothread_pin': {},
    'domain_restart': {'domains': ['r3-nb']},
}


@pytest.mark.parametrize('module_name', sorted(MODULE_RUNS))
def test_an_embedded_root_another_user_controls_is_refused_before_libvirt_opens_it(
        nobody_home, backup_dir, module_name):
    """G1: a module given ``qemu:///embed?root=DIR`` opened nobody's root as root: the embedded driver
    read nobody's qemu.conf (``user = "root"``) and probed the emulator of nobody's domain, so nobody's
    script ran as root, from a read-only module. Every module now refuses such a root before libvirt
    opens it, naming it, in every spelling that reaches the embedded driver."""
    pwned = os.path.join(nobody_home, 'pwned')
    root = nobody_root(nobody_home, pwned)
    for uri in ('qemu:///embed?root=%s' % root, 'qemu:/embed?root=%s' % root,
                'qemu:///%%65mbed?r%%6fot=%s;x=y' % root):
        args = dict(MODULE_RUNS[module_name], uri=uri)
        if module_name == 'kvm_disk_tune':
            args['backup_dir'] = backup_dir
        if module_name == 'qcow2_create':
            args['path'] = qemu_img.create(os.path.join(backup_dir, 'r3.qcow2'), '1M')
        result = module_process(module_name, args)
        assert result is not None, '%s hung' % module_name
        assert open(pwned).read() == '', 'root ran nobody\'s emulator: %s' % open(pwned).read()
        assert result.failed, result
        assert ("uri '%s': the embedded libvirt root %s: %s is owned by nobody (uid %d)"
                % (uri, root, nobody_home, NOBODY)) in result['msg'], result['msg']


def test_an_embedded_root_of_ours_with_a_qemu_conf_another_user_owns_is_refused(embedded_roots):
    """G1: the root's configuration is what decides as whom QEMU runs; a qemu.conf another user owns (or
    can write) is refused, naming it; a root that does not exist yet is made (0755) and opened."""
    root = embedded_roots()
    conf = os.path.join(root, 'etc', 'qemu.conf')
    os.chown(conf, NOBODY, NOBODY)
    uri = 'qemu:///embed?root=%s' % root
    result = module_process('kvm_io_info', {'uri': uri})
    assert result.failed and result['msg'].startswith(
        "uri '%s': the embedded libvirt root %s: %s: %s is owned by nobody" % (uri, root, conf, conf)), result['msg']
    os.chown(conf, 0, 0)
    os.chmod(os.path.join(root, 'etc'), 0o777)
    result = module_process('kvm_io_info', {'uri': uri})
    assert result.failed and "%s/etc is writable by others (mode 0777)" % root in result['msg'], result['msg']
    fresh = os.path.join(embedded_roots(), 'new')
    result = module_process('kvm_io_info', {'uri': 'qemu:///embed?root=%s' % fresh})
    assert not result.failed, result['msg']
    assert oct(os.stat(fresh).st_mode & 0o777) == oct(0o755)


# --- G1 (b): a backup goes back only into the libvirt it came from ----------------------------------

def twin(root, image):
    """Domain r3-twin, with one UUID in every root, its disk ``image``."""
    uri = 'qemu:///embed?root=%s' % root
    path = os.path.join(root, 'twin.xml')
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(with_uuid(dx.domain('r3-twin', [dx.disk(image, 'vda', 'virtio')]), 'r3-twin',
                               'a8d3bbf6-2c55-4d3c-9a0e-3e4f0b7c1d20'))
    virsh(uri, 'define', path)
    return uri


def test_a_backup_is_restored_only_into_the_libvirt_it_came_from(embedded_roots, backup_dir, tmp_path):
    """G1 (F2 class): backups were named by domain name only; domain_restore took the latest one for
    the name and checked name and UUID, neither secret. A backup of r3-twin in one libvirt (whose disk
    is a file root keeps to itself) was restored into another libvirt's r3-twin (same name and UUID).
    Each backup now records its libvirt; domain_restore passes over (domains) or refuses (backups) one
    of another libvirt, and one without the record unless allow_legacy_backups."""
    secret = qemu_img.create(str(tmp_path / 'secret.raw'), '16M', fmt='raw')
    mine = qemu_img.create(str(tmp_path / 'mine.qcow2'), '16M')
    other_uri = twin(embedded_roots(), secret)
    uri = twin(embedded_roots(), mine)
    before = virsh(uri, 'dumpxml', '--inactive', 'r3-twin')
    tuned = module_process('kvm_disk_tune', {'uri': other_uri, 'probe_storage': False, 'cache': 'none',
                                             'define_check': False, 'backup_dir': backup_dir})
    assert not tuned.failed and len(tuned['backups']) == 1, tuned.get('msg')
    backup = tuned['backups'][0]
    with open(backup, encoding='utf-8') as handle:
        assert handle.readline() == '<!-- kvmio.tuning backup of libvirt %s -->\n' % other_uri.replace('-', '%2D')
    by_name = module_process('domain_restore', {'uri': uri, 'domains': ['r3-twin'], 'backup_dir': backup_dir})
    assert by_name.failed and by_name['msg'] == (
        'no backup of domain r3-twin from libvirt %s in %s; passed over: %s: it is a backup of a domain of libvirt '
        '%s, not of %s (uri)' % (uri, backup_dir, backup, other_uri, uri)), by_name['msg']
    named = module_process('domain_restore', {'uri': uri, 'backups': [backup], 'backup_dir': backup_dir})
    assert named.failed and named['msg'] == (
        'backup %s of domain r3-twin is not restored: it is a backup of a domain of libvirt %s, not of %s (uri) '
        '(nothing was changed)' % (backup, other_uri, uri)), named['msg']
    assert virsh(uri, 'dumpxml', '--inactive', 'r3-twin') == before
    # Into the libvirt it came from (another spelling of it), it is restored.
    back = module_process('domain_restore', {'uri': other_uri.replace('qemu:///', 'qemu:/'), 'domains': ['r3-twin'],
                                             'backup_dir': backup_dir})
    assert not back.failed and back['changed'] and back['domains'][0]['restored_from'] == backup, back.get('msg')
    # A backup without the record (written before it existed): only with allow_legacy_backups.
    legacy = os.path.join(backup_dir, 'r3-twin.20000101T000000.000000Z.xml')
    with open(backup, encoding='utf-8') as handle:
        text = handle.read().split('\n', 1)[1]
    with open(legacy, 'w', encoding='utf-8') as handle:
        handle.write(text.replace('</name>', '</name><description>legacy</description>', 1))
    refused = module_process('domain_restore', {'uri': uri, 'backups': [legacy], 'backup_dir': backup_dir})
    assert refused.failed and 'it does not record which libvirt it came from' in refused['msg'], refused['msg']
    assert virsh(uri, 'dumpxml', '--inactive', 'r3-twin') == before
    allowed = module_process('domain_restore', {'uri': other_uri, 'backups': [legacy], 'backup_dir': backup_dir,
                                                'allow_legacy_backups': True})
    assert not allowed.failed and allowed['changed'], allowed.get('msg')
    # A second record (or one anywhere but the first line) is refused, not guessed at.
    with open(legacy, 'w', encoding='utf-8') as handle:
        handle.write('<!-- kvmio.tuning backup of libvirt %s -->\n<!-- kvmio.tuning backup of libvirt %s -->\n%s'
                     % (other_uri, uri, text))
    forged = module_process('domain_restore', {'uri': uri, 'backups': [legacy], 'backup_dir': backup_dir})
    assert forged.failed and 'holds "kvmio.tuning backup of" twice' in forged['msg'], forged['msg']
    assert virsh(uri, 'dumpxml', '--inactive', 'r3-twin') == before


# --- G2: a declared <backingStore> chain is used; an unresolvable volume makes users unknown ---------

def test_a_backing_store_the_domain_xml_declares_counts_as_used(tmp_path, private_libvirt):
    """G2: libvirt 9.0 keeps a <backingStore> the XML declares and QEMU opens it, whatever the top
    image's header says (none here); the usage walk read only headers, so state=absent removed the file
    the domain boots on (used_by []) and convert: true would have written a qcow2 header into what the
    domain reads as raw. Each declared level now counts, in its declared format."""
    base = qemu_img.create(str(tmp_path / 'base.raw'), '16M', fmt='raw')
    top = qemu_img.create(str(tmp_path / 'top.qcow2'), '16M')
    store = ("<backingStore type='file'><format type='raw'/><source file='%s'/><backingStore/></backingStore>" % base)
    xml = dx.domain('r3-bs', [dx.disk(top, 'vda', 'virtio', extra=store)])
    uri = private_libvirt(xml)
    assert "<source file='%s'/>" % base in virsh(uri, 'dumpxml', '--inactive', 'r3-bs'), 'libvirt dropped it'
    removed = module_process('qcow2_create', {'path': base, 'state': 'absent', 'uri': uri})
    assert removed.failed and removed['msg'].startswith('%s is a disk of domain r3-bs (through %s)' % (base, top)), \
        removed.get('msg') or removed
    assert os.path.exists(base)
    converted = module_process('qcow2_create', {'path': base, 'convert': True, 'uri': uri, '_ansible_check_mode': True})
    assert converted.failed and converted['msg'].startswith('%s is read as raw by domain r3-bs' % base), \
        converted.get('msg') or converted


def test_a_volume_libvirt_cannot_resolve_makes_users_unknown(tmp_path, private_libvirt):
    """G2 (related): a <disk type='volume'> whose pool or volume libvirt cannot resolve (here: the
    embedded driver has no such pool) was dropped without a word, so its file counted as unused. Its
    users are unknown now: removal needs force, naming the domain, pool and volume."""
    image = qemu_img.create(str(tmp_path / 'v.qcow2'), '16M')
    disk = ("<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>"
            "<source pool='r3pool' volume='v.qcow2'/><target dev='vda' bus='virtio'/></disk>")
    uri = private_libvirt(dx.domain('r3-vol', [disk]))
    removed = module_process('qcow2_create', {'path': image, 'state': 'absent', 'uri': uri})
    assert removed.failed and removed['msg'].startswith('cannot check whether a domain uses %s (' % image), \
        removed.get('msg') or removed
    assert "domain r3-vol, disk: volume 'v.qcow2' of pool 'r3pool' cannot be resolved to a file" in removed['msg'], \
        removed['msg']
    assert os.path.exists(image)


# --- G3: the F3 rule judges every directory from / down to the image ---------------------------------

@pytest.fixture
def world_writable_parent(world_writable_pool):
    """pool (0777, no sticky bit: shared by mistake) holding root's test/ and prod/ (each 0755)."""
    for name in ('test', 'prod'):
        os.mkdir(os.path.join(world_writable_pool, name), 0o755)
    return world_writable_pool


@pytest.mark.parametrize('options', [
    {'size': '16M', 'owner': str(NOBODY), 'mode': '0644'},
    {'size': '16M', 'mode': '0644'},
    {'size': '16M', 'group': str(NOBODY)},
])
def test_a_directory_others_can_write_above_the_image_directory_keeps_attributes_to_new_files(
        world_writable_parent, options):
    """G3: F3's rule looked only at the image's own directory (root's, 0755). nobody renamed prod/ to
    test/ in the 0777 pool above it, so pool/test/web.qcow2 became prod's 0600 image, and owner/mode
    requests made it nobody's and 0644 (nobody then read PRODDATA). Every directory from / down is
    judged now: the existing file keeps its owner and mode, and the run says why."""
    pool = world_writable_parent
    for name in ('test', 'prod'):
        image = qemu_img.create(os.path.join(pool, name, 'web.qcow2'), '16M')
        os.chmod(image, 0o600)
    with open(os.path.join(pool, 'prod', 'web.qcow2'), 'ab') as handle:
        handle.write(b'PRODDATA')
    prod = os.stat(os.path.join(pool, 'prod', 'web.qcow2'))
    as_nobody('sh', '-c', 'cd "$1" && mv test test.old && mv prod test', 'sh', pool)
    managed = os.path.join(pool, 'test', 'web.qcow2')
    for check in (False, True):
        result = module_process('qcow2_create', dict(options, path=managed, preallocation='off', uri='qemu:///system',
                                                     _ansible_check_mode=check))
        now = os.stat(managed)
        assert (now.st_ino, now.st_uid, now.st_gid, now.st_mode) == (prod.st_ino, prod.st_uid, prod.st_gid, prod.st_mode)
        assert result.failed and result['msg'].startswith(
            '%s lies in a directory another user can change (%s is writable by others (mode 0777))' % (managed, pool)), \
            result.get('msg')
    # A file this run creates there gets what was asked.
    created = os.path.join(pool, 'test', 'new.qcow2')
    made = module_process('qcow2_create', dict(path=created, size='8M', mode='0640', owner=str(NOBODY),
                                               uri='qemu:///system'))
    assert not made.failed and made['action'] == 'created', made.get('msg')
    assert (os.stat(created).st_uid, os.stat(created).st_mode & 0o777) == (NOBODY, 0o640)


# --- G4: a trusted-directory walk on a hung mount is a clear error, not a hung run -------------------

def test_directories_on_a_hung_mount_are_a_clear_error_not_a_hung_run(hung_mount, private_libvirt, tmp_path):
    """G4: every check of a backup, save or private directory (and kvm_io_bench's path) walks it with
    lstat; on a mount that never answers, private_directory, kvm_disk_tune (holding the host lock),
    domain_restore and kvm_io_bench hung for ever. The walk is bounded now (10 s)."""
    import time
    image = qemu_img.create(str(tmp_path / 'd.qcow2'), '16M')
    uri = private_libvirt(dx.domain('r3-hung', [dx.disk(image, 'vda', 'virtio')]))
    below = os.path.join(hung_mount, 'x')
    runs = [
        ('private_directory', {'path': below}, 'path %s' % below),
        ('kvm_disk_tune', {'uri': uri, 'probe_storage': False, 'cache': 'none', 'define_check': False,
                           'backup_dir': below}, 'cannot back up the XML of domain r3-hung'),
        ('domain_restore', {'uri': uri, 'domains': ['r3-hung'], 'backup_dir': below}, 'backup_dir'),
        ('kvm_io_bench', {'mode': 'host', 'path': below, '_ansible_check_mode': True}, 'path %s' % below),
    ]
    for module_name, args, what in runs:
        started = time.monotonic()
        result = module_process(module_name, args, timeout=60)
        assert result is not None, '%s hung on %s' % (module_name, below)
        assert time.monotonic() - started < 45, module_name
        assert result.failed and what in result['msg'] and 'did not finish within 10 s' in result['msg'], \
            (module_name, result['msg'])
