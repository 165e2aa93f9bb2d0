# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Integration fixtures: each test runs on the embedded driver and on libvirtd."""

from __future__ import annotations

import ctypes
import os
import subprocess
import tempfile

import pytest

from helpers import embed


@pytest.fixture(params=[pytest.param('embed', marks=pytest.mark.embed), 'system'])
def libvirt_env(request, image_dir):
    """(uri, DomainFactory) on the embedded driver or on qemu:///system."""
    factory = request.getfixturevalue('embed_domains' if request.param == 'embed' else 'system_domains')
    os.chmod(image_dir, 0o755)    # QEMU runs as libvirt-qemu under libvirtd
    uri = request.getfixturevalue('embed_uri') if request.param == 'embed' else 'qemu:///system'
    return uri, factory


@pytest.fixture
def ramfs_dir():
    """A ramfs mount: it refuses O_DIRECT like ZFS before 2.3 and many FUSE filesystems do."""
    path = tempfile.mkdtemp(prefix='kvmio-ramfs-', dir='/var/tmp')
    subprocess.run(['mount', '-t', 'ramfs', '-o', 'mode=755', 'ramfs', path], check=True)
    yield path
    subprocess.run(['umount', '-l', path], check=False)
    os.rmdir(path)


@pytest.fixture
def hung_mount():
    """A FUSE mount whose daemon never answers, as a dead NFS server or a stuck FUSE daemon: every
    lookup under it waits (killably). Closing the device fd at the end aborts the waiting requests."""
    libc = ctypes.CDLL(None, use_errno=True)
    path = tempfile.mkdtemp(prefix='kvmio-hung-', dir='/var/tmp')
    fd = os.open('/dev/fuse', os.O_RDWR)
    options = b'fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other' % fd
    if libc.mount(b'kvmio-hung', path.encode(), b'fuse', 0, options) != 0:
        os.close(fd)
        pytest.fail('cannot mount a FUSE filesystem: %s' % os.strerror(ctypes.get_errno()))
    yield path
    os.close(fd)
    libc.umount2(path.encode(), 2)          # MNT_DETACH
    os.rmdir(path)


@pytest.fixture
def private_libvirt():
    """Domains defined on an embedded libvirt of this test's own (virsh in a child process; the module,
    run as a process, opens it after): for domains no other test on this host must meet (a disk on a
    hung mount, a chain too deep to read). Yields a function taking domain XMLs and returning the URI."""
    root = embed.make_root()
    uri = 'qemu:///embed?root=%s' % root

    def define(*xmls):
        for number, xml in enumerate(xmls):
            path = os.path.join(root, 'domain-%d.xml' % number)
            with open(path, 'w', encoding='utf-8') as handle:
                handle.write(xml)
            subprocess.run(['virsh', '-q', '-c', uri, 'define', path], check=True, capture_output=True)
        return uri
    yield define
    subprocess.run(['rm', '-rf', root], check=False)


# --- live apply (test_live_apply.py, test_live_apply_review.py) ----------------------------------------

@pytest.fixture
def save_dir(tmp_path):
    """kvm_disk_tune's save_dir for a pause (created by the module)."""
    return str(tmp_path / 'save')


@pytest.fixture
def domains(system_domains):
    """Domains on libvirtd, where QEMU runs as libvirt-qemu: the image directory must let it in."""
    os.chmod(system_domains.image_dir, 0o755)
    return system_domains
