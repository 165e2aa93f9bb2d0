# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Which libvirt a domain backup came from, recorded in the backup itself.

Backups are named by domain name only, and a domain's name and UUID are no secret: two libvirts on one
host (``qemu:///system`` and an embedded root, a clone reached through ``qemu+ssh://``, another user's
embedded root) can hold domains with the same name and UUID. A backup of one must never be defined
into the other (it would give that domain the other's disks). So each backup starts with one XML
comment naming the libvirt it came from, as ``_libvirt.lock_subject`` spells it (the same canonical
form the host lock uses, so ``qemu+unix:///system`` and ``qemu:///system`` are one libvirt):

    <!-- kvmio.tuning backup of libvirt qemu:///system -->
    <domain type='kvm'>...

A comment keeps the backup a valid domain XML file (``virsh define`` reads it as it is). The subject is
percent-encoded where a comment could not hold it (``-``, and anything outside printable ASCII).

The file is read as hostile even though only root can write it: the record must be the first line,
exactly in this form; a second record, or one anywhere else in the file, is refused rather than
guessed at. Pure string work: no I/O.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from ._errors import KvmioError

MARKER = 'kvmio.tuning backup of'
_RECORD = '<!-- %s libvirt %%s -->\n' % MARKER
_RECORD_RE = re.compile(r'<!-- kvmio\.tuning backup of libvirt ([!-~]+) -->\n')
# Kept as they are in the comment: what a URI is made of, apart from '-' (two in a row would end the
# comment) and '%' (the escape itself).
_SAFE = ":/?=&;@+,.~_!$'()*[]"
# A comment that looks like a record, anywhere (text in an element cannot match: libvirt escapes '<').
_ANY_RECORD_RE = re.compile(r'<!--\s*kvmio\.tuning backup of')


def with_origin(xml_text, subject):
    """``xml_text`` with the record of ``subject`` (a ``lock_subject``) as its first line (after an XML
    declaration, if it has one: nothing may come before that)."""
    record = _RECORD % quote(subject, safe=_SAFE).replace('-', '%2D')
    match = re.match(r'\A<\?xml[^>]*\?>\s*', xml_text)
    if match:
        return xml_text[:match.end()] + record + xml_text[match.end():]
    return record + xml_text


def split_origin(text, origin='backup'):
    """(the libvirt ``text`` records as its origin, or None for a backup without a record; the text
    without the record). Raises KvmioError, naming ``origin``, for a record not in its one place and
    form (a second one, one later in the file, a malformed one)."""
    declaration = re.match(r'\A<\?xml[^>]*\?>\s*', text)
    start = declaration.end() if declaration else 0
    match = _RECORD_RE.match(text, start)
    subject, rest = None, text
    if match:
        subject = unquote(match.group(1))
        rest = text[:start] + text[match.end():]
        if not subject.isprintable():
            raise KvmioError('%s records a libvirt URI with control characters (%r); this collection never '
                             'writes one' % (origin, subject))
    if _ANY_RECORD_RE.search(rest):
        raise KvmioError('%s holds "%s" %s; this collection writes one record, as the first line, so '
                         'the file was changed by hand and is not used'
                         % (origin, MARKER, 'twice' if subject is not None else 'outside its first line'))
    return subject, rest
