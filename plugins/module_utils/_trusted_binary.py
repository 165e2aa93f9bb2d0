# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Which programs named in domain XML the modules may run or read: those only root can change.

A domain XML names programs: ``<emulator>`` above all. An ``xml_path`` template may be written by
another local user, and a program path in it reaches root twice: the define check's embedded libvirt
runs the emulator to probe its capabilities, and the io_uring probe reads it. Root may run or read
a program only when doing so gives nobody anything they did not have: when the program is a regular
file that only root (or the user running the module) can change, in directories and through links
that only they can change (``_trusted_files``' rule: no swap between the check and the use is
possible), and that has an execute bit (a root-only text file such as ``/etc/profile`` is not a
program). Anything else, however harmless it looks, is not run and not read.

The path is the one libvirt reads: the string value of ``devices/emulator`` (``_domain_xml.string_value``),
never the text before a comment; an ``<emulator>`` holding markup (a comment, a processing instruction,
an element) is refused outright, as libvirt never writes one.
"""

from __future__ import annotations

import errno
import os
import stat

from ._domain_xml import markup_inside, parse_domain, string_value
from ._errors import KvmioError
from ._trusted_files import UntrustedPath, entry_problem, owner_name, trusted_directory, trusted_uids

_MAX_LINKS = 40


def resolve_trusted_binary(path):
    """(the real path of the program at ``path``, its lstat) when only root or the running user can
    change it and every directory and link on the way; raises UntrustedPath (``details['untrusted']``
    says why) otherwise, KvmioError when it cannot be looked at."""
    current = path
    for _hop in range(_MAX_LINKS):
        if not isinstance(current, str) or not current.startswith('/'):
            raise UntrustedPath('%r is not an absolute path' % current, untrusted='%r is not an absolute path' % current)
        try:
            directory = trusted_directory(os.path.dirname(current), 'program %s' % path)
        except UntrustedPath:
            raise
        except KvmioError as err:
            raise UntrustedPath(err.msg, untrusted=err.msg.split(': ', 1)[-1]) from None
        name = os.path.basename(current)
        real = os.path.join(directory, name)
        try:
            info = os.lstat(real)
        except OSError as err:
            problem = '%s: %s' % (real, err.strerror)
            raise UntrustedPath(problem, untrusted=problem) from None
        if stat.S_ISLNK(info.st_mode):
            if info.st_uid not in trusted_uids():
                problem = 'the link %s is owned by %s' % (real, owner_name(info.st_uid))
                raise UntrustedPath(problem, untrusted=problem)
            current = os.path.join(directory, os.readlink(real))
            continue
        problem = entry_problem(real)
        if problem:
            if problem.startswith('it is'):
                problem = '%s: %s' % (real, problem)
            raise UntrustedPath(problem, untrusted=problem)
        if not info.st_mode & stat.S_IXUSR:
            problem = '%s is not a program (mode %04o: no execute bit)' % (real, stat.S_IMODE(info.st_mode))
            raise UntrustedPath(problem, untrusted=problem)
        return real, info
    problem = '%s: %s' % (path, os.strerror(errno.ELOOP))
    raise UntrustedPath(problem, untrusted=problem)


def binary_problem(path):
    """None when root may run and read the program at ``path``; else why not (for messages)."""
    try:
        resolve_trusted_binary(path)
    except UntrustedPath as err:
        return err.details.get('untrusted') or err.msg
    return None


def open_trusted_binary(path):
    """A read-only descriptor of the program at ``path`` (trusted as above), opened without following
    a link and without blocking, and checked to be the file that was checked; raises UntrustedPath."""
    real, info = resolve_trusted_binary(path)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, 'O_CLOEXEC', 0))
    except OSError as err:
        problem = '%s: %s' % (real, err.strerror)
        raise UntrustedPath(problem, untrusted=problem) from None
    opened = os.fstat(fd)
    if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
        os.close(fd)
        problem = '%s changed while it was opened' % real
        raise UntrustedPath(problem, untrusted=problem)
    return fd


def emulator_problem(xml):
    """None when every ``<emulator>`` of the domain XML ``xml`` (text or a parsed root; none: libvirt's
    default, looked up on a PATH of root-only directories) names a program only root can change, read
    as libvirt reads it; else why the domain must not reach libvirt (whose embedded driver runs the
    emulator to probe it) or be restored."""
    if xml is None:
        return None
    try:
        root = parse_domain(xml) if isinstance(xml, (str, bytes)) else xml
    except KvmioError as err:
        return 'its XML cannot be read safely (%s)' % err.msg
    for element in root.iter('emulator'):
        markup = markup_inside(element)
        if markup:
            return ('its <emulator> holds %s, which libvirt never writes there: libvirt reads the element\'s whole '
                    'text (%r), a reader of its first text node another path, so it is not trusted'
                    % (markup, string_value(element)))
        path = string_value(element)
        problem = binary_problem(path)
        if problem:
            return ('its emulator %s is not a program only root can change (%s), and the check runs no other: '
                    'libvirt would run it to probe it' % (path, problem))
    return None
