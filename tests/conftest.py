# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared fixtures: real libvirt (embedded driver and libvirtd), real qemu-img, the XML corpus.

The collection is importable as ``ansible_collections.kvmio.tuning`` from this checkout (a link
in a temporary directory), so tests exercise the source tree, not an installed copy.
"""

from __future__ import annotations

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
os.environ['KVMIO_TEST_COLLECTIONS'] = _LINK_ROOT     # for ansible-playbook runs of this checkout

sys.path.insert(0, os.path.join(REPO, 'tests'))

from helpers import domain_xml, embed, qemu_img  # noqa: E402  pylint: disable=wrong-import-position


# --- libvirt ---------------------------------------------------------------------------------

class DomainFactory:
    """Defines domains with unique names on a connection and undefines them afterwards."""

    def __init__(self, conn, image_dir, uri=None):
        self.conn = conn
        self.uri = uri
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

        if self.uri:
            try:
                self.conn.getLibVersion()
            except libvirt.libvirtError:        # a test restarted libvirtd under us
                self.conn = _open(self.uri)
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
    # The modules' own opener: an embedded root gets the process's one shared connection (libvirt can
    # register the embedded driver only about fifteen times per process).
    from ansible_collections.kvmio.tuning.plugins.module_utils._libvirt import open_connection

    return open_connection(uri)


IN_EMBED_PROCESS = os.environ.get('KVMIO_EMBED_PROCESS') == '1'


def pytest_addoption(parser):
    parser.addoption('--regenerate-goldens', action='store_true', default=False,
                     help='rewrite the expected outputs under tests/data (golden files) from what the code '
                          'produces now; review them with git diff before committing (see tests/README.md)')


@pytest.fixture
def regenerate_goldens(request):
    return request.config.getoption('--regenerate-goldens')


def pytest_collection_modifyitems(config, items):
    """Embedded-driver tests run only in the child process that test_embedded_suite.py starts."""
    if IN_EMBED_PROCESS:
        return
    deselected = [item for item in items if item.get_closest_marker('embed')]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker('embed')]


@pytest.fixture(scope='session')
def embed_root():
    # One embedded root per test process: libvirt allows one embedded driver root per process.
    # Kept short: QEMU's monitor socket path under it must fit in 108 bytes.
    if not IN_EMBED_PROCESS:
        pytest.fail('embedded-driver tests must be marked @pytest.mark.embed')
    return embed.make_root()


@pytest.fixture(scope='session')
def embed_uri(embed_root):
    return 'qemu:///embed?root=%s' % embed_root


@pytest.fixture(scope='session')
def embed_conn(embed_uri):
    # The process's shared connection to its embedded root (see _libvirt.open_connection): the modules
    # run in-process use it too, and it stays open until the process ends.
    return _open(embed_uri)


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
    factory = DomainFactory(system_conn, image_dir, 'qemu:///system')
    yield factory
    factory.cleanup()


@pytest.fixture
def backup_dir(tmp_path):
    return str(tmp_path / 'backups')


@pytest.fixture
def make_domain_xml():
    return domain_xml
