# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Writing an edited XML document back with every byte it did not change as it was. Pure.

A template kept in git must get a diff only where a setting changed. Serialising the edited tree
would drop the XML declaration, a BOM and the comments around the root, and rewrite quotes, CDATA,
character references and line ends. Instead, ``LayoutKeeper`` records where each node of the
original text is (a small scanner; lxml gives lines, not offsets), the transform edits the lxml
tree as usual, and ``render`` rebuilds the text: untouched nodes and text are copied from the
original, a changed attribute value is replaced inside its quotes, an added attribute goes after the
last one, a removed one takes its leading space with it, and only new elements are serialised (in
the document's quote style and line ends). The result is parsed again and must hold exactly the
edited tree, or ``render`` raises LayoutError and the caller falls back to serialising.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ._domain_xml import attribute_dict, etree, parse_domain, redact_tree, to_text
from ._errors import KvmioError

_NAME = r'[^\s/>=<"\']+'
_START_TAG = re.compile(r'<(' + _NAME + r')')
_ATTRIBUTE = re.compile(r'(\s+)(' + _NAME + r')\s*=\s*("[^"]*"|\'[^\']*\')')
_TAG_CLOSE = re.compile(r'\s*(/?)>')
_END_TAG = re.compile(r'</(' + _NAME + r')\s*>')
_XML_NAMESPACE = 'http://www.w3.org/XML/1998/namespace'


class LayoutError(KvmioError):
    """The text could not be rebuilt around the edits (the caller serialises the tree instead)."""


@dataclass
class _Attribute:
    qname: str
    start: int          # of the whitespace before the name
    value_start: int    # inside the quotes
    value_end: int
    quote: str


@dataclass
class _Span:
    kind: str           # 'element', 'comment' or 'pi'
    start: int
    end: int = -1       # after the end tag (or the comment / PI)
    qname: str = ''
    tag_end: int = -1   # after the start tag
    content_end: int = -1   # where the end tag starts
    self_closing: bool = False
    attributes: list = field(default_factory=list)
    attribute_end: int = -1     # after the last attribute: where new ones go


def _parse_start_tag(text, pos):
    match = _START_TAG.match(text, pos)
    if not match:
        raise LayoutError('unreadable start tag at offset %d' % pos)
    span = _Span('element', pos, qname=match.group(1))
    cursor = match.end()
    span.attribute_end = cursor
    while True:
        attr = _ATTRIBUTE.match(text, cursor)
        if not attr:
            break
        value = attr.group(3)
        span.attributes.append(_Attribute(attr.group(2), attr.start(), attr.start(3) + 1, attr.end(3) - 1, value[0]))
        cursor = span.attribute_end = attr.end()
    close = _TAG_CLOSE.match(text, cursor)
    if not close:
        raise LayoutError('unreadable start tag <%s> at offset %d' % (span.qname, pos))
    span.tag_end = close.end()
    span.self_closing = close.group(1) == '/'
    if span.self_closing:
        span.end = span.content_end = span.tag_end
    return span


def _find(text, what, pos):
    found = text.find(what, pos)
    if found < 0:
        raise LayoutError('unterminated markup at offset %d' % pos)
    return found + len(what)


def scan(text):
    """(offset of the root element, offset after it, spans of the root's subtree in document order)."""
    spans, stack = [], []
    root_start = root_end = None
    pos = 0
    while True:
        pos = text.find('<', pos)
        if pos < 0:
            break
        if text.startswith('<!--', pos):
            end = _find(text, '-->', pos + 4)
            if stack:
                spans.append(_Span('comment', pos, end))
        elif text.startswith('<![CDATA[', pos):
            end = _find(text, ']]>', pos + 9)
        elif text.startswith('<?', pos):
            end = _find(text, '?>', pos + 2)
            if stack:
                spans.append(_Span('pi', pos, end))
        elif text.startswith('<!', pos):
            raise LayoutError('a DOCTYPE or other declaration at offset %d' % pos)
        elif text.startswith('</', pos):
            match = _END_TAG.match(text, pos)
            if not match or not stack or stack[-1].qname != match.group(1):
                raise LayoutError('unexpected end tag at offset %d' % pos)
            span = stack.pop()
            span.content_end, span.end = pos, match.end()
            end = match.end()
            if not stack:
                root_end = end
        else:
            if root_end is not None:
                raise LayoutError('a second root element at offset %d' % pos)
            span = _parse_start_tag(text, pos)
            spans.append(span)
            if root_start is None:
                root_start = pos
            end = span.tag_end
            if span.self_closing:
                if not stack:
                    root_end = end
            else:
                stack.append(span)
        pos = end
    if root_start is None or root_end is None or stack:
        raise LayoutError('no complete root element')
    return root_start, root_end, spans


def _node_kind(node):
    if isinstance(node.tag, str):
        return 'element'
    if node.tag is etree.Comment:
        return 'comment'
    if node.tag is etree.PI:
        return 'pi'
    return 'other'


def _local(qname):
    return qname.rsplit(':', 1)[-1]


def _lxml_name(qname, nsmap):
    """The lxml key of an attribute written ``qname``, None for a namespace declaration."""
    if qname == 'xmlns' or qname.startswith('xmlns:'):
        return None
    if ':' not in qname:
        return qname
    prefix, local = qname.split(':', 1)
    uri = _XML_NAMESPACE if prefix == 'xml' else nsmap.get(prefix)
    if uri is None:
        raise LayoutError('attribute %s uses an undeclared prefix' % qname)
    return '{%s}%s' % (uri, local)


def _written_name(name, nsmap):
    """How to write the lxml key ``name`` in this element's scope."""
    if not name.startswith('{'):
        return name
    uri, local = name[1:].split('}', 1)
    if uri == _XML_NAMESPACE:
        return 'xml:' + local
    for prefix, value in nsmap.items():
        if value == uri and prefix:
            return '%s:%s' % (prefix, local)
    raise LayoutError('no prefix for namespace %s' % uri)


@dataclass
class _Original:
    span: _Span
    attrib: dict
    text: object
    tail: object
    text_source: str = ''
    tail_source: str = ''


class LayoutKeeper:
    """Build it on the text and its freshly parsed tree BEFORE editing the tree; ``render`` after."""

    def __init__(self, text, root):
        self.text = text
        self.root_start, self.root_end, spans = scan(text)
        nodes = list(root.iter())
        if len(nodes) != len(spans):
            raise LayoutError('the scanner found %d nodes, the parser %d' % (len(spans), len(nodes)))
        self.originals = {}
        for node, span in zip(nodes, spans):
            kind = _node_kind(node)
            if kind != span.kind or (kind == 'element' and etree.QName(node).localname != _local(span.qname)):
                raise LayoutError('the scanner and the parser disagree at offset %d' % span.start)
            self.originals[node] = _Original(span, attribute_dict(node) if kind == 'element' else {}, node.text,
                                             node.tail)
        for node, original in self.originals.items():
            span = original.span
            if original.span.kind != 'element':
                continue
            children = list(node)
            first = self.originals[children[0]].span.start if children else span.content_end
            original.text_source = text[span.tag_end:first]
            for index, child in enumerate(children):
                following = self.originals[children[index + 1]].span.start if index + 1 < len(children) \
                    else span.content_end
                self.originals[child].tail_source = text[self.originals[child].span.end:following]
        root_original = self.originals[root]
        root_original.tail_source = ''
        self.crlf = '\r\n' in text
        self.quote = self._usual_quote()

    def _usual_quote(self):
        quotes = [o.span.attributes[0].quote for o in self.originals.values() if o.span.attributes]
        return '"' if quotes.count('"') > quotes.count("'") else "'"

    # --- escaping, in the document's style ---------------------------------------------------

    def _newlines(self, value):
        return value.replace('\n', '\r\n') if self.crlf else value

    def _text(self, value):
        if not value:
            return ''
        value = value.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;').replace('\r', '&#13;')
        return self._newlines(value)

    @staticmethod
    def _attribute(value, quote):
        value = value.replace('&', '&amp;').replace('<', '&lt;').replace('\t', '&#9;').replace('\n', '&#10;') \
            .replace('\r', '&#13;')
        return value.replace('"', '&quot;') if quote == '"' else value.replace("'", '&apos;')

    # --- rendering ---------------------------------------------------------------------------

    def render(self, root):
        """The whole document: the original text around the root, the root rebuilt."""
        body = self._node(root)
        result = self.text[:self.root_start] + body + self.text[self.root_end:]
        self._verify(result, root)
        return result

    def _node(self, node):
        original = self.originals.get(node)
        kind = _node_kind(node)
        if original is None:
            return self._new(node)
        span = original.span
        if kind != 'element':
            if node.text == original.text:
                return self.text[span.start:span.end]
            return etree.tostring(node, encoding='unicode', with_tail=False)
        start = self._start_tag(node, original)
        content = self._content(node, original)
        if span.self_closing:
            if not content:
                return start
            return start[:-2] + '>' + content + '</%s>' % span.qname
        return start + content + self.text[span.content_end:span.end]

    def _content(self, node, original):
        pieces = [original.text_source if original is not None and node.text == original.text
                  else self._text(node.text)]
        for child in node:
            pieces.append(self._node(child))
            child_original = self.originals.get(child)
            if child_original is not None and child.tail == child_original.tail:
                pieces.append(child_original.tail_source)
            else:
                pieces.append(self._text(child.tail))
        return ''.join(pieces)

    def _start_tag(self, node, original):
        """The start tag with only the changed attributes edited, in time linear in their number (lxml's
        ``get`` searches the attributes one by one: the values are read once, ``attribute_dict``)."""
        span = original.span
        nsmap = node.nsmap
        values = attribute_dict(node)
        edits = []      # (start, end, replacement), offsets in the document, in document order
        seen = set()
        for attr in span.attributes:
            name = _lxml_name(attr.qname, nsmap)
            if name is None:
                continue
            seen.add(name)
            value = values.get(name)
            if value is None:
                edits.append((attr.start, attr.value_end + 1, ''))
            elif value != original.attrib.get(name):
                edits.append((attr.value_start, attr.value_end, self._attribute(value, attr.quote)))
        added = [(name, value) for name, value in values.items() if name not in seen]
        if added:
            quote = span.attributes[0].quote if span.attributes else self.quote
            edits.append((span.attribute_end, span.attribute_end, ''.join(
                ' %s=%s%s%s' % (_written_name(name, nsmap), quote, self._attribute(value, quote), quote)
                for name, value in added)))
        pieces, cursor = [], span.start
        for start, end, replacement in sorted(edits):
            pieces.extend((self.text[cursor:start], replacement))
            cursor = end
        pieces.append(self.text[cursor:span.tag_end])
        return ''.join(pieces)

    def _new(self, node):
        """A node the transform added: written in the document's style where that is simple."""
        kind = _node_kind(node)
        parent = node.getparent()
        if kind != 'element' or (parent is not None and node.nsmap != parent.nsmap):
            return self._newlines(etree.tostring(node, encoding='unicode', with_tail=False))
        name = _written_name(node.tag, node.nsmap) if node.tag.startswith('{') else node.tag
        attributes = ''.join(' %s=%s%s%s' % (_written_name(key, node.nsmap), self.quote,
                                             self._attribute(value, self.quote), self.quote)
                             for key, value in node.attrib.items())
        content = self._content(node, None)
        if not content:
            return '<%s%s/>' % (name, attributes)
        return '<%s%s>%s</%s>' % (name, attributes, content, name)

    def _verify(self, result, root):
        try:
            again = etree.fromstring(result.encode('utf-8'), etree.XMLParser(
                remove_blank_text=False, remove_comments=False, resolve_entities=False, no_network=True))
        except etree.XMLSyntaxError as err:
            raise LayoutError('the rebuilt text is not well-formed: %s' % err) from None
        if etree.tostring(again) != etree.tostring(root):
            raise LayoutError('the rebuilt text does not hold the edited document')


def redacted_text(text):
    """``text`` (a domain XML document as a file holds it) with every secret replaced (``redact_tree``)
    and every other byte as it was, so that a diff of two redacted texts shows what a diff of the texts
    would, secrets apart. Serialised instead when the layout cannot be kept."""
    root = parse_domain(text)
    try:
        keeper = LayoutKeeper(text, root)
    except LayoutError:
        keeper = None
    if not redact_tree(root):
        return text
    if keeper is not None:
        try:
            return keeper.render(root)
        except LayoutError:
            pass
    return to_text(root)
