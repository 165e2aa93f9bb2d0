# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Whitespace-preserving edits and round trips of domain XML."""

from __future__ import annotations

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._domain_xml import canonical, make_child, parse_domain, \
    remove_child, set_attr, to_text
from ansible_collections.kvmio.tuning.plugins.module_utils._errors import KvmioError

DOC = """<domain type='kvm'>
  <name>web01</name>
  <!-- owner: team-a -->
  <metadata>
    <app:info xmlns:app="urn:example:app"><app:tier>gold</app:tier></app:info>
  </metadata>
  <devices>
    <disk type='file' device='disk'>
      <source file='/img/web01.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>"""


def test_round_trip_keeps_comments_and_foreign_metadata():
    text = to_text(parse_domain(DOC))
    assert '<!-- owner: team-a -->' in text
    assert '<app:info xmlns:app="urn:example:app"><app:tier>gold</app:tier></app:info>' in text
    assert canonical(text) == canonical(DOC)


def test_inserted_and_removed_children_keep_the_indentation():
    root = parse_domain(DOC)
    disk = root.find('devices/disk')
    driver = make_child(disk, 'driver', {'name': 'qemu', 'cache': 'none'}, index=0)
    make_child(disk, 'address', {'type': 'pci'})
    assert to_text(disk) == ('<disk type="file" device="disk">\n      <driver name="qemu" cache="none"/>\n'
                             '      <source file="/img/web01.qcow2"/>\n      <target dev="vda" bus="virtio"/>\n'
                             '      <address type="pci"/>\n    </disk>')
    remove_child(disk, disk.find('address'))
    remove_child(disk, driver)
    assert to_text(disk) == ('<disk type="file" device="disk">\n      <source file="/img/web01.qcow2"/>\n'
                             '      <target dev="vda" bus="virtio"/>\n    </disk>')


def test_set_attr_reports_changes():
    root = parse_domain(DOC)
    target = root.find('devices/disk/target')
    assert set_attr(target, 'bus', 'virtio') is False
    assert set_attr(target, 'bus', 'scsi') is True
    assert set_attr(target, 'removable', None) is False


@pytest.mark.parametrize('text, message', [
    ('<domain><name>x</name>', 'the XML of x is not well-formed XML: '),
    ('<network/>', 'the XML of x has root element <network>, expected <domain>'),
])
def test_parse_errors_name_the_origin(text, message):
    with pytest.raises(KvmioError) as err:
        parse_domain(text, 'the XML of x')
    assert err.value.msg.startswith(message)


# --- issue 14: documents with declarations, secrets -------------------------------------------------------

@pytest.mark.parametrize('doctype, body', [
    ('<!DOCTYPE domain [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
     '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>', '<description>&c;&c;&c;</description>'),
    ('<!DOCTYPE domain [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>', '<description>&xxe;</description>'),
    ('<!DOCTYPE domain SYSTEM "http://127.0.0.1:9/domain.dtd">', ''),
    ('<!DOCTYPE domain>', ''),
])
def test_any_doctype_is_refused_naming_the_document(doctype, body):
    text = '<?xml version="1.0"?>\n%s\n<domain type="kvm"><name>web01</name>%s</domain>' % (doctype, body)
    with pytest.raises(KvmioError) as err:
        parse_domain(text, 'backup /b/web01.xml')
    assert err.value.msg.startswith('backup /b/web01.xml has a DOCTYPE declaration')
    with pytest.raises(KvmioError) as err:
        canonical(text)
    assert 'has a DOCTYPE declaration' in err.value.msg


def test_secrets_are_redacted_and_nothing_else_changes():
    from ansible_collections.kvmio.tuning.plugins.module_utils._domain_xml import REDACTED, redact_secrets

    text = DOC.replace('</devices>', "<graphics type='vnc' passwd='s3cret' passwdValidTo='2030-01-01T00:00:00'/>"
                                     "<graphics type='spice' passwd='0ther'/></devices>")
    network = ("<disk type='network' device='disk'><source protocol='https' name='/i.img'><host name='h'/>"
               "<cookies><cookie name='session'>t0ken</cookie></cookies></source><target dev='vdb'/></disk>")
    text = text.replace('</devices>', network + '</devices>')
    redacted = redact_secrets(text)
    for secret in ('s3cret', '0ther', 't0ken'):
        assert secret not in redacted
    assert redacted.count(REDACTED) == 3 and "2030-01-01T00:00:00" in redacted and 'name="session"' in redacted
    assert canonical(redact_secrets(DOC)) == canonical(DOC)


# Issue 14, second review (L6): secrets besides passwords and cookies, in the clear in any domain XML.
SECRETS_DOC = '''<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>web01</name>
  <sysinfo type='smbios'>
    <system><entry name='serial'>SERIAL-S3CRET</entry></system>
    <oemStrings><entry>cloud-init:token=OEM-S3CRET</entry></oemStrings>
  </sysinfo>
  <sysinfo type='fwcfg'><entry name='opt/com.example/key'>FWCFG-S3CRET</entry></sysinfo>
  <launchSecurity type='sev'><cbitpos>47</cbitpos><reducedPhysBits>1</reducedPhysBits><policy>0x0003</policy>
    <dhCert>DHCERT-S3CRET</dhCert><session>SESSION-S3CRET</session></launchSecurity>
  <devices><graphics type='vnc' passwd='VNC-S3CRET'/></devices>
  <qemu:commandline>
    <qemu:arg value='-object'/><qemu:arg value='secret,id=s0,data=ARG-S3CRET'/>
    <qemu:env name='TOKEN' value='ENV-S3CRET'/>
  </qemu:commandline>
</domain>
'''


def test_every_kind_of_secret_is_redacted_and_the_layout_kept():
    from ansible_collections.kvmio.tuning.plugins.module_utils._domain_xml import REDACTED, redact_secrets
    from ansible_collections.kvmio.tuning.plugins.module_utils._xml_layout import redacted_text

    for redacted in (redact_secrets(SECRETS_DOC), redacted_text(SECRETS_DOC)):
        assert 'S3CRET' not in redacted, redacted
        assert redacted.count(REDACTED) == 12 and "name='TOKEN'" in redacted.replace('"', "'")
    kept = redacted_text(SECRETS_DOC)        # an xml_path file: every byte but the secrets as it was
    assert kept == SECRETS_DOC.replace('SERIAL-S3CRET', REDACTED).replace('cloud-init:token=OEM-S3CRET', REDACTED) \
        .replace('FWCFG-S3CRET', REDACTED).replace('47', REDACTED).replace('>1<', '>%s<' % REDACTED) \
        .replace('0x0003', REDACTED).replace('DHCERT-S3CRET', REDACTED).replace('SESSION-S3CRET', REDACTED) \
        .replace('VNC-S3CRET', REDACTED).replace("'-object'", "'%s'" % REDACTED) \
        .replace('secret,id=s0,data=ARG-S3CRET', REDACTED).replace('ENV-S3CRET', REDACTED)
    assert redacted_text(DOC) == DOC


def test_a_redacted_element_loses_all_its_text_not_only_the_first_node():
    # Second review of issue 14, F5: text after a comment, a PI or an element inside a redacted element,
    # a network disk's URL query and the kernel command line were left in diffs.
    from ansible_collections.kvmio.tuning.plugins.module_utils._domain_xml import redact_secrets
    from ansible_collections.kvmio.tuning.plugins.module_utils._xml_layout import redacted_text
    doc = ("<domain type='kvm'><name>d</name><sysinfo type='smbios'><oemStrings>"
           "<entry>OEM-<!-- note -->TAIL-S3CRET</entry><entry>A<?pi PI-S3CRET?>B-S3CRET</entry>"
           "<entry>C<x>X-S3CRET</x>D-S3CRET</entry></oemStrings></sysinfo>"
           "<os><type>hvm</type><cmdline>rootpw=CMD-S3CRET</cmdline></os><devices>"
           "<disk type='network'><source protocol='https' name='/a.iso' query='token=Q-S3CRET'/></disk>"
           "</devices></domain>")
    for redacted in (redact_secrets(doc), redacted_text(doc)):
        assert 'S3CRET' not in redacted, redacted
        assert redacted.count('********') == 5, redacted
    assert redacted_text(doc).startswith("<domain type='kvm'><name>d</name>"), 'the rest of the file is kept'
