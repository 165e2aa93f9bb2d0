# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Reading and rewriting a domain XML file (kvm_disk_tune's ``xml_path``) as root, safely.

The file may sit in a directory other users can write, or be reached through a link one of them
planted. So:

- the path is walked one component at a time with directory descriptors (``O_NOFOLLOW``), links are
  read and followed by this code, and every later step works on the descriptor of the real
  directory: swapping a directory for a link half-way changes nothing;
- a link owned by another user may only lead to a file that user owns (else root would write where
  that user cannot);
- only a regular file of bounded size is read, opened without following a link and without blocking
  (a FIFO or ``/dev/zero`` is refused, never read); only UTF-8 without a DOCTYPE is accepted;
- the new text goes to a new file with a random name created with O_EXCL in the real file's directory
  (never through a planted link), gets the original's owner, group and mode through its descriptor,
  is flushed, and replaces the file by ``rename`` only if the file at that name is still the one read.
"""

from __future__ import annotations

import codecs
import errno
import os
import re
import secrets
import stat

from ._domain_xml import RPC_STRING_MAX
from ._errors import KvmioError

# A domain XML is a few KiB; libvirt cannot carry one longer than RPC_STRING_MAX (4 MiB), so a
# longer file could never be defined (virsh reads up to 10 MiB, then the define fails).
MAX_XML_BYTES = RPC_STRING_MAX
_MAX_LINKS = 40
_UTF8_NAMES = ('utf-8', 'utf8', 'us-ascii', 'ascii')
_PROLOG = re.compile(r'\ufeff?(?:\s+|<\?.*?\?>|<!--.*?-->)*', re.S)
_DECLARED_ENCODING = re.compile(r'\ufeff?<\?xml[^>]*?encoding\s*=\s*["\']([^"\']*)["\']')
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0)


def _kind(mode):
    for test, name in ((stat.S_ISDIR, 'a directory'), (stat.S_ISFIFO, 'a FIFO'), (stat.S_ISCHR, 'a character device'),
                       (stat.S_ISBLK, 'a block device'), (stat.S_ISSOCK, 'a socket'), (stat.S_ISLNK, 'a link')):
        if test(mode):
            return name
    return 'not a regular file'


def _decode(data, path):
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise KvmioError('xml_path %s is UTF-16 or UTF-32 text; only UTF-8 is supported: convert it '
                         '(iconv -t UTF-8). Nothing was changed.' % path)
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as err:
        raise KvmioError('xml_path %s is not UTF-8 text (byte 0x%02x at offset %d); only UTF-8 is supported: convert '
                         'it (iconv -t UTF-8) and run again. Nothing was changed.'
                         % (path, data[err.start], err.start)) from None
    declared = _DECLARED_ENCODING.match(text)
    if declared and declared.group(1).lower() not in _UTF8_NAMES:
        raise KvmioError("xml_path %s declares encoding '%s'; only UTF-8 is supported. Nothing was changed."
                         % (path, declared.group(1)))
    if text[_PROLOG.match(text).end():].startswith('<!DOCTYPE'):
        raise KvmioError('xml_path %s has a DOCTYPE; domain XML needs none, and a DTD can define entities that '
                         'expand or read files. Remove it and run again. Nothing was changed.' % path)
    return text


class XmlFile:
    """An XML file opened for a read now and maybe a replace later: ``with XmlFile(path) as f:``."""

    def __init__(self, path):
        self.path = path
        self.real_path = None
        self.links = []         # (link path, owner uid) met on the way
        self.text = None
        self._dir_fd = None
        self._name = None
        self._stat = None

    def __enter__(self):
        try:
            self._walk()
            self._read()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def _fail(self, what, err):
        return KvmioError('cannot %s xml_path %s: %s' % (what, self.path, err.strerror or err))

    def _walk(self):
        """Leaves ``_dir_fd`` on the real directory and ``_name`` the file's name in it."""
        path = self.path if os.path.isabs(self.path) else os.path.join(os.getcwd(), self.path)
        pending = [part for part in path.split('/') if part][::-1]
        if not pending:
            raise KvmioError('xml_path %s is a directory, not a file' % self.path)
        try:
            self._dir_fd = os.open('/', _DIRECTORY_FLAGS)
            current = '/'
            while pending:
                part = pending.pop()
                if part == '.':
                    continue
                info = os.stat(part, dir_fd=self._dir_fd, follow_symlinks=False)
                if stat.S_ISLNK(info.st_mode):
                    if len(self.links) >= _MAX_LINKS:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
                    target = os.readlink(part, dir_fd=self._dir_fd)
                    self.links.append((os.path.join(current, part), info.st_uid))
                    if target.startswith('/'):
                        self._enter('/')
                        current = '/'
                    pending.extend([p for p in target.split('/') if p][::-1])
                elif pending or part == '..':
                    if not stat.S_ISDIR(info.st_mode):
                        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
                    self._enter(part)
                    current = os.path.dirname(current) if part == '..' else os.path.join(current, part)
                else:
                    self._name = part
                    self.real_path = os.path.join(current, part)
            if self._name is None:
                raise KvmioError('xml_path %s is a directory, not a file' % self.path)
        except OSError as err:
            raise self._fail('read', err) from None

    def _enter(self, name):
        new = os.open(name, _DIRECTORY_FLAGS, dir_fd=self._dir_fd)
        os.close(self._dir_fd)
        self._dir_fd = new

    def _check_links(self, owner):
        """A link another user owns may only lead to a file that user owns."""
        for link, link_owner in self.links:
            if link_owner not in (0, os.geteuid()) and link_owner != owner:
                raise KvmioError('xml_path %s leads through the symbolic link %s, which uid %d owns, to %s, which uid '
                                 '%d owns: refusing to rewrite a file that the owner of the link could not write. '
                                 'Nothing was changed; give the real path if this is intended.'
                                 % (self.path, link, link_owner, self.real_path, owner))

    def _read(self):
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | getattr(os, 'O_CLOEXEC', 0)
        try:
            fd = os.open(self._name, flags, dir_fd=self._dir_fd)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise KvmioError('xml_path %s became a symbolic link while it was read; nothing was changed'
                                 % self.path) from None
            raise self._fail('read', err) from None
        try:
            info = self._stat = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise KvmioError('xml_path %s is %s, not a regular file; nothing was read' % (
                    self.path, _kind(info.st_mode)))
            self._check_links(info.st_uid)
            if info.st_size > MAX_XML_BYTES:
                raise KvmioError('xml_path %s has %d bytes; a domain XML file has at most %d' % (
                    self.path, info.st_size, MAX_XML_BYTES))
            chunks, size = [], 0
            while size <= MAX_XML_BYTES:
                chunk = os.read(fd, 1024 * 1024)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except OSError as err:
            raise self._fail('read', err) from None
        finally:
            os.close(fd)
        if size > MAX_XML_BYTES:
            raise KvmioError('xml_path %s grew past %d bytes while it was read' % (self.path, MAX_XML_BYTES))
        self.text = _decode(b''.join(chunks), self.path)

    def replace(self, text):
        """Replaces the file with ``text``, keeping owner, group and mode; the file stays as it was when
        this raises KvmioError."""
        info = self._stat
        tmp = None
        try:
            for _attempt in range(100):
                candidate = '.%s.%s.kvmio-tmp' % (self._name[:100], secrets.token_hex(8))
                try:
                    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                 | getattr(os, 'O_CLOEXEC', 0), 0o600, dir_fd=self._dir_fd)
                except FileExistsError:
                    continue
                tmp = candidate
                break
            else:
                raise OSError(errno.EEXIST, 'no free temporary name')
            try:
                if (info.st_uid, info.st_gid) != (os.geteuid(), os.getegid()):
                    os.fchown(fd, info.st_uid, info.st_gid)
                os.fchmod(fd, stat.S_IMODE(info.st_mode))
                data = memoryview(text.encode('utf-8'))
                while data:
                    data = data[os.write(fd, data):]
                os.fsync(fd)
            finally:
                os.close(fd)
            now = os.stat(self._name, dir_fd=self._dir_fd, follow_symlinks=False)
            if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
                raise KvmioError('xml_path %s was replaced while this run worked on it; not overwriting that. '
                                 'Nothing was changed; run again.' % self.path)
            os.rename(tmp, self._name, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
            tmp = None
        except OSError as err:
            raise KvmioError('cannot write xml_path %s (through a new file in %s): %s. The file is unchanged.'
                             % (self.path, os.path.dirname(self.real_path), err.strerror or err)) from None
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp, dir_fd=self._dir_fd)
                except OSError:
                    pass
        try:
            os.fsync(self._dir_fd)      # the new name, durably
        except OSError:
            pass
