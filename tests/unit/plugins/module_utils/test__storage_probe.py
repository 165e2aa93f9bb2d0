# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The storage probe on real images made by qemu-img (the ramfs case is in tests/integration)."""

from __future__ import annotations

import os
import subprocess
import time

from ansible_collections.kvmio.tuning.plugins.module_utils._storage_probe import StorageProber, filesystem_of, \
    probe_odirect, read_mounts
from helpers import qemu_img


def test_probe_follows_the_backing_chain_with_relative_names(tmp_path):
    base = qemu_img.create(str(tmp_path / 'base.raw'), '8M', fmt='raw')
    mid = str(tmp_path / 'mid.qcow2')
    top = str(tmp_path / 'top.qcow2')
    qemu_img.create(mid, None, backing='base.raw', backing_format='raw')
    qemu_img.create(top, None, backing='mid.qcow2')
    facts = StorageProber().facts(top, 'qcow2')
    assert facts.kind == 'file' and facts.image_format == 'qcow2'
    assert facts.chain == (os.path.realpath(top), os.path.realpath(mid), os.path.realpath(base))
    assert facts.odirect is True, facts.detail      # /tmp here accepts O_DIRECT (ext4 or tmpfs >= 6.6)


def test_missing_backing_file_makes_the_probe_unsure(tmp_path):
    base = qemu_img.create(str(tmp_path / 'base.qcow2'), '8M')
    top = str(tmp_path / 'top.qcow2')
    qemu_img.create(top, None, backing=base)
    os.unlink(base)
    facts = StorageProber().facts(top, 'qcow2')
    assert facts.odirect is None
    assert facts.detail == 'backing file %s of %s is missing' % (os.path.realpath(base), os.path.realpath(top))


def test_missing_image(tmp_path):
    facts = StorageProber().facts(str(tmp_path / 'nope.qcow2'), 'qcow2')
    assert (facts.kind, facts.odirect) == ('missing', None)
    assert facts.detail.endswith('nope.qcow2 does not exist on this host')


def test_symlinked_image_is_probed_at_its_target(tmp_path):
    real = qemu_img.create(str(tmp_path / 'real.qcow2'), '8M')
    link = tmp_path / 'link.qcow2'
    link.symlink_to(real)
    facts = StorageProber().facts(str(link), 'qcow2')
    assert facts.path == str(link) and facts.chain == (os.path.realpath(real),)


def test_filesystem_of_picks_the_longest_mountpoint():
    mounts = [('/srv/fast', 'xfs'), ('/srv', 'ext4'), ('/', 'overlay')]
    assert filesystem_of('/srv/fast/a.qcow2', mounts) == ('/srv/fast', 'xfs')
    assert filesystem_of('/srv/fastlane/a.qcow2', mounts) == ('/srv', 'ext4')
    assert filesystem_of('/var/a.qcow2', mounts) == ('/', 'overlay')
    assert read_mounts(), 'this host has a mount table'


# --- issue 14, S3: bytes a guest wrote --------------------------------------------------------------------

def guest_header(path, backing, backing_format='raw'):
    """What a guest can write into its raw disk: a qcow2 header naming a backing file of its choice."""
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', backing, '-F', backing_format, '-u', path, '16M'],
                   check=True)
    return path


def test_a_raw_disk_is_opened_as_raw_whatever_its_bytes_say(tmp_path):
    secret = tmp_path / 'root-only.key'
    secret.write_bytes(b'\0' * 4096)
    disk = guest_header(str(tmp_path / 'guest.raw'), str(secret))
    for declared in ('raw', None):
        facts = StorageProber().facts(disk, declared)
        assert facts.chain == (os.path.realpath(disk),) and facts.image_format == 'raw'
        assert facts.odirect is True, facts.detail


def test_a_fifo_is_named_not_waited_on(tmp_path):
    fifo = str(tmp_path / 'pipe')
    os.mkfifo(fifo)
    overlay = guest_header(str(tmp_path / 'overlay.qcow2'), fifo)
    started = time.monotonic()
    facts = StorageProber(timeout=30).facts(overlay, 'qcow2')
    assert facts.odirect is None
    assert facts.detail == '%s is a FIFO, not a regular file or block device, so not an image' % fifo
    assert facts.chain == (os.path.realpath(overlay),)
    itself = StorageProber(timeout=30).facts(fifo, 'raw')
    assert itself.kind == 'unsupported' and itself.odirect is None
    assert probe_odirect(fifo) == (None, '%s is a FIFO, not a regular file or block device, so not an image' % fifo)
    assert time.monotonic() - started < 5, 'the probe waited on the FIFO'


def test_a_raw_backing_file_is_not_followed_whether_or_not_its_format_is_recorded(tmp_path):
    from ansible_collections.kvmio.tuning.plugins.module_utils._qcow2_header import decode_name, parse_header

    deeper = qemu_img.create(str(tmp_path / 'deeper.raw'), '8M', fmt='raw')
    middle = guest_header(str(tmp_path / 'middle.img'), deeper)      # a raw base whose bytes look like qcow2
    for recorded in (True, False):
        top = str(tmp_path / ('top-%s.qcow2' % recorded))
        qemu_img.create(top, None, backing=middle, backing_format='raw')
        if not recorded:
            qemu_img.drop_backing_format(top)
        with open(top, 'rb') as handle:
            head = handle.read(65536)
        offset, size = parse_header(head).backing_span()
        assert (decode_name(head[offset:offset + size]), parse_header(head).backing_format) == \
            (middle, 'raw' if recorded else None)
        facts = StorageProber().facts(top, 'qcow2')
        assert facts.chain == (os.path.realpath(top), os.path.realpath(middle)), 'the raw base was read as qcow2'


def test_a_probe_that_hangs_is_bounded_and_says_so(tmp_path):
    from ansible_collections.kvmio.tuning.plugins.module_utils._storage_probe import bounded

    fifo = str(tmp_path / 'pipe')
    os.mkfifo(fifo)
    started = time.monotonic()
    done, value = bounded(lambda: open(fifo, 'rb'), 1)     # a blocking open: what a hung NFS read looks like
    assert (done, value) == (False, None) and time.monotonic() - started < 3
    assert bounded(lambda: 42, 1) == (True, 42)


def test_an_external_data_file_is_probed_with_its_image(tmp_path):
    # The chain walk now goes past a layer with an external data file (issue 14, second review, M2):
    # the probe checks the data file too, as QEMU opens it with the image.
    data = tmp_path / 'disk.data'
    image = tmp_path / 'disk.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'data_file=%s' % data, str(image), '8M'],
                   check=True)
    facts = StorageProber().facts(str(image), 'qcow2')
    assert facts.odirect is True and facts.chain == (str(image),), facts
    data.unlink()
    os.mkfifo(data)
    facts = StorageProber().facts(str(image), 'qcow2')
    assert facts.odirect is None and 'is a FIFO' in facts.detail, facts


def test_lookups_name_every_step_links_followed(tmp_path):
    """What the bounded reader blames a hang on: the names on the way to a file, as the kernel looks
    them up (a link's target, then '..' from the real directory, not from the link's name)."""
    from ansible_collections.kvmio.tuning.plugins.module_utils._storage_probe import lookups

    real = tmp_path / 'real' / 'deep'
    real.mkdir(parents=True)
    (tmp_path / 'to-deep').symlink_to(real)
    steps = list(lookups(str(tmp_path / 'to-deep' / '..' / 'file')))
    assert str(tmp_path / 'to-deep') in steps, steps
    assert steps[-2:] == [str(real), str(tmp_path / 'real' / 'file')], steps


def test_a_bounded_reader_leaves_no_thread_behind():
    """The worker thread refers to its reader weakly: a reader no longer used stops its thread."""
    import gc
    import threading

    from ansible_collections.kvmio.tuning.plugins.module_utils._storage_probe import BoundedReads

    def probe_threads():
        return {t for t in threading.enumerate() if t.name == 'kvmio-probe'}

    gc.collect()
    before = probe_threads()
    reads = BoundedReads()
    assert reads.call('/', os.listdir, '/')[0] is True
    started = probe_threads() - before
    assert len(started) == 1
    del reads
    gc.collect()
    deadline = time.monotonic() + 5
    while any(t.is_alive() for t in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.is_alive() for t in started)
