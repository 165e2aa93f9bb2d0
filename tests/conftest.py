# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared fixtures: real libvirt (embedded driver and libvirtd), real qemu-img, the XML corpus.

The collection is importable as ``ansible_collections.kvmio.tuning`` from this checkout (a link
in a temporary directory), so tests exercise the source tree, not an installed copy.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LINK_ROOT = tempfile.mkdtemp(prefix='kvmio-import-')
os.makedirs(os.path.join(_LINK_ROOT, 'ansible_collections', 'kvmio'))
os.symlink(REPO, os.path.join(_LINK_ROOT, 'ansible_collections', 'kvmio', 'tuning'))
sys.path.insert(0, _LINK_ROOT)

sys.path.insert(0, os.path.join(REPO, 'tests'))

from helpers import domain_xml, qemu_img  # noqa: E402  pylint: disable=wrong-import-position

CORPUS = os.environ.get('KVMIO_CORPUS', os.path.join(os.path.dirname(REPO), 'shared', 'corpus'))


# --- running modules in-process --------------------------------------------------------------

class ModuleResult(dict):
    @property
    def failed(self):
        return bool(self.get('failed'))


def run_module(module, args, check_mode=False, diff=False):
    """Runs a module's main() with ``args`` the way Ansible passes them; returns its result dict."""
    from ansible.module_utils.testing import patch_module_args

    params = dict(args)
    params['_ansible_check_mode'] = check_mode
    params['_ansible_diff'] = diff
    out = io.StringIO()
    with patch_module_args(params), contextlib.redirect_stdout(out):
        try:
            module.main()
        except SystemExit:
            pass
    text = out.getvalue()
    try:
        return ModuleResult(json.loads(text[text.index('{'):]))
    except ValueError:
        raise AssertionError('module printed no JSON result: %r' % text) from None


@pytest.fixture
def module_runner():
    return run_module


# --- libvirt ---------------------------------------------------------------------------------

class DomainFactory:
    """Defines domains with unique names on a connection and undefines them afterwards."""

    def __init__(self, conn, image_dir):
        self.conn = conn
        self.image_dir = image_dir
        self.names = []

    def name(self, base='vm'):
        return 'kvmio-test-%s-%s' % (base, uuid.uuid4().hex[:8])

    def image(self, name, size='16M', fmt='qcow2', directory=None, preallocation=None):
        path = os.path.join(directory or self.image_dir, name)
        qemu_img.create(path, size, fmt, preallocation)
        return path

    def define(self, xml):
        import libvirt

        dom = self.conn.defineXML(xml)
        self.names.append(dom.name())
        return dom

    def cleanup(self):
        import libvirt

        for name in self.names:
            try:
                dom = self.conn.lookupByName(name)
            except libvirt.libvirtError:
                continue
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        self.names = []


def _open(uri):
    import libvirt

    if 'embed' in uri:
        from ansible_collections.kvmio.tuning.plugins.module_utils._libvirt import _start_event_loop

        _start_event_loop()
    return libvirt.open(uri)


@pytest.fixture(scope='session')
def embed_root():
    # One embedded root per test process: libvirt allows one embedded driver root per process.
    # Kept short: QEMU's monitor socket path under it must fit in 108 bytes.
    return tempfile.mkdtemp(prefix='kvmio-embed-', dir='/tmp')


@pytest.fixture(scope='session')
def embed_uri(embed_root):
    return 'qemu:///embed?root=%s' % embed_root


@pytest.fixture
def embed_conn(embed_uri):
    conn = _open(embed_uri)
    yield conn
    conn.close()


@pytest.fixture
def system_conn():
    try:
        conn = _open('qemu:///system')
    except Exception as err:  # pylint: disable=broad-except
        pytest.fail('libvirtd is not reachable at qemu:///system (run tools/start-libvirt): %s' % err)
    yield conn
    conn.close()


@pytest.fixture
def image_dir():
    path = tempfile.mkdtemp(prefix='kvmio-img-', dir='/var/tmp')
    yield path
    subprocess.run(['rm', '-rf', path], check=False)


@pytest.fixture
def embed_domains(embed_conn, image_dir):
    factory = DomainFactory(embed_conn, image_dir)
    yield factory
    factory.cleanup()


@pytest.fixture
def system_domains(system_conn, image_dir):
    factory = DomainFactory(system_conn, image_dir)
    yield factory
    factory.cleanup()


@pytest.fixture
def backup_dir(tmp_path):
    return str(tmp_path / 'backups')


@pytest.fixture
def make_domain_xml():
    return domain_xml


# --- the corpus ------------------------------------------------------------------------------

def corpus_documents(valid=True, positive=True):
    """[(relative path, schema_valid, expected)] from the corpus MANIFEST, or [] without a corpus."""
    manifest = os.path.join(CORPUS, 'MANIFEST.tsv')
    if not os.path.exists(manifest):
        return []
    rows = []
    with open(manifest, encoding='utf-8') as handle:
        header = handle.readline().rstrip('\n').split('\t')
        for line in handle:
            row = dict(zip(header, line.rstrip('\n').split('\t')))
            if valid is not None and (row['schema_valid'] == 'yes') != valid:
                continue
            if positive is not None and (row['expected'] == 'positive') != positive:
                continue
            rows.append(row['path'])
    return rows
