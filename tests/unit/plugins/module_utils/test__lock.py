# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-image locks: removed when their run ends (one file per image path would pile up), and still
exclusive while runs come and go (issue 14, second review, L8)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._libvirt import lock_subject
from ansible_collections.kvmio.tuning.plugins.module_utils._lock import HostLock, lock_path

HOLD_AND_LOG = r'''
import os, sys, time
sys.path.insert(0, sys.argv[1])
from ansible_collections.kvmio.tuning.plugins.module_utils._lock import HostLock
subject, log, rounds = sys.argv[2], sys.argv[3], int(sys.argv[4])
for _round in range(rounds):
    with HostLock(subject, 60, remove=True):
        with open(log, 'a') as handle:
            handle.write('in %d\n' % os.getpid())
        time.sleep(0.002)
        with open(log, 'a') as handle:
            handle.write('out %d\n' % os.getpid())
'''


def test_image_locks_are_removed_and_stay_exclusive(tmp_path):
    subject = '/var/lib/libvirt/images/lock-test-%s.qcow2' % os.urandom(4).hex()
    with HostLock(subject, 5, remove=True):
        assert os.path.exists(lock_path(subject))
    assert not os.path.exists(lock_path(subject)), 'the lock file of an image stays behind'
    # Four processes take turns many times while each removes the file it held: never two at once.
    log = tmp_path / 'log'
    imports = os.environ['KVMIO_TEST_COLLECTIONS']
    procs = [subprocess.Popen([sys.executable, '-c', HOLD_AND_LOG, imports, subject, str(log), '40'])
             for _n in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    lines = log.read_text().splitlines()
    assert len(lines) == 4 * 40 * 2
    for first, second in zip(lines[::2], lines[1::2]):
        assert first.startswith('in ') and second == 'out ' + first[3:], 'two runs held the lock at once'
    assert not os.path.exists(lock_path(subject))
    # A URI lock (one per libvirt) stays: there are few, and other versions of the module expect it.
    with HostLock('qemu:///lock-test-%s' % os.urandom(4).hex(), 5) as held:
        path = held.path
    assert os.path.exists(path)
    os.unlink(path)


def test_one_libvirt_is_one_lock_whatever_its_uri_spelling():
    # Issue 18 review, F11: two runs on one libvirt must take turns, however each spells its URI.
    system = lock_subject('qemu:///system')
    assert system == 'qemu:///system'
    for spelling in ('qemu+unix:///system', 'qemu:///system/', 'qemu+ssh://localhost/system', 'QEMU+UNIX:///system',
                     'qemu:///system?socket=/run/libvirt/libvirt-sock', 'qemu+tcp://127.0.0.1/system'):
        assert lock_subject(spelling) == system, spelling
        assert lock_path(lock_subject(spelling)) == lock_path(system)
    assert lock_subject('qemu:///embed?root=/var/tmp/a/') == lock_subject('qemu:///embed?root=/var/tmp/a')
    # Other libvirts stay apart.
    for other in ('qemu:///session', 'qemu+ssh://kvm2/system', 'qemu:///embed?root=/var/tmp/b', 'test:///default'):
        assert lock_subject(other) != system, other
    assert lock_subject('qemu+ssh://kvm2/system') != lock_subject('qemu+ssh://kvm3/system')


@pytest.mark.parametrize('uri, root', [
    # libvirt 9.0 loads the embedded driver for each of these (tried): the path decoded, the host
    # ignored, parameters split on '&' and ';', '+' kept.
    ('qemu:///embed?root=/a/b/', '/a/b/'),
    ('qemu:/embed?root=/a;x=y', '/a'),
    ('qemu://host:9/%65mbed?r%6fot=/a+b', '/a+b'),
    ('qemu:///embed?root=%2Fa%2Fb#frag', '/a/b'),
    # Not loaded by libvirt, but checked all the same (harmless).
    ('QEMU+unix:///embed?ROOT=/x', '/x'),
    ('qemu:///system', None), ('qemu+ssh://h/system', None), ('test:///default', None), ('qemu:///embedx?root=/a', None),
])
def test_the_one_place_that_recognises_an_embedded_root(uri, root):
    from ansible_collections.kvmio.tuning.plugins.module_utils._libvirt import embedded_root
    assert embedded_root(uri) == root


@pytest.mark.parametrize('uri', ['qemu:///embed?root=/a&root=/b', 'qemu:///embed?root=/a%00b', 'qemu:///embed',
                                 'qemu:///embed?root=rel', 'qemu://[/embed?root=/x'])
def test_an_embedded_root_that_cannot_be_told_for_sure_is_refused(uri):
    from ansible_collections.kvmio.tuning.plugins.module_utils._errors import KvmioError
    from ansible_collections.kvmio.tuning.plugins.module_utils._libvirt import embedded_root
    with pytest.raises(KvmioError, match='embedded driver'):
        embedded_root(uri)
