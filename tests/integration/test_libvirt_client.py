# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The libvirt client layer on the embedded driver and on libvirtd: define, read back, undefine."""

from __future__ import annotations

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._domain_xml import parse_domain
from ansible_collections.kvmio.tuning.plugins.module_utils._errors import DomainNotFound, LibvirtUnavailable
from ansible_collections.kvmio.tuning.plugins.module_utils._libvirt import LibvirtClient
from helpers import domain_xml as dx


def test_define_read_back_undefine(libvirt_env):
    uri, factory = libvirt_env
    name = factory.name('client')
    image = factory.image(name + '.qcow2')
    metadata = "\n  <metadata><app:x xmlns:app='urn:kvmio:test'>value</app:x></metadata>"
    with LibvirtClient(uri) as client:
        assert client.libvirt_version() >= (6, 0, 0)
        assert client.hypervisor_version() >= (5, 0, 0)
        dom = client.define(dx.domain(name, [dx.disk(image, 'vda', 'virtio')], metadata=metadata), name)
        try:
            assert name in client.persistent_domain_names()
            root = parse_domain(client.inactive_xml(client.lookup(name)))
            assert root.find('devices/disk/source').get('file') == image
            assert root.find('metadata')[0].text == 'value'
            assert not client.is_active(dom)
        finally:
            client.undefine(dom)
        with pytest.raises(DomainNotFound) as err:
            client.lookup(name)
        assert err.value.msg == "domain '%s' is not defined at %s" % (name, uri)


def test_wrong_uri_is_a_clear_error():
    with pytest.raises(LibvirtUnavailable) as err:
        LibvirtClient('qemu+unix:///system?socket=/nonexistent.sock').open()
    assert err.value.msg.startswith("cannot connect to libvirt at URI 'qemu+unix:///system?socket=/nonexistent.sock'")


def test_a_domain_undefined_between_listing_and_reading_is_left_out(libvirt_env):
    # Another tool (or another run on a shared host) may undefine a domain while a module reads the host:
    # the read goes on without it instead of failing the whole host.
    uri, factory = libvirt_env
    names = [factory.name('gone'), factory.name('kept')]
    for name in names:
        factory.define(dx.domain(name, [dx.disk('/var/tmp/%s.qcow2' % name, 'vda', 'virtio')]))
    with LibvirtClient(uri) as client:
        handles = {name: dom for name, dom in client.persistent_domains().items() if name in names}
        client.undefine(handles[names[0]])
        assert list(client.inactive_xmls(handles)) == [names[1]]
