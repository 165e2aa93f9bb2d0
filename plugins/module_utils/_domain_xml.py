# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Parsing, serialising and editing domain XML with lxml. No I/O, no policy.

Edits keep the document's indentation (new children are indented like their siblings, removed
children take their whitespace with them) so a before/after diff shows only real changes.
Comments, processing instructions and foreign-namespace content (``<metadata>``) are kept.
"""

from __future__ import annotations

import traceback

from ._errors import KvmioError

try:
    from lxml import etree
except ImportError:
    etree = None
    LXML_IMPORT_ERROR = traceback.format_exc()
else:
    LXML_IMPORT_ERROR = None

LXML_REQUIREMENT = 'lxml (Debian/Ubuntu: python3-lxml, RHEL: python3-lxml)'

# libvirt carries a domain XML in one RPC string, at most VIR_NET_MESSAGE_STRING_MAX bytes (4 MiB,
# src/rpc/virnetprotocol.x; REMOTE_STRING_MAX in remote_protocol.x): libvirtd refuses a longer one
# ("Unable to encode message payload"), and a domain it stores longer cannot be read back. So no file
# read as domain XML may be longer, and a planned XML keeps PLANNED_XML_MARGIN under it: libvirt adds
# its defaults (a UUID, controllers, addresses) when it stores a document (checked with libvirt 9.0:
# a 4,194,304-byte XML was defined and then could not be read back).
RPC_STRING_MAX = 4194304
PLANNED_XML_MARGIN = 65536


def require_lxml():
    if etree is None:
        raise KvmioError('the Python library lxml is missing on this host: install %s' % LXML_REQUIREMENT,
                         exception=LXML_IMPORT_ERROR)


def _parser():
    # Comments and blank text are kept: documents we write back must keep their layout.
    return etree.XMLParser(remove_blank_text=False, remove_comments=False, resolve_entities=False,
                           no_network=True, huge_tree=False)


def _refuse_doctype(root, origin):
    # libvirt never writes a DOCTYPE; one in a file we read (a backup, an xml_path template) can only
    # declare entities (billion laughs, external files) or a DTD: refused whatever it holds.
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise KvmioError('%s has a DOCTYPE declaration (%s); domain XML has none, and entity or DTD '
                         'declarations are not accepted' % (origin, docinfo.doctype or '<!DOCTYPE>'))


def parse_domain(text, origin='domain XML'):
    """Parses domain XML text into its root element; raises KvmioError naming ``origin``."""
    require_lxml()
    if isinstance(text, str):
        text = text.encode('utf-8')
    try:
        root = etree.fromstring(text, _parser())
    except etree.XMLSyntaxError as err:
        raise KvmioError('%s is not well-formed XML: %s' % (origin, err)) from None
    _refuse_doctype(root, origin)
    if root.tag != 'domain':
        raise KvmioError('%s has root element <%s>, expected <domain>' % (origin, root.tag))
    return root


def to_text(root):
    """Serialises a tree (or element) as text, without an XML declaration. Comments and processing
    instructions around a document's root element (libvirt's "AUTO-GENERATED FILE" header in
    /etc/libvirt/qemu/*.xml, a note a user wrote) are kept, each on a line of its own."""
    text = etree.tostring(root, encoding='unicode', with_tail=False)
    if root.getparent() is None:
        before, after = [], []
        node = root.getprevious()
        while node is not None:
            before.insert(0, etree.tostring(node, encoding='unicode', with_tail=False) + '\n')
            node = node.getprevious()
        node = root.getnext()
        while node is not None:
            after.append('\n' + etree.tostring(node, encoding='unicode', with_tail=False))
            node = node.getnext()
        text = ''.join(before) + text + ''.join(after)
    return text


def canonical(text_or_root):
    """Canonical form for comparisons: C14N 1.0 (attribute order, quotes, empty elements and
    namespace declarations normalised) of the document parsed without blank text."""
    if isinstance(text_or_root, (str, bytes)):
        root = _comparable(text_or_root)
    else:           # a copy: the text below is stripped in place
        require_lxml()
        root = etree.fromstring(etree.tostring(text_or_root),
                                etree.XMLParser(remove_blank_text=True, resolve_entities=False))
    # Surrounding whitespace of text is not significant in domain XML (c14n2's strip_text, at a
    # sixth of its cost).
    for el in root.iter(etree.Element):
        if el.text is not None:
            el.text = el.text.strip() or None
        if el.tail is not None:
            el.tail = el.tail.strip() or None
    return etree.tostring(root, method='c14n').decode('utf-8')


def attribute_dict(element):
    """{name: value} of an element's attributes (lxml names, ``{uri}local`` with a namespace), in time
    linear in their number: lxml reads each value of ``attrib.items()`` by searching the attributes
    again (40,000 attributes took 4 s); an XPath ``@*`` reads them in one pass."""
    if len(element.keys()) <= 32:
        return dict(element.attrib.items())
    return {attr.attrname: str(attr) for attr in element.xpath('@*')}


def _comparable(text_or_root):
    """The document parsed without blank text (as ``canonical``)."""
    require_lxml()
    if isinstance(text_or_root, (str, bytes)):
        data = text_or_root.encode('utf-8') if isinstance(text_or_root, str) else text_or_root
        root = etree.fromstring(data, etree.XMLParser(remove_blank_text=True, resolve_entities=False,
                                                      no_network=True))
        _refuse_doctype(root, 'domain XML')
        return root
    return text_or_root


def same_document(text_a, text_b):
    """Whether two serialisations hold the same document: what ``canonical`` compares (elements by
    namespace and name, attributes in any order, text without surrounding whitespace, comments and
    processing instructions), walked in linear time: libxml2's C14N sorts attributes by insertion,
    quadratic in their number (an element with 40,000 took seconds). Skips identical text."""
    if text_a == text_b:
        return True
    pending = [(_comparable(text_a), _comparable(text_b))]
    while pending:
        a, b = pending.pop()
        if a.tag != b.tag or len(a) != len(b):
            return False
        if isinstance(a.tag, str):
            if attribute_dict(a) != attribute_dict(b) or (a.text or '').strip() != (b.text or '').strip():
                return False
        elif a.text != b.text or (a.tag is etree.PI and a.target != b.target):
            return False
        if (a.tail or '').strip() != (b.tail or '').strip():
            return False
        pending.extend(zip(a, b))
    return True


def string_value(element):
    """What libvirt reads from an element that holds a path as text (``<emulator>``, ``<loader>``,
    ``<nvram>``, ``<kernel>``, ``<initrd>``): its XPath string value, every text node inside it joined
    (libvirt's ``virXPathString("string(./devices/emulator[1])")`` and ``xmlNodeGetContent``), comments
    and processing instructions left out. Never lxml's ``.text``: it stops at the first child node, so
    ``<emulator>/etc/profile<!---->.d/../x</emulator>`` would read ``/etc/profile`` where libvirt reads
    ``/etc/profile.d/../x``."""
    return element.xpath('string()')


def markup_inside(element):
    """None when ``element`` holds text only; else what the first node inside it is (a comment, a
    processing instruction, an element): libvirt never writes one inside a path, so a path element
    holding markup is one someone wrote to make two readers see two paths."""
    for child in element:
        if child.tag is etree.Comment:
            return 'a comment'
        if child.tag is etree.PI:
            return 'a processing instruction'
        if isinstance(child.tag, str):
            return 'an element <%s>' % etree.QName(child).localname
        return 'a %s node' % type(child).__name__
    return None


def path_elements(root, path):
    """[(element, libvirt's value of it, markup inside or None)] of the elements at ``path`` (an
    ElementPath such as ``devices/emulator``)."""
    return [(element, string_value(element), markup_inside(element)) for element in root.findall(path)]


def emulator_path(root):
    """The emulator libvirt runs for this domain: the string value of its first ``devices/emulator``
    (libvirt reads only that one), or None when it names none (libvirt then picks its default)."""
    element = root.find('devices/emulator')
    return None if element is None else string_value(element)


def domain_name(root):
    return (root.findtext('name') or '').strip()


def domain_uuid(root):
    """The domain's UUID, lower case, or '' when the XML has none."""
    return (root.findtext('uuid') or '').strip().lower()


# Secrets a domain's XML can hold, and every result (diffs, messages) shows redacted; backups keep them,
# to restore them. What libvirt adds only with VIR_DOMAIN_XML_SECURE (graphics passwords, the cookies of
# network disk sources; checked against libvirt 9.0), and what any XML may carry in the clear: QEMU
# command line arguments and environment (``-object secret,data=...``), SMBIOS and fw_cfg entries
# (``<sysinfo>``: OEM strings and fw_cfg blobs often carry provisioning tokens), the launch security
# blobs of confidential guests (SEV session keys and certificates, SNP identity blocks), the query of a
# network disk's URL (``<source protocol='https' query='token=...'>``: pre-signed URLs) and the guest
# kernel's command line (``<os><cmdline>``: passwords, cloud-init seeds).
REDACTED = '********'
QEMU_NAMESPACE = 'http://libvirt.org/schemas/domain/qemu/1.0'


def _redact_content(element):
    """Replaces the whole content of ``element`` (every text node, and every comment, processing
    instruction or element inside it with its tail) by REDACTED; True when there was any."""
    if not len(element) and not (element.text or '').strip():
        return False
    for child in list(element):
        element.remove(child)
    element.text = REDACTED
    return True


def redact_tree(root):
    """Replaces every secret in the tree ``root`` by REDACTED, in place; returns how many. An element
    holding a secret loses all its content (not only its first text node: ``OEM-<!-- -->SECRET``)."""
    count = 0
    for el in root.iter(etree.Element):
        if el.get('passwd') is not None:
            el.set('passwd', REDACTED)
            count += 1
        if el.tag.startswith('{%s}' % QEMU_NAMESPACE) and el.get('value') is not None:
            el.set('value', REDACTED)       # qemu:arg, qemu:env, qemu:property
            count += 1
        if el.tag == 'source' and el.get('query') is not None:
            el.set('query', REDACTED)
            count += 1
    texts = [cookie for cookie in root.iter('cookie')
             if cookie.getparent() is not None and cookie.getparent().tag == 'cookies']
    for sysinfo in root.iter('sysinfo'):
        texts.extend(sysinfo.iter('entry'))
    for security in root.iter('launchSecurity'):
        texts.extend(el for el in security.iter(etree.Element) if el is not security)
    texts.extend(root.findall('os/cmdline'))
    for el in texts:
        if _redact_content(el):
            count += 1
    return count


def redact_secrets(text_or_root):
    """The XML text with every secret replaced by REDACTED (for diffs and messages)."""
    require_lxml()
    if isinstance(text_or_root, (str, bytes)):
        root = parse_domain(text_or_root)
    else:
        root = etree.fromstring(etree.tostring(text_or_root), _parser())
    redact_tree(root)
    return to_text(root)


def domain_type(root):
    return root.get('type', '')


def vcpu_count(root):
    text = (root.findtext('vcpu') or '').strip()
    try:
        return int(text)
    except ValueError:
        return None


def machine_type(root):
    os_type = root.find('os/type')
    return os_type.get('machine', '') if os_type is not None else ''


# --- whitespace-preserving edits -------------------------------------------------------------

def _indent_unit(parent):
    """The (child indent, closing indent) a parent uses, guessed from its existing layout."""
    parent_indent = '\n'
    if parent.getparent() is not None:
        prev = parent.getprevious()
        ws = prev.tail if prev is not None else parent.getparent().text
        if ws and ws.strip() == '':
            parent_indent = ws
    if len(parent):
        gaps = [parent.text or ''] + [child.tail or '' for child in parent]
        if all(gap.strip() == '' and '\n' not in gap for gap in gaps):
            # Children on one line with the parent (<disk ...><source .../><target .../></disk>): so is a new one.
            return parent.text or '', parent[-1].tail or ''
    if len(parent) and parent.text and parent.text.strip() == '':
        return parent.text, parent_indent
    return parent_indent + '  ', parent_indent


def insert_child(parent, child, index=None):
    """Inserts ``child`` at ``index`` (default: last) with the indentation of its siblings."""
    child_indent, closing = _indent_unit(parent)
    count = len(parent)
    if index is None or index >= count:
        if count:
            last = parent[-1]
            child.tail = last.tail if last.tail is not None else closing
            last.tail = child_indent
        else:
            parent.text = child_indent
            child.tail = closing
        parent.append(child)
    else:
        before = parent[index]
        child.tail = child_indent
        if index == 0:
            parent.text = child_indent
        parent.insert(index, child)
        if before.tail is None:
            before.tail = closing
    return child


def make_child(parent, tag, attrib=None, index=None):
    child = etree.Element(tag)
    for key, value in (attrib or {}).items():
        child.set(key, str(value))
    return insert_child(parent, child, index)


def remove_child(parent, child):
    """Removes ``child`` and the whitespace before it, keeping the closing indentation."""
    prev = child.getprevious()
    if prev is not None:
        prev.tail = child.tail
    elif len(parent) > 1:
        pass  # parent.text keeps the indentation of the new first child
    else:
        parent.text = None if (child.tail or '').strip() == '' else child.tail
    parent.remove(child)


def set_attr(el, name, value):
    """Sets (or with None removes) an attribute; returns True when it changed."""
    old = el.get(name)
    if value is None:
        if old is None:
            return False
        del el.attrib[name]
        return True
    value = str(value)
    if old == value:
        return False
    el.set(name, value)
    return True
