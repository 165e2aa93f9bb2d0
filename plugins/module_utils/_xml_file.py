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
- nothing is opened for reading before it is known to be a regular file and the links on the way
  are known to be acceptable: the name is opened with ``O_PATH`` (which opens no device and no FIFO),
  checked with ``fstat``, and only that inode is opened for reading (through ``/proc/self/fd``);
  a device or FIFO is refused unopened (opening one can have effects: a watchdog arms, a tape
  rewinds, a FIFO's writer wakes up). Only a bounded size is read; only UTF-8 without a DOCTYPE;
- the new text goes to a new file with a random name created with O_EXCL in the real file's directory
  (never through a planted link), gets the original's owner, group, mode and extended attributes
  (ACLs, SELinux labels) through its descriptor, is flushed, and replaces the file by ``rename``
  only if the file at that name is still the one read, with the bytes read (an edit in place during
  the run is not overwritten). A file with several names (hard links) is refused: a rename would
  leave the other names with the old text.
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
        self._lstat = None
        self._stat = None
        self._fd = None         # the file read, held open until close(): its content and attributes
        self._data = None

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
        for attr in ('_fd', '_dir_fd'):
            if getattr(self, attr) is not None:
                os.close(getattr(self, attr))
                setattr(self, attr, None)

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
                    self._lstat = info
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

    def _open_checked(self):
        """A read descriptor of the file found by _walk, opened only once it is known to be a regular file
        reached through acceptable links (see the module docstring)."""
        if not stat.S_ISREG(self._lstat.st_mode):
            raise KvmioError('xml_path %s is %s, not a regular file; nothing was read' % (
                self.path, _kind(self._lstat.st_mode)))
        self._check_links(self._lstat.st_uid)
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, 'O_CLOEXEC', 0)
        try:
            handle = os.open(self._name, (getattr(os, 'O_PATH', 0) or flags) | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0),
                             dir_fd=self._dir_fd)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise KvmioError('xml_path %s became a symbolic link while it was read; nothing was changed'
                                 % self.path) from None
            raise self._fail('read', err) from None
        try:
            info = os.fstat(handle)
            if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != (self._lstat.st_dev, self._lstat.st_ino):
                raise KvmioError('xml_path %s was replaced while it was read; nothing was changed' % self.path)
            if not hasattr(os, 'O_PATH'):
                return handle       # opened for reading already (no O_PATH on this system)
            try:
                fd = os.open('/proc/self/fd/%d' % handle, flags)
            except FileNotFoundError:       # no /proc: the name again, checked after the open
                fd = os.open(self._name, flags | os.O_NOFOLLOW, dir_fd=self._dir_fd)
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
                os.close(fd)
                raise KvmioError('xml_path %s was replaced while it was read; nothing was changed' % self.path)
            return fd
        except OSError as err:
            raise self._fail('read', err) from None
        finally:
            if hasattr(os, 'O_PATH'):
                os.close(handle)

    def _read(self):
        fd = self._fd = self._open_checked()
        try:
            info = self._stat = os.fstat(fd)
            if info.st_size > MAX_XML_BYTES:
                raise KvmioError('xml_path %s has %d bytes; a domain XML file has at most %d' % (
                    self.path, info.st_size, MAX_XML_BYTES))
            data = self._data = self._read_all(fd)
        except OSError as err:
            raise self._fail('read', err) from None
        if len(data) > MAX_XML_BYTES:
            raise KvmioError('xml_path %s grew past %d bytes while it was read' % (self.path, MAX_XML_BYTES))
        self.text = _decode(data, self.path)

    @staticmethod
    def _read_all(fd):
        chunks, size, offset = [], 0, 0
        while size <= MAX_XML_BYTES:
            chunk = os.pread(fd, 1024 * 1024, offset)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            offset += len(chunk)
        return b''.join(chunks)

    def replace_problem(self):
        """Why the file cannot be replaced as it is (None when it can): checked before a run changes
        anything, in check mode too."""
        if self._stat.st_nlink > 1:
            return ('xml_path %s has %d names (hard links); replacing it would leave the others with the old text. '
                    'Nothing was changed; give the file a single name (or copy it) and run again.'
                    % (self.path, self._stat.st_nlink))
        return None

    def _unchanged_since_read(self):
        """Raises KvmioError when the file at the name is no longer the one read, as it was read."""
        now = os.stat(self._name, dir_fd=self._dir_fd, follow_symlinks=False)
        if (now.st_dev, now.st_ino) != (self._stat.st_dev, self._stat.st_ino):
            raise KvmioError('xml_path %s was replaced while this run worked on it; not overwriting that. '
                             'Nothing was changed; run again.' % self.path)
        held = os.fstat(self._fd)
        if ((held.st_size, held.st_mtime_ns, held.st_ctime_ns) != (
                self._stat.st_size, self._stat.st_mtime_ns, self._stat.st_ctime_ns)
                or self._read_all(self._fd) != self._data):
            raise KvmioError('xml_path %s was edited while this run worked on it; not overwriting that. '
                             'Nothing was changed; run again.' % self.path)

    def _copy_attributes(self, fd):
        """The original's extended attributes (POSIX ACLs, security labels, user attributes) on ``fd``:
        without its ACL, a file's group bits would become its ACL mask, widening or narrowing access."""
        try:
            names = os.listxattr(self._fd)
        except OSError as err:
            if err.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                return
            raise
        for name in names:
            try:
                os.setxattr(fd, name, os.getxattr(self._fd, name))
            except OSError as err:
                raise KvmioError('cannot keep the extended attribute %s of xml_path %s on its new text (%s); the '
                                 'file is unchanged' % (name, self.path, err.strerror or err)) from None

    def replace(self, text):
        """Replaces the file with ``text``, keeping owner, group and mode; the file stays as it was when
        this raises KvmioError."""
        info = self._stat
        tmp = None
        try:
            # At most 100 bytes of the name (a name may be 255 bytes, of characters of up to 4 bytes).
            stem = os.fsdecode(os.fsencode(self._name)[:100])
            for _attempt in range(100):
                candidate = '.%s.%s.kvmio-tmp' % (stem, secrets.token_hex(8))
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
                self._copy_attributes(fd)
                data = memoryview(text.encode('utf-8'))
                while data:
                    data = data[os.write(fd, data):]
                os.fsync(fd)
            finally:
                os.close(fd)
            problem = self.replace_problem()
            if problem:
                raise KvmioError(problem)
            self._unchanged_since_read()
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
