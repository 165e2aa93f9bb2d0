# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-image locks: removed when their run ends (one file per image path would pile up), and still
exclusive while runs come and go (issue 14, second review, L8)."""

from __future__ import annotations

import os
import subprocess
import sys

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
