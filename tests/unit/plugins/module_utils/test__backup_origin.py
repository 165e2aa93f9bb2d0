# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The record of the libvirt a backup came from (G1 of the third review of issue 14)."""

from __future__ import annotations

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._backup_origin import split_origin, with_origin
from ansible_collections.kvmio.tuning.plugins.module_utils._domain_xml import parse_domain
from ansible_collections.kvmio.tuning.plugins.module_utils._errors import KvmioError

XML = "<domain type='kvm'>\n  <name>web</name>\n</domain>\n"


@pytest.mark.parametrize('subject', ['qemu:///system', 'qemu:///embed?root=/tmp/kvmio-embed--x',
                                     'qemu://kvm-2.example/system', 'qemu:///embed?root=/tmp/a b/\u00e9'])
def test_the_record_round_trips_and_keeps_the_backup_valid_domain_xml(subject):
    text = with_origin(XML, subject)
    assert '--' not in text.split('\n', 1)[0][4:-4]
    parse_domain(text)
    assert split_origin(text) == (subject, XML)


def test_a_backup_without_a_record_has_no_origin():
    assert split_origin(XML) == (None, XML)


def test_an_xml_declaration_stays_first():
    text = with_origin('<?xml version="1.0"?>\n' + XML, 'qemu:///system')
    parse_domain(text)
    assert split_origin(text) == ('qemu:///system', '<?xml version="1.0"?>\n' + XML)


@pytest.mark.parametrize('text', [
    with_origin(with_origin(XML, 'qemu:///system'), 'qemu:///embed?root=/x'),
    XML.replace('</domain>', '<!-- kvmio.tuning backup of libvirt qemu:///system --></domain>'),
    XML + '<!--kvmio.tuning backup of libvirt qemu:///system -->\n',
    '<!-- kvmio.tuning backup of libvirt qemu:///system  -->\n' + XML,
])
def test_a_record_out_of_its_place_or_form_is_refused(text):
    with pytest.raises(KvmioError, match='kvmio.tuning backup of'):
        split_origin(text, 'backup b.xml')


def test_control_characters_in_a_record_are_refused():
    with pytest.raises(KvmioError, match='control characters'):
        split_origin('<!-- kvmio.tuning backup of libvirt qemu:///%0A -->\n' + XML)
