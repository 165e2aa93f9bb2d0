# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The qemu-img runner against the real qemu-img binary."""

from __future__ import annotations

import os

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
    assert err.value.msg == 'qemu-img did not read %s within 1 s; it was stopped' % fifo
