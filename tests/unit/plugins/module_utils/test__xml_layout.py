# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The layout keeper: an edited XML file differs from the original only where a setting changed.

Golden files (``golden/``): a template with an XML declaration, comments and a processing
instruction around the root, CDATA, character and entity references, both quote styles and a space
before ``/>``; each expected output was reviewed by hand as a diff. They are stored with LF line
ends and no BOM (the repository's sanity checks refuse others); each test also runs them with a
UTF-8 BOM and CRLF line ends, as Windows editors write them. The sweep runs the keeper on every
document of libvirt's corpus.
"""

from __future__ import annotations

import os

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._disk_plan import TunePolicy, plan_domain
from ansible_collections.kvmio.tuning.plugins.module_utils._disk_policy import DiskSettings
from ansible_collections.kvmio.tuning.plugins.module_utils._domain_xml import canonical, parse_domain
from ansible_collections.kvmio.tuning.plugins.module_utils._errors import KvmioError
from ansible_collections.kvmio.tuning.plugins.module_utils._support import HostSupport
from ansible_collections.kvmio.tuning.plugins.module_utils._xml_layout import LayoutError, LayoutKeeper, scan
from helpers.corpus import CORPUS, corpus_documents

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'golden')
HOST = HostSupport(qemu=(7, 2, 0), libvirt=(9, 0, 0), kernel=(6, 1, 0), io_uring_enabled=True, qemu_has_io_uring=True)
POLICIES = {
    'virtio-none-native': TunePolicy(settings=DiskSettings(cache='none', io='native'), bus='virtio'),
    'scsi-writeback': TunePolicy(settings=DiskSettings(cache='writeback', io='threads', discard='unmap'), bus='scsi',
                                 scsi_queues=2),
}


def tune_text(text, policy):
    """(new text, plan): the transform on the parsed tree, the text rebuilt around its edits."""
    root = parse_domain(text)
    keeper = LayoutKeeper(text, root)
    plan = plan_domain(text, policy, None, HOST, root=root)
    return keeper.render(root), plan


def read(name, style='lf'):
    """A golden file as stored (``lf``) or as a Windows editor writes it (``crlf-bom``)."""
    with open(os.path.join(GOLDEN, name), 'rb') as handle:
        text = handle.read().decode('utf-8')
    return '\ufeff' + text.replace('\n', '\r\n') if style == 'crlf-bom' else text


@pytest.mark.parametrize('style', ['lf', 'crlf-bom'])
@pytest.mark.parametrize('policy', sorted(POLICIES))
def test_golden_template_changes_only_the_changed_settings(policy, style):
    original = read('template.xml', style)
    new, plan = tune_text(original, POLICIES[policy])
    assert plan.changed and not plan.errors
    assert new == read('template.%s.xml' % policy, style)
    newline = '\r\n' if style == 'crlf-bom' else '\n'
    assert new.startswith(('\ufeff' if style == 'crlf-bom' else '') + '<?xml version="1.0" encoding="UTF-8"?>'
                          + newline + '<!-- web template')
    assert new.endswith('</domain>%s<!-- end of template -->%s' % (newline, newline))
    if style == 'crlf-bom':
        assert '\n' not in new.replace('\r\n', '')
    # What the diff does not show is still the same document as the transform's.
    assert canonical(parse_domain(new)) == canonical(plan.after)


def test_a_second_run_leaves_the_file_byte_for_byte():
    tuned = read('template.virtio-none-native.xml', 'crlf-bom')
    again, plan = tune_text(tuned, POLICIES['virtio-none-native'])
    assert not plan.changed and again == tuned


def test_new_and_changed_values_are_escaped_in_the_quote_style_of_their_tag():
    text = '<domain type="qemu">\n  <name>a</name>\n  <x one=\'1\' two="2"/>\n</domain>\n'
    root = parse_domain(text)
    keeper = LayoutKeeper(text, root)
    x = root.find('x')
    x.set('one', 'it\'s "a" <b> & c\n')
    x.set('two', 'it\'s "2"')
    del x.attrib['one']
    x.set('three', '3 > 2 & \'q\'')
    out = keeper.render(root)
    # A removed attribute takes its space along; an added one takes the quote of the tag's first.
    assert out == ('<domain type="qemu">\n  <name>a</name>\n  <x two="it\'s &quot;2&quot;" '
                   "three='3 > 2 &amp; &apos;q&apos;'/>\n</domain>\n")
    assert parse_domain(out).find('x').attrib == {'two': 'it\'s "2"', 'three': '3 > 2 & \'q\''}


def test_an_empty_element_that_gets_a_child_is_opened_in_place():
    text = "<domain type='qemu'><name>a</name><devices><controller type='scsi' index='0' model='virtio-scsi'/>" \
           "</devices></domain>"
    new, plan = tune_text(text, TunePolicy(settings=DiskSettings(cache='keep', io='keep'), bus='scsi', scsi_queues=4))
    assert plan.changed
    assert new == ("<domain type='qemu'><name>a</name><devices><controller type='scsi' index='0' model='virtio-scsi'>"
                   "\n  <driver queues='4'/>\n</controller></devices></domain>")


def test_a_doctype_is_not_scanned():
    with pytest.raises(LayoutError, match='DOCTYPE'):
        scan('<?xml version="1.0"?>\n<!DOCTYPE domain [<!ENTITY a "b">]>\n<domain/>')


def test_documents_the_scanner_cannot_follow_are_refused_not_guessed():
    with pytest.raises(KvmioError):
        LayoutKeeper('<domain><name>a</name>', parse_domain('<domain><name>a</name></domain>'))


CORPUS_DOCUMENTS = corpus_documents(valid=None, positive=None)


def test_every_corpus_document_keeps_its_bytes_and_gets_exactly_the_planned_document():
    """Unchanged documents come back byte for byte; changed ones hold exactly the plan (render
    verifies that itself and raises LayoutError otherwise). Every fourth document also with CRLF."""
    if not CORPUS_DOCUMENTS:
        pytest.skip('no corpus at %s' % CORPUS)
    counts = {'changed': 0, 'unchanged': 0}
    for index, relpath in enumerate(CORPUS_DOCUMENTS):
        with open(os.path.join(CORPUS, relpath), encoding='utf-8') as handle:
            text = handle.read()
        try:
            parse_domain(text)
        except KvmioError:
            continue
        variants = [text, text.replace('\n', '\r\n')] if index % 4 == 0 else [text]
        for variant in variants:
            new, plan = tune_text(variant, POLICIES['scsi-writeback'])
            if plan.errors:
                continue
            if plan.changed:
                counts['changed'] += 1
                assert canonical(parse_domain(new)) == canonical(plan.after), relpath
            else:
                counts['unchanged'] += 1
                assert new == variant, relpath
            if '\r\n' in variant:
                assert '\n' not in new.replace('\r\n', ''), '%s: a bare LF in a CRLF file' % relpath
    assert counts['changed'] > 1000 and counts['unchanged'] > 1000, counts


def _many_attributes(count):
    """A template whose <metadata> holds one element with ``count`` attributes (10 bytes each)."""
    attributes = ' '.join("a%d='v'" % index for index in range(count))
    return ("<domain type='qemu'><name>big</name><metadata><x:big xmlns:x='urn:x' %s/></metadata><devices><disk "
            "type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/i/a.qcow2'/><target "
            "dev='vda' bus='virtio'/></disk></devices></domain>\n" % attributes)


def _tune_and_compare(text):
    import time
    from ansible_collections.kvmio.tuning.plugins.module_utils._domain_xml import same_document, to_text
    started = time.perf_counter()
    new_text, plan = tune_text(text, POLICIES['virtio-none-native'])
    assert plan.changed and same_document(new_text, to_text(parse_domain(new_text)))
    return time.perf_counter() - started


def test_time_grows_linearly_with_the_attributes_of_an_element():
    """The review's L4: one element with 40,000 attributes (a 1 MB file) took 18 s: lxml reads an
    attribute's value by searching the element's attributes (``get``, ``attrib.items()``) and libxml2's
    C14N sorts them by insertion, so the layout keeper and the document comparison were quadratic.
    Four times the attributes must now take about four times as long, not sixteen."""
    import gc
    _tune_and_compare(_many_attributes(100))        # warm up
    gc.collect()
    gc.disable()        # a collection of everything earlier tests left would land in one of the two
    try:
        small = min(_tune_and_compare(_many_attributes(10000)) for _attempt in range(3))
        big = min(_tune_and_compare(_many_attributes(40000)) for _attempt in range(2))
    finally:
        gc.enable()
    assert big < 8 * small + 0.2, 'x4 attributes took x%.1f time (%.2f s, %.2f s)' % (big / small, small, big)


def test_a_new_element_in_a_one_line_parent_stays_on_that_line():
    """The review's L6: a <driver> added to a <disk> written on one line reflowed it into four lines."""
    text = ("<domain type='qemu'>\n  <name>one</name>\n  <devices>\n    <disk type='file' device='disk'><source "
            "file='/i/a.qcow2'/><target dev='vda' bus='virtio'/></disk>\n  </devices>\n</domain>\n")
    new_text, plan = tune_text(text, POLICIES['virtio-none-native'])
    assert plan.changed
    assert new_text == text.replace("device='disk'><source", "device='disk'><driver cache='none' io='native'/><source")
