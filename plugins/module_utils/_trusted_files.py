# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Directories and files only the running user (or root) can change: the backup and lock directories.

The modules run as root and act on what they find in these places (domain_restore redefines domains
from backup files; every run takes its lock there), so a file another local user could plant, replace
or link elsewhere would let that user steer root. A path is *trusted* when:

- every directory from ``/`` down to it is owned by root or the running user, and is not writable by
  group or others, unless it has the sticky bit (``/tmp``: others cannot rename or replace what we own
  in it, and what they create there is theirs, so it fails the owner check below);
- every symbolic link on the way is owned by root or the running user (a link in a sticky directory
  is otherwise the planting user's);
- the directory itself (and a file in it) is owned by root or the running user and is not writable by
  group or others, sticky or not; a file must be a regular file, opened without following a link.

Each check looks at the object it then uses (``lstat`` of each component, ``fstat`` of the opened
file), and none of them depends on ``fs.protected_symlinks``/``protected_regular``.

The walks are bounded in time (``_storage_probe.BoundedReads``, 10 s): a backup, lock, save or
private directory (or a bench path) on a hung NFS or FUSE mount is a clear error, not a run that
hangs for ever holding the host lock. Reads and writes after a walk that returned are not bounded:
the mount answered a moment before.

Image paths (qcow2_create) may lie in directories others can write (a pool directory shared by
mistake); ``resolve_trusted_links`` applies the same rule only where a link is followed: a link is
followed when it, and every directory from ``/`` down to it, passes the checks above, so a link
another user planted (at the image's own name, or as a directory on the way) is never followed.
"""

from __future__ import annotations

import errno
import os
import stat
import threading

from ._errors import KvmioError
from ._storage_probe import BoundedReads

_MAX_LINKS = 40     # as the kernel's path walk (ELOOP)


class UntrustedPath(KvmioError):
    """A directory or file that someone other than root or the running user can change."""


def trusted_uids():
    return frozenset((0, os.geteuid()))


def owner_name(uid):
    try:
        import pwd  # pylint: disable=import-outside-toplevel
        return '%s (uid %d)' % (pwd.getpwuid(uid).pw_name, uid)
    except (ImportError, KeyError):
        return 'uid %d' % uid


def _owner_problem(path, st):
    if st.st_uid not in trusted_uids():
        return '%s is owned by %s, not by root or the user running the module' % (path, owner_name(st.st_uid))
    return None


def _mode_problem(path, st, allow_sticky):
    writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and not (allow_sticky and st.st_mode & stat.S_ISVTX):
        return '%s is writable by %s (mode %04o)' % (
            path, 'others' if st.st_mode & stat.S_IWOTH else 'its group', stat.S_IMODE(st.st_mode))
    return None


def _refuse(what, problem):
    raise UntrustedPath('%s: %s, so it is not used (only root or the user running the module may be able to '
                        'change it)' % (what, problem), untrusted=problem)


def untrusted_problem(path, st, allow_sticky=False):
    """Why the file or directory ``path`` (``st``: its lstat or fstat) is one another user can change:
    owned by someone other than root or the running user, or writable by group or others (a sticky
    directory passes with ``allow_sticky``); None when it passes."""
    return _owner_problem(path, st) or _mode_problem(path, st, allow_sticky)


def _directories_problem(real):
    """The first directory from ``/`` down to ``real`` (resolved, no links) that another user can change
    (a sticky one passes: others cannot rename or replace what root owns in it), or None."""
    current = '/'
    for part in [p for p in real.split('/') if p]:
        problem = untrusted_problem(current, os.lstat(current), allow_sticky=True)
        if problem:
            return problem
        current = os.path.join(current, part)
    return untrusted_problem(current, os.lstat(current), allow_sticky=True)


_BOUNDED_LOCK = threading.Lock()
_BOUNDED_READS = []         # one reader per process (its worker thread is reused), dropped after a hang


def _bounded(path, what, func, *args):
    """``func(*args)`` in a worker, given up after ``BoundedReads``' timeout: a KvmioError naming
    ``what`` and the name it was looking up. A reader that saw a hang is not reused: its mount table
    may predate the hung mount, and a mount it blamed wrongly must not refuse later walks."""
    with _BOUNDED_LOCK:
        if not _BOUNDED_READS:
            _BOUNDED_READS.append(BoundedReads())
        reads = _BOUNDED_READS[0]
        done, value = reads.call(path, func, *args)
        if not done:
            _BOUNDED_READS.clear()
            raise KvmioError('%s: %s' % (what, reads.why(path, value, doing='lookup')),
                             hung_mount=value[0])
        return value


def _walk(path, what, allow_missing, every_directory=True):
    """Resolves ``path`` component by component, checking each directory and link on the way.

    ``every_directory``: every directory must pass the checks, and every component must be a
    directory (backup and lock directories). Otherwise (image paths) directories are checked only
    where a link is followed (the link's own directory and all above it), and the last component may
    be anything (the caller checks what it opens).

    Returns (the resolved path of the deepest existing component, the missing components below it).
    """
    if not os.path.isabs(path):
        path = os.path.abspath(path)
    pending = [p for p in path.split('/') if p not in ('', '.')]
    real = '/'
    links = 0
    if every_directory:
        problem = untrusted_problem('/', os.lstat('/'), allow_sticky=True)
        if problem:
            _refuse(what, problem)
    while pending:
        part = pending.pop(0)
        if part == '..':
            real = os.path.dirname(real)      # ``real`` holds no links: its parent is already checked
            continue
        candidate = os.path.join(real, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            if not allow_missing or '..' in pending:
                raise
            return real, [part] + pending
        if stat.S_ISLNK(st.st_mode):
            problem = _owner_problem('the link %s' % candidate, st)
            if not problem and not every_directory:
                problem = _directories_problem(real)
                if problem:
                    problem = 'the link %s lies in a directory another user can change (%s)' % (candidate, problem)
            if problem:
                _refuse(what, problem)
            links += 1
            if links > _MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            target = os.readlink(candidate)
            if target.startswith('/'):
                real = '/'
            pending = [p for p in target.split('/') if p not in ('', '.')] + pending
            continue
        if not every_directory and not pending:
            return candidate, []
        if not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), candidate)
        if every_directory:
            problem = untrusted_problem(candidate, st, allow_sticky=bool(pending))
            if problem:
                _refuse(what, problem)
        real = candidate
    return real, []


def resolve_trusted_links(path, what):
    """``path`` made absolute with every symbolic link on it resolved, as ``os.path.realpath`` would,
    but a link is followed only when it passes the checks of this module (owned by root or the running
    user, and every directory from ``/`` down to it too); a path without links is returned as it is,
    whatever its directories. A missing last component (or more) is kept as written.

    Raises UntrustedPath naming the link, OSError (ELOOP, ENOTDIR, a missing directory before ``..``)
    as the kernel would.
    """
    real, missing = _bounded(path, what, _walk, path, what, True, False)
    return os.path.join(real, *missing) if missing else real


def trusted_directory(path, what, create=False, mode=0o700, dry_run=False):
    """The resolved path of directory ``path`` once every check above passes; raises UntrustedPath
    (naming ``what``) if one fails, KvmioError if it does not exist (and ``create`` is false) or
    cannot be created. Missing directories are created one at a time with ``mode``; one that
    appears meanwhile (another user racing us) is checked like any other. ``dry_run`` (check mode)
    creates nothing: what exists is checked, and the path that would be made is returned."""
    for _attempt in range(3):
        try:
            real, missing = _bounded(path, what, _walk, path, what, create)
        except FileNotFoundError:
            raise KvmioError('%s: %s does not exist' % (what, path)) from None
        except OSError as err:
            raise KvmioError('%s: cannot use %s: %s' % (what, err.filename or path, err.strerror)) from None
        if not missing:
            return real
        if dry_run:
            return os.path.join(real, *missing)
        try:
            for part in missing:
                real = os.path.join(real, part)
                os.mkdir(real, mode)
        except FileExistsError:
            continue          # someone created it between our lstat and mkdir: walk again, check it
        except OSError as err:
            raise KvmioError('%s: cannot create %s: %s' % (what, real, err.strerror)) from None
    raise KvmioError('%s: %s keeps changing while it is being created' % (what, path))


def private_directory(path, what, create=True):
    """The resolved path of a directory of the running user's alone: ``trusted_directory``'s rule (every
    directory and link from ``/`` down to it only root or this user can change; missing ones created
    0700), and the directory itself owned by this user with no access for group or others. One rule
    for every private directory (the define check's cache, ``save_dir``, the playbooks' report and demo
    directories through the ``private_directory`` module). Raises UntrustedPath or KvmioError."""
    return make_private_directory(path, what, create=create)[0]


def make_private_directory(path, what, create=True, dry_run=False, tighten=False):
    """``private_directory``, and what it did: (resolved path, 'created', 'tightened' or None).

    ``dry_run`` (check mode) changes nothing and says what would be done. ``tighten``: an existing
    directory of this user's that no one else can write in (the rule above held) is given mode 0700
    instead of refused: nothing another user planted can be in it, so closing it is enough."""
    existed = _bounded(path, what, os.path.lexists, path)
    real = trusted_directory(path, what, create=create, mode=0o700, dry_run=dry_run)
    if dry_run and not os.path.lexists(real):
        return real, 'created'
    info = os.lstat(real)
    me = os.geteuid()
    done = None if existed else 'created'
    if info.st_uid == me and info.st_mode & 0o077 and tighten:
        if not dry_run:
            os.chmod(real, 0o700)       # no link on the way: ``real`` is resolved, in directories only we change
        return real, done or 'tightened'
    if info.st_uid != me or info.st_mode & 0o077:
        problem = '%s must belong to uid %d with mode 0700 (it has uid %d, mode %04o)' % (
            path, me, info.st_uid, stat.S_IMODE(info.st_mode))
        raise UntrustedPath('%s: %s' % (what, problem), untrusted=problem)
    return real, done


def open_trusted_file(path, what, max_bytes, directory_checked=False):
    """Reads a regular file that only root or the running user can change, without following a
    link at its name and without blocking (a FIFO is refused, not waited on). Returns its bytes.

    Raises UntrustedPath when the file (or, unless ``directory_checked``, a directory above it)
    fails a check, KvmioError when it cannot be read or is larger than ``max_bytes``.
    """
    if not directory_checked:
        trusted_directory(os.path.dirname(os.path.abspath(path)), '%s (its directory)' % what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0))
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UntrustedPath('%s: %s is a symbolic link; name the file itself' % (what, path)) from None
        raise KvmioError('%s: cannot read %s: %s' % (what, path, err.strerror)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KvmioError('%s: %s is not a regular file (%s)' % (what, path, file_kind(st.st_mode)))
        problem = untrusted_problem(path, st)
        if problem:
            _refuse(what, problem)
        if st.st_size > max_bytes:
            raise KvmioError('%s: %s is %d bytes, more than the %d a domain XML can be'
                             % (what, path, st.st_size, max_bytes))
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b''.join(chunks)
        if len(data) > max_bytes:
            raise KvmioError('%s: %s grew past %d bytes while being read' % (what, path, max_bytes))
        return data
    except OSError as err:
        raise KvmioError('%s: cannot read %s: %s' % (what, path, err.strerror)) from None
    finally:
        os.close(fd)


def entry_problem(path):
    """Why a directory entry (not followed) is not a trusted regular file, or None if it is one."""
    try:
        st = os.lstat(path)
    except OSError as err:
        return 'cannot read it: %s' % err.strerror
    if not stat.S_ISREG(st.st_mode):
        return 'it is not a regular file (%s)' % file_kind(st.st_mode)
    return untrusted_problem(path, st)


def file_kind(mode):
    for test, name in ((stat.S_ISDIR, 'a directory'), (stat.S_ISLNK, 'a symbolic link'), (stat.S_ISFIFO, 'a FIFO'),
                       (stat.S_ISSOCK, 'a socket'), (stat.S_ISCHR, 'a character device'),
                       (stat.S_ISBLK, 'a block device'), (stat.S_ISREG, 'a regular file')):
        if test(mode):
            return name
    return 'mode %o' % mode
