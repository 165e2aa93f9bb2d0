# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Walking backing chains on real files without trusting them: formats, loops, FIFOs, QEMU's locks."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._errors import PlanError
from ansible_collections.kvmio.tuning.plugins.module_utils._image_chain import open_file, qemu_holds, walk_chain


def qcow2(path, backing=None, backing_format='qcow2', size='8M'):
    argv = ['qemu-img', 'create', '-q', '-f', 'qcow2']
    if backing:
        argv += ['-u', '-b', backing, '-F', backing_format]
    subprocess.run(argv + [str(path), size], check=True)
    return str(path)


def test_a_chain_with_formats_from_the_headers(tmp_path):
    base = str(tmp_path / 'base.raw')
    with open(base, 'wb') as handle:
        handle.truncate(8 << 20)
    middle = qcow2(tmp_path / 'middle.qcow2', 'base.raw', 'raw')
    top = qcow2(tmp_path / 'top.qcow2', middle)
    chain = walk_chain(top, 'qcow2')
    try:
        assert [(os.path.basename(layer.path), layer.fmt) for layer in chain.layers] == [
            ('top.qcow2', 'qcow2'), ('middle.qcow2', 'qcow2'), ('base.raw', 'raw')]
        node = json.loads(chain.spec()[len('json:'):])
        base_node = {'driver': 'raw', 'file': {'driver': 'file', 'filename': chain.layers[2].fd_path}}
        assert node['backing']['backing'] == base_node
        assert 'backing' not in json.loads(chain.spec(backing=False)[len('json:'):])
        assert json.loads(chain.spec(start=1)[len('json:'):])['file']['filename'] == chain.layers[1].fd_path
    finally:
        chain.close()
    assert all(layer.fd == -1 for layer in chain.layers)


def test_a_raw_layer_ends_the_chain_whatever_its_bytes_say(tmp_path):
    fake = qcow2(tmp_path / 'guest.raw', 'nbd://127.0.0.1:1', 'raw')      # a header a guest wrote
    chain = walk_chain(fake, 'raw')
    assert len(chain.layers) == 1 and chain.top.header is None
    chain.close()


@pytest.mark.parametrize('make, message', [
    (lambda d: qcow2(d / 'a.qcow2', 'b.qcow2') and qcow2(d / 'b.qcow2', 'a.qcow2'), 'loops at'),
    (lambda d: qcow2(d / 'a.qcow2', 'nbd://10.0.0.1:10809', 'raw'), 'which is not a local file'),
    (lambda d: qcow2(d / 'a.qcow2', 'gone.qcow2'), 'backing file %s/gone.qcow2 of %s/a.qcow2 is missing'),
    (lambda d: os.mkfifo(d / 'fifo') or qcow2(d / 'a.qcow2', 'fifo', 'raw'), 'fifo is a FIFO, not a regular file'),
    (lambda d: os.mkdir(d / 'dir') or qcow2(d / 'a.qcow2', 'dir', 'raw'), 'dir is a directory, not an image file'),
    (lambda d: qcow2(d / 'a.qcow2', '/dev/zero', 'raw'), '/dev/zero is a character device'),
    (lambda d: qcow2(d / 'a.qcow2', 'a.qcow2'), 'loops at'),
])
def test_what_cannot_be_followed_safely_is_refused(tmp_path, make, message):
    make(tmp_path)
    started = time.monotonic()
    with pytest.raises(PlanError) as err:
        walk_chain(str(tmp_path / 'a.qcow2'), 'qcow2')
    assert message.replace('%s', str(tmp_path)) in err.value.msg, err.value.msg
    assert time.monotonic() - started < 5
    loose = walk_chain(str(tmp_path / 'a.qcow2'), 'qcow2', strict=False)     # the usage index: stop, do not fail
    assert loose.layers[0].path == str(tmp_path / 'a.qcow2')
    loose.close()


def test_a_long_chain_is_bounded(tmp_path):
    previous = qcow2(tmp_path / 'l0.qcow2')
    for n in range(1, 6):
        previous = qcow2(tmp_path / ('l%d.qcow2' % n), os.path.basename(previous))
    with pytest.raises(PlanError) as err:
        walk_chain(previous, 'qcow2', max_depth=4)
    assert 'is longer than 4 files' in err.value.msg


def test_open_file_refuses_special_files_before_opening_them(tmp_path):
    os.mkfifo(tmp_path / 'fifo')
    for path, kind in ((tmp_path / 'fifo', 'FIFO'), ('/dev/null', 'character device'), (tmp_path, 'directory')):
        with pytest.raises(PlanError) as err:
            open_file(str(path))
        assert kind in err.value.msg


def test_qemu_locks_are_seen_on_the_image_and_its_backing_file(tmp_path):
    base = qcow2(tmp_path / 'base.qcow2')
    top = qcow2(tmp_path / 'top.qcow2', base)
    idle = qcow2(tmp_path / 'idle.qcow2')
    holder = subprocess.Popen(['qemu-io', '-f', 'qcow2', '-c', 'sleep 20000', top])
    try:
        time.sleep(0.5)
        held = {}
        for path in (top, base, idle):
            fd, _st = open_file(path)
            held[os.path.basename(path)] = qemu_holds(fd)
            os.close(fd)
    finally:
        holder.kill()
        holder.wait()
    assert held == {'top.qcow2': True, 'base.qcow2': True, 'idle.qcow2': False}


def test_open_file_never_opens_what_it_did_not_check(tmp_path):
    # Issue 14, second review (L8): open_file looked at the name (stat) and then opened the name; a link
    # flipped between a file and a FIFO in between got the FIFO opened (a device node: opened, with
    # whatever its open does). Now the name is resolved once (O_PATH), checked, and that inode opened.
    import subprocess
    import sys
    import threading

    image = tmp_path / 'image.raw'
    image.write_bytes(b'\0' * 4096)
    fifo = tmp_path / 'pipe'
    os.mkfifo(fifo)
    link = tmp_path / 'link'
    link.symlink_to(image)
    flipper = subprocess.Popen([sys.executable, '-c', (
        'import os, sys\nlink = sys.argv[1]\nprint("ready", flush=True)\nwhile True:\n'
        '    for target in ("image.raw", "pipe"):\n        os.symlink(target, link + ".new")\n'
        '        os.replace(link + ".new", link)\n'), str(link)], stdout=subprocess.PIPE, text=True)
    writer_opened = threading.Event()

    def writer():           # blocks until someone opens the FIFO for reading
        fd = os.open(fifo, os.O_WRONLY)
        writer_opened.set()
        os.close(fd)
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        assert flipper.stdout.readline() == 'ready\n'
        for _attempt in range(20000):
            try:
                fd, st = open_file(str(link))
            except (PlanError, FileNotFoundError):
                continue
            assert st.st_size == 4096
            os.close(fd)
            if writer_opened.is_set():
                break
        assert not writer_opened.is_set(), 'open_file opened the FIFO it had not checked'
    finally:
        flipper.kill()
        flipper.wait()
        if not writer_opened.is_set():
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))    # let the writer go
            thread.join(5)
