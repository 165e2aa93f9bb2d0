# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The qemu-img runner against the real qemu-img binary."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._errors import QemuImgError
from ansible_collections.kvmio.tuning.plugins.module_utils._qemu_img import QemuImg, option_string, subprocess_runner


@pytest.fixture
def qemu_img():
    return QemuImg(subprocess_runner())


def test_version_is_read(qemu_img):
    major, _minor, _micro = qemu_img.version()
    assert major >= 5


def test_create_then_info_and_map(qemu_img, tmp_path):
    path = str(tmp_path / 'a b;$(touch pwned).qcow2')      # no shell: the name is taken literally
    qemu_img.create(path, '64M', options={'preallocation': 'metadata', 'cluster_size': '64k'})
    info = qemu_img.info(path)
    assert info['format'] == 'qcow2' and info['virtual-size'] == 64 * 1024 * 1024
    assert info['cluster-size'] == 65536
    extents = qemu_img.map(path)
    assert all('offset' in e for e in extents if e['data']), 'metadata preallocation maps every cluster'
    assert not os.path.exists('pwned') and not (tmp_path / 'pwned').exists()


def test_backing_chain(qemu_img, tmp_path):
    base = str(tmp_path / 'base.qcow2')
    top = str(tmp_path / 'top.qcow2')
    qemu_img.create(base, '16M')
    qemu_img.create(top, None, backing_file=base)
    chain = qemu_img.info(top, backing_chain=True)
    assert [c['filename'] for c in chain] == [top, base]


def test_errors_name_the_image(qemu_img, tmp_path):
    path = str(tmp_path / 'missing.qcow2')
    with pytest.raises(QemuImgError) as err:
        qemu_img.info(path)
    assert err.value.msg.startswith('qemu-img failed to read the image %s: ' % path)


def test_missing_binary_is_a_clear_error(tmp_path):
    runner = QemuImg(subprocess_runner(), binary=str(tmp_path / 'no-qemu-img'))
    with pytest.raises(QemuImgError) as err:
        runner.version()
    assert 'install qemu-utils' in err.value.msg


# --- issue 14, S3: images are opened as their declared format; every read is bounded in time -------------

def test_info_opens_the_declared_format_not_the_one_the_bytes_suggest(qemu_img, tmp_path):
    guest = str(tmp_path / 'guest.raw')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', 'nbd://127.0.0.1:9/x', '-F', 'raw', '-u', guest,
                    '16M'], check=True)
    info = qemu_img.info(guest, fmt='raw')
    assert info['format'] == 'raw' and 'backing-filename' not in info


def test_map_of_a_qcow2_does_not_open_its_backing_file(qemu_img, tmp_path):
    fifo = str(tmp_path / 'pipe')
    os.mkfifo(fifo)
    top = str(tmp_path / 'top.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', fifo, '-F', 'raw', '-u', top, '16M'], check=True)
    runner = QemuImg(subprocess_runner(), timeout=20)
    started = time.monotonic()
    extents = runner.map(top, fmt='qcow2')
    assert time.monotonic() - started < 10, 'qemu-img waited on the backing FIFO'
    assert extents and all('offset' not in e for e in extents)


def test_a_qemu_img_call_that_hangs_is_bounded(tmp_path):
    fifo = str(tmp_path / 'pipe')
    os.mkfifo(fifo)                                        # qemu-img's open of a FIFO waits for a writer
    runner = QemuImg(subprocess_runner(), timeout=2)
    started = time.monotonic()
    with pytest.raises(QemuImgError) as err:
        runner.info(fifo, fmt='raw')
    assert time.monotonic() - started < 15
    assert err.value.msg.startswith('qemu-img did not finish within 2 s while trying to read the image %s' % fifo)


@pytest.mark.parametrize('options, text', [
    ({'compat': '1.1', 'preallocation': 'metadata', 'cluster_size': 65536},
     'cluster_size=65536,compat=1.1,preallocation=metadata'),
    ({'extended_l2': 'on', 'backing_fmt': 'raw', 'lazy_refcounts': None}, 'backing_fmt=raw,extended_l2=on'),
    ({}, ''),
])
def test_option_string(options, text):
    assert option_string(options) == text


@pytest.mark.parametrize('options', [{'backing_fmt': 'raw,data_file=/etc/shadow'}, {'compat': '1.1 '},
                                     {'preallocation': 'off\ndata_file=x'}, {'a=b': 'c'}, {'size': ''}])
def test_option_values_that_would_add_options_are_refused(options):
    with pytest.raises(QemuImgError) as err:
        option_string(options)
    assert 'option values must be plain words' in err.value.msg


def test_a_stuck_qemu_img_is_stopped(tmp_path):
    fifo = str(tmp_path / 'fifo')
    os.mkfifo(fifo)
    runner = QemuImg(subprocess_runner())
    with pytest.raises(QemuImgError) as err:
        runner.info_spec('json:{"driver": "raw", "file": {"driver": "file", "filename": "%s"}}' % fifo, fifo, [],
                         timeout=1)
    assert err.value.msg.startswith('qemu-img did not finish within 1 s while trying to read %s' % fifo)
    assert err.value.msg.endswith('it was stopped')
