# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading and replacing an xml_path file: only regular UTF-8 files without a DOCTYPE, never a
FIFO or a device, links resolved, the file replaced atomically with its owner, group and mode.
(The attacks by another user are in tests/integration/test_define_safety.py.)"""

from __future__ import annotations

import os
import stat
import threading

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._errors import KvmioError
from ansible_collections.kvmio.tuning.plugins.module_utils._xml_file import MAX_XML_BYTES, XmlFile

DOMAIN = "<domain type='qemu'><name>a</name></domain>\n"


def read(path):
    with XmlFile(str(path)) as xml_file:
        return xml_file.text


def test_a_fifo_is_refused_at_once_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / 'domain.xml'
    os.mkfifo(fifo)
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(pytest.raises(KvmioError, read, fifo)), daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), 'reading a FIFO blocked'
    assert 'is a FIFO, not a regular file' in str(outcome[0].value)


@pytest.mark.parametrize('path, kind', [('/dev/zero', 'a character device'), ('/tmp', 'a directory'),
                                        ('/', 'a directory')])
def test_devices_and_directories_are_refused(path, kind):
    with pytest.raises(KvmioError) as refused:
        read(path)
    assert str(refused.value).startswith('xml_path %s is' % path) or 'is a directory' in str(refused.value)
    assert kind in str(refused.value)


def test_a_file_larger_than_any_domain_xml_is_not_read(tmp_path):
    big = tmp_path / 'big.xml'
    with open(big, 'wb') as handle:
        handle.truncate(MAX_XML_BYTES + 1)
    with pytest.raises(KvmioError, match=r'has 4194305 bytes; a domain XML file has at most 4194304'):
        read(big)


@pytest.mark.parametrize('content, message', [
    (b"<domain><name>caf\xe9</name></domain>", r'is not UTF-8 text \(byte 0xe9 at offset 17\)'),
    ('<domain/>'.encode('utf-16'), 'is UTF-16 or UTF-32 text'),
    (b"<?xml version='1.0' encoding='ISO-8859-1'?><domain/>", "declares encoding 'ISO-8859-1'"),
    (b'<?xml version="1.0"?>\n<!-- x -->\n<!DOCTYPE domain [<!ENTITY big "&#x41;">]>\n<domain>&big;</domain>',
     'has a DOCTYPE'),
])
def test_text_that_is_not_plain_utf8_domain_xml_is_refused_clearly(tmp_path, content, message):
    path = tmp_path / 'domain.xml'
    path.write_bytes(content)
    with pytest.raises(KvmioError, match=message):
        read(path)


def test_links_are_followed_to_the_real_file_and_it_is_replaced_keeping_its_mode(tmp_path):
    real_dir = tmp_path / 'real'
    real_dir.mkdir()
    target = real_dir / 'domain.xml'
    target.write_text(DOMAIN)
    os.chmod(target, 0o640)
    (tmp_path / 'dirlink').symlink_to(real_dir)
    (tmp_path / 'link.xml').symlink_to('dirlink/../real/./domain.xml')
    with XmlFile(str(tmp_path / 'link.xml')) as xml_file:
        assert xml_file.real_path == str(target)
        assert xml_file.text == DOMAIN
        xml_file.replace('<domain/>\n')
    assert os.path.islink(tmp_path / 'link.xml')
    assert target.read_text() == '<domain/>\n'
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert sorted(os.listdir(real_dir)) == ['domain.xml'], 'no temporary file is left'


def test_a_file_replaced_while_the_run_works_is_not_overwritten(tmp_path):
    path = tmp_path / 'domain.xml'
    path.write_text(DOMAIN)
    with XmlFile(str(path)) as xml_file:
        os.rename(path, tmp_path / 'old.xml')
        path.write_text('<domain>someone else</domain>\n')
        with pytest.raises(KvmioError, match='was replaced while this run worked on it'):
            xml_file.replace('<domain/>\n')
    assert path.read_text() == '<domain>someone else</domain>\n'
    assert sorted(os.listdir(tmp_path)) == ['domain.xml', 'old.xml']


def test_a_missing_file_and_a_file_below_a_file_fail_naming_the_path(tmp_path):
    with pytest.raises(KvmioError, match=r'cannot read xml_path .*/nothing.xml: No such file or directory'):
        read(tmp_path / 'nothing.xml')
    (tmp_path / 'plain').write_text('x')
    with pytest.raises(KvmioError, match=r'cannot read xml_path .*/plain/domain.xml: Not a directory'):
        read(tmp_path / 'plain' / 'domain.xml')
