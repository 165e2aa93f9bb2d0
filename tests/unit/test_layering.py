# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The layers of plugins/module_utils, checked on the import statements of every file.

- pure files decide and transform: they import no os, subprocess, ansible or libvirt, and no I/O
  file or runner, so they run anywhere (unit tests, the corpus sweep) and can be read alone;
- I/O files are thin adapters (libvirt, qemu-img, probes, files, locks): they import no runner;
- runners hold one module's flow: they may import anything but another runner.
A new file must be placed in one of the layers here, or this test fails.
"""

from __future__ import annotations

import ast
import os

import pytest

MODULE_UTILS = os.path.join(os.path.dirname(__file__), '..', '..', 'plugins', 'module_utils')

PURE = {
    '_backup_origin', '_blockdev', '_bus_convert', '_cpuset', '_cputune_xml', '_disk_plan', '_disk_policy', '_disk_xml', '_domain_plan',
    '_domain_xml', '_errors', '_findings', '_fio', '_guest_bench', '_guest_xml', '_image_plan', '_initramfs',
    '_live_plan', '_overrides', '_pinning', '_qcow2_header', '_report', '_result_detail', '_selection', '_support',
    '_topology', '_xml_layout',
}
IO = {
    '_backup', '_define', '_define_check', '_define_check_child', '_guest_image', '_host_probe', '_image_chain',
    '_image_users', '_image_workdir', '_libvirt', '_live_apply', '_lock', '_module', '_parallel', '_qemu_img',
    '_save_image', '_storage_probe', '_trusted_binary', '_trusted_files', '_xml_file',
}
FORBIDDEN_IN_PURE = ('os', 'subprocess', 'ansible', 'libvirt', 'libvirt_qemu', 'shutil', 'tempfile', 'socket',
                     'fcntl', 'threading', 'glob', 'mmap', 'time')


def files():
    return sorted(name[:-3] for name in os.listdir(MODULE_UTILS) if name.endswith('.py') and name != '__init__.py')


def imports(name):
    """(top-level modules imported, sibling module_utils files imported) by one file."""
    with open(os.path.join(MODULE_UTILS, name + '.py'), encoding='utf-8') as handle:
        tree = ast.parse(handle.read())
    outside, siblings = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            outside.update(alias.name.split('.')[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                siblings.add(node.module.split('.')[0] if node.module else '')
            else:
                outside.add(node.module.split('.')[0])
    return outside, siblings


def is_runner(name):
    return name.endswith('_runner')


def test_every_file_has_a_layer():
    unplaced = [name for name in files() if name not in PURE and name not in IO and not is_runner(name)]
    assert not unplaced, 'place these files in a layer in %s: %s' % (__file__, unplaced)


@pytest.mark.parametrize('name', sorted(PURE))
def test_pure_files_do_no_io(name):
    outside, siblings = imports(name)
    assert not outside & set(FORBIDDEN_IN_PURE), outside & set(FORBIDDEN_IN_PURE)
    assert not {s for s in siblings if s in IO or is_runner(s)}, siblings


@pytest.mark.parametrize('name', sorted(IO))
def test_io_files_import_no_runner(name):
    _outside, siblings = imports(name)
    assert not {s for s in siblings if is_runner(s)}, siblings


@pytest.mark.parametrize('name', [n for n in files() if is_runner(n)])
def test_no_runner_imports_a_runner(name):
    _outside, siblings = imports(name)
    assert not {s for s in siblings if is_runner(s)}, siblings
