# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""qcow2 headers as untrusted bytes: parsed like qemu-img reads them, garbage refused, never opened."""

from __future__ import annotations

import json
import struct
import subprocess

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._qcow2_header import HEADER_READ, HeaderError, \
    decode_name, is_protocol, other_format, parse_header
from ansible_collections.kvmio.tuning.plugins.module_utils._image_plan import header_info, image_facts


def make(tmp_path, *options, backing=None, backing_format=None, size='16M'):
    path = str(tmp_path / 'image.qcow2')
    argv = ['qemu-img', 'create', '-q', '-f', 'qcow2']
    if backing:
        argv += ['-u', '-b', backing] + (['-F', backing_format] if backing_format else [])
    if options:
        argv += ['-o', ','.join(options)]
    subprocess.run(argv + [path, size], check=True)
    with open(path, 'rb') as handle:
        head = handle.read(HEADER_READ)
    info = json.loads(subprocess.run(['qemu-img', 'info', '--output=json', '-f', 'qcow2', path], check=True,
                                     capture_output=True, text=True).stdout)
    return head, info


@pytest.mark.parametrize('options', [(), ('compat=0.10',), ('lazy_refcounts=on',), ('extended_l2=on',),
                                     ('cluster_size=2M',), ('cluster_size=512',)])
def test_fields_agree_with_qemu_img_info(tmp_path, options):
    head, info = make(tmp_path, *options)
    header = parse_header(head)
    data = info['format-specific']['data']
    assert header.virtual_size == info['virtual-size'] and header.cluster_size == info['cluster-size']
    assert header.compat == data['compat'] and header.lazy_refcounts == data.get('lazy-refcounts', False)
    assert header.extended_l2 == data.get('extended-l2', False)
    assert not header.has_backing and not header.external_data_file and not header.encrypted


@pytest.mark.parametrize('name, fmt', [('base.qcow2', 'qcow2'), ('/abs/base.raw', 'raw'), ('nbd://10.0.0.1:1', 'raw'),
                                       ('relative/../x.img', 'qcow2')])
def test_backing_name_and_format(tmp_path, name, fmt):
    head, info = make(tmp_path, backing=name, backing_format=fmt)
    header = parse_header(head)
    offset, size = header.backing_span()
    assert decode_name(head[offset:offset + size]) == name == info['backing-filename']
    assert header.backing_format == fmt == info.get('backing-filename-format')


def test_a_header_without_backing_format(tmp_path):
    # Old images record no backing format (QEMU then probes it): the parser says None, not a guess.
    head, _info = make(tmp_path, backing='base.qcow2', backing_format='qcow2')
    position = head.index(struct.pack('>I', 0xE2792ACA))
    header = parse_header(mutate(head, position, '>I', 0x11111111))
    assert header.has_backing and header.backing_format is None


def test_external_data_file_is_seen(tmp_path):
    head, _info = make(tmp_path, 'data_file=%s' % (tmp_path / 'data.raw'))
    header = parse_header(head)
    assert header.external_data_file and header.data_file == str(tmp_path / 'data.raw')


def mutate(head, offset, fmt, value):
    data = bytearray(head)
    struct.pack_into(fmt, data, offset, value)
    return bytes(data)


@pytest.mark.parametrize('offset, fmt, value, message', [
    (4, '>I', 7, 'qcow2 version 7'),
    (20, '>I', 40, 'cluster size 2^40 is out of range'),
    (16, '>I', 5000, 'backing file name is longer than 1023 bytes'),
    (8, '>Q', 1 << 40, 'outside the first cluster'),
    (100, '>I', 13, 'header length 13 is invalid'),
])
def test_hostile_headers_are_refused(tmp_path, offset, fmt, value, message):
    head, _info = make(tmp_path, backing='base.qcow2', backing_format='qcow2')
    with pytest.raises(HeaderError) as err:
        parse_header(mutate(head, offset, fmt, value))
    assert message in str(err.value)


def test_garbage_extensions_end_quietly(tmp_path):
    head, _info = make(tmp_path)
    looping = mutate(mutate(head, 104, '>I', 0x12345678), 108, '>I', 0)     # an endless run of empty extensions
    assert parse_header(looping).backing_format is None
    assert parse_header(head[:200]).virtual_size == 16 << 20               # extensions beyond the read: ignored


@pytest.mark.parametrize('head', [b'', b'QFI', b'QFI\xfb' + b'\0' * 10, b'\0' * 512])
def test_short_or_foreign_bytes(head):
    with pytest.raises(HeaderError):
        parse_header(head)


@pytest.mark.parametrize('head, name', [(b'KDMV' + b'\0' * 60, 'vmdk'), (b'conectix' + b'\0' * 60, 'vpc'),
                                        (b'LUKS\xba\xbe\0\x01', 'luks'), (b'\0' * 64 + b'\x7f\x10\xda\xbe', 'vdi'),
                                        (b'# Disk DescriptorFile\n', 'vmdk'), (b'\0' * 512, None),
                                        (b'QFI\xfb', None)])
def test_other_formats_by_magic(head, name):
    assert other_format(head) == name


@pytest.mark.parametrize('name, protocol', [('nbd://h:1', True), ('nbd:h:1', True), ('json:{}', True),
                                            ('http://x/y', True), ('a:b/c', True), ('./a:b', False),
                                            ('/abs/a:b', False), ('base.qcow2', False), ('dir/x:y', False)])
def test_protocol_names(name, protocol):
    assert is_protocol(name) is protocol


def test_undecodable_names_survive():
    assert decode_name(b'\xff\xfe.img\0junk') == '\udcff\udcfe.img'


@pytest.mark.parametrize('options, backing', [((), None), (('compat=0.10',), None), (('lazy_refcounts=on',), None),
                                              (('extended_l2=on', 'cluster_size=128K'), 'base.qcow2'),
                                              (('preallocation=metadata',), None)])
def test_facts_from_the_header_are_the_facts_from_qemu_img_info(tmp_path, options, backing):
    # qcow2_create reads these fields from the header itself (one process less per image): they must
    # say exactly what qemu-img info says.
    head, info = make(tmp_path, *options, backing=backing, backing_format='qcow2' if backing else None)
    header = parse_header(head)
    offset, size = header.backing_span()
    name = decode_name(head[offset:offset + size]) if header.has_backing else None
    mine = header_info('qcow2', header, name, None, info['actual-size'])
    assert image_facts(mine, None) == image_facts(info, None)


def test_unknown_incompatible_features_are_seen(tmp_path):
    head, _info = make(tmp_path)
    assert not parse_header(head).unknown_features
    assert parse_header(mutate(head, 72, '>Q', 1 << 9)).unknown_features


@pytest.mark.parametrize('name, kind, path', [
    ('json:{"driver":"raw","file":{"driver":"file","filename":"/a/b.raw"}}', 'local', '/a/b.raw'),
    ('json:{"driver":"raw","file.driver":"file","file.filename":"/a/b.raw"}', 'local', '/a/b.raw'),
    ('json:{"file":{"driver":"host_device","filename":"/dev/loop0"}}', 'local', '/dev/loop0'),
    ('json:{"file.driver":"file","file.filename":"rel.raw"}', 'local', 'rel.raw'),
    ('json:{"driver":"file","filename":"/a/b.raw"}', 'local', '/a/b.raw'),
    ('json:{"driver":"raw","file":{"driver":"nbd","server":{"type":"inet","host":"h","port":"1"}}}', 'remote', None),
    ('json:{"driver":"raw","file":{"driver":"raw","file":{"driver":"file","filename":"/x"}}}', 'unknown', None),
    ('json:{"driver":"qcow2","file":{"driver":"file","filename":"/x"}}', 'unknown', None),
    ('json:{"driver":"file"}', 'unknown', None),
    ('json:{"file.driver":"file","file":{}}', 'unknown', None),
    ('json:[1]', 'unknown', None),
    ('json:{not json', 'unknown', None),
    ('nbd://127.0.0.1:10809/x', 'remote', None),
    ('nbd+unix:///x?socket=/s', 'remote', None),
    ('rbd:pool/image', 'remote', None),
    ('file:/a/b.raw', 'unknown', None),
    ('host_device:/dev/sda', 'unknown', None),
])
def test_backing_names_are_read_as_libvirt_reads_them(name, kind, path):
    from ansible_collections.kvmio.tuning.plugins.module_utils._qcow2_header import read_backing_name
    read = read_backing_name(name)
    assert (read.kind, read.path) == (kind, path), read
    assert bool(read.why) == (kind == 'unknown')
