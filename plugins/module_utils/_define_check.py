# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""The define check: before the first real define of a run, every planned XML is defined into a
throwaway embedded libvirt (``qemu:///embed?root=DIR``) in a child process, so that a plan libvirt
would refuse stops the whole run before anything changes.

Why a child process: the embedded driver claims every ``qemu://`` URI of the process that opens it,
and the module still has to talk to the real libvirt. The child never opens any other URI.

What it proves: libvirt's own parser and validators (the same code as the daemon's) accept the XML.
Each domain's current XML is defined first and the planned XML over it; when the embedded driver
refuses even the current XML (it lacks something the real host has: another QEMU binary), the domain
is reported as unchecked, never as refused. Pools, networks, secrets, nwfilters and host devices are
not looked up at define time, so they need nothing in the empty root (verified on libvirt 9.0).
Start-time checks (a missing image, O_DIRECT) are out of its reach. The check stands for this host's
QEMU driver: for a URI of another host or driver every domain is unchecked. The daemon's qemu.conf
settings that change what libvirt accepts (SPICE TLS above all) are copied into the throwaway one,
where they can be read. And whatever the check says, ``_define.define_plans`` puts back the domains a
run defined when a later define fails.

What it runs: libvirt's embedded driver runs each emulator a domain names to probe its capabilities.
An ``xml_path`` template may be written by another user, so a domain whose XML names an emulator that
is not a program only root can change (``_trusted_binary``: the path as libvirt reads it, the string
value of the element; an ``<emulator>`` holding a comment, a processing instruction or an element is
refused) is not sent to libvirt at all: it is reported unchecked, naming the emulator. The probe runs
as the daemon's QEMU user (``probe_identity``), not as root, as the daemon's own probe does. The
child's PATH (where libvirt finds a default emulator) holds only root-only directories, and the child
ends itself with its probes when the module is gone (``_define_check_child``).

Cost: nothing when no domain changes (a second run). Else the embedded driver probes QEMU's
capabilities on first use (4-5 s per emulator binary on the test machine); the probe is cached under
a root-only directory and reused while QEMU and libvirt do not change, and a warm check took 0.1-0.3 s
for one domain and 1.4-3.3 s for 500 there (2 shared CPUs; benchmarks/bench_define_check.py).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from . import _define_check_child
from ._domain_xml import PLANNED_XML_MARGIN, RPC_STRING_MAX
from ._errors import KvmioError, PlanError
from ._libvirt import embedded_root
from ._trusted_binary import emulator_problem
from ._trusted_files import private_directory, trusted_directory

DEFINE_CHECK_ARGUMENT_SPEC = {'define_check': {'type': 'bool', 'default': True}}

# Root-only: libvirt keeps QEMU's probed capabilities under it, and each run's throwaway root
# unless /dev/shm can hold that (a tmpfs: libvirt flushes every domain config it saves, and 500
# domains take half the time there).
ROOT_CACHE_DIR = '/var/cache/kvmio/define-check'
MEMORY_DIR = '/dev/shm'
RUN_PREFIX = 'kvmio-define-check-run-'
EMBEDDED_DRIVER_SINCE = (6, 1, 0)
# A run's root left behind by a killed module is removed by a later run after this long.
STALE_ROOT_SECONDS = 6 * 3600
# A cold probe takes seconds and each domain about two milliseconds; far more than that means stuck.
TIMEOUT_SECONDS = 120
TIMEOUT_PER_DOMAIN = 0.05
CHILD_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
# The daemon's qemu.conf, by URI path; an embedded root's is ROOT/etc/qemu.conf.
SYSTEM_QEMU_CONF = '/etc/libvirt/qemu.conf'
# qemu.conf settings that change what libvirt accepts when it defines a domain (spice_tls: "spice TLS
# port set in XML configuration, but TLS is disabled in qemu.conf", libvirt 9.0) or what QEMU features
# it sees (capability_filters), copied into the throwaway qemu.conf. Never a path, a helper program or
# the security driver: those would make the embedded driver read, run or write outside its root.
# Each blank belongs to one place in _STRINGS (after a string, or after its comma): a pattern where two
# places could take it backtracks exponentially on a list that does not match (18 entries took 30 s).
_NUMBER, _STRING, _STRINGS = r'-?\d+', r'"[^"\\\n]*"', r'\[\s*(?:"[^"\\\n]*"\s*(?:,\s*)?)*\]'
MIRRORED_SETTINGS = dict([(name, _NUMBER) for name in (
    'spice_tls', 'spice_sasl', 'spice_auto_unix_socket', 'vnc_tls', 'vnc_sasl', 'vnc_auto_unix_socket', 'chardev_tls',
    'nbd_tls', 'vxhs_tls', 'migrate_tls_force', 'seccomp_sandbox')],
    capability_filters=_STRINGS, deprecation_behavior=_STRING)
_SETTING = re.compile(r'^\s*([a-z_]+)\s*=\s*(.*?)\s*(?:#[^"]*)?$')
MAX_QEMU_CONF_BYTES = 1 << 20
# The account libvirt's QEMU driver runs QEMU as when qemu.conf sets none (Debian/Ubuntu, RHEL/Fedora builds).
DEFAULT_QEMU_USERS = ('libvirt-qemu', 'qemu')


@dataclass
class DefineCheck:
    """What the check found: ``checked`` domains libvirt accepts, ``unchecked`` {name: why it could
    not be checked}, ``refused`` {name: libvirt's message}."""

    checked: list = field(default_factory=list)
    unchecked: dict = field(default_factory=dict)
    refused: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def as_dict(self):
        return {'checked': sorted(self.checked), 'unchecked': dict(sorted(self.unchecked.items()))}

    def warnings(self):
        """The notes, and one warning naming the unchecked domains (up to five)."""
        found = list(self.notes)
        if self.unchecked:
            names = sorted(self.unchecked)
            shown = '; '.join('%s (%s)' % (name, self.unchecked[name]) for name in names[:5])
            more = ' and %d more' % (len(names) - 5) if len(names) > 5 else ''
            found.append('define check: the planned XML of %d domain(s) could not be checked before the define, so '
                         'a refusal would come from the real define: %s%s (see define_check.unchecked)'
                         % (len(names), shown, more))
        return found


def _local_libvirt():
    """(libvirt module, None) or (None, why the check cannot run here)."""
    try:
        import libvirt  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None, 'the Python binding for libvirt is not installed on this host'
    number = libvirt.getVersion()
    version = (number // 1000000, (number // 1000) % 1000, number % 1000)
    if version < EMBEDDED_DRIVER_SINCE:
        return None, ('libvirt %d.%d.%d on this host has no embedded driver (it needs %d.%d.%d)'
                      % (version + EMBEDDED_DRIVER_SINCE))
    return libvirt, None


def default_cache_dir():
    if os.geteuid() == 0:
        return ROOT_CACHE_DIR
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(base, 'kvmio', 'define-check')


def _remove_stale_roots(directory):
    """Roots of runs killed before they could remove them (ours only: /dev/shm is shared)."""
    now = time.time()
    for entry in os.listdir(directory):
        path = os.path.join(directory, entry)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if (entry.startswith(RUN_PREFIX) and stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
                and now - info.st_mtime > STALE_ROOT_SECONDS):
            shutil.rmtree(path, ignore_errors=True)


def _runs_directory(cache_dir):
    """Where this run's root goes: /dev/shm when it is the usual sticky tmpfs directory, else the cache."""
    try:
        info = os.lstat(MEMORY_DIR)
    except OSError:
        return cache_dir
    if stat.S_ISDIR(info.st_mode) and info.st_uid == 0 and info.st_mode & stat.S_ISVTX:
        return MEMORY_DIR
    return cache_dir


def _make_root(cache_dir, notes):
    """A fresh embedded root (mkdtemp: a new 0700 directory); with a trusted cache directory, its
    ``cache`` is shared between runs."""
    shared = os.path.join(cache_dir, 'libvirt-cache')
    problem = None
    try:
        # The rule of every private directory (_trusted_files): a link root made to a private directory
        # is fine, a directory or link another user can change is not.
        shared = os.path.join(private_directory(cache_dir, 'the define check\'s cache'), 'libvirt-cache')
        private_directory(shared, 'the define check\'s cache')
    except KvmioError as err:
        problem = err.details.get('untrusted') or err.msg
    except OSError as err:
        problem = err.strerror or str(err)
    if problem is not None:
        notes.append('define check: not using the cache directory %s (%s); QEMU is probed afresh, which '
                     'takes a few seconds' % (cache_dir, problem))
        return tempfile.mkdtemp(prefix=RUN_PREFIX)
    runs = _runs_directory(cache_dir)
    _remove_stale_roots(runs)
    root = tempfile.mkdtemp(prefix=RUN_PREFIX, dir=runs)
    # The embedded root keeps QEMU's capabilities under cache/qemu/capabilities; the link makes that
    # the shared, root-only directory checked above.
    os.symlink(shared, os.path.join(root, 'cache'))
    return root


def check_target(uri):
    """(None, the daemon's qemu.conf path) when the check can stand for ``uri``: this host's QEMU
    driver (``qemu:///system``, ``qemu:///session``, ``qemu:///embed?root=``; None: an ``xml_path``
    file, for this host's daemon). Else (why not, None)."""
    if uri is None:
        return None, SYSTEM_QEMU_CONF
    try:
        root = embedded_root(uri)       # the one parser of embedded URIs (the module opens that root)
    except KvmioError as err:
        return err.msg, None
    if root is not None:
        return None, os.path.join(root, 'etc', 'qemu.conf')
    parts = urlsplit(uri)
    if parts.scheme not in ('qemu', 'qemu+unix') or parts.netloc:
        return ('the URI %s is not this host\'s QEMU driver, and the check stands for this host\'s libvirt and '
                'QEMU only' % uri), None
    if parts.path == '/system':
        return None, SYSTEM_QEMU_CONF
    if parts.path == '/session':
        base = os.environ.get('XDG_CONFIG_HOME') or os.path.join(os.path.expanduser('~'), '.config')
        return None, os.path.join(base, 'libvirt', 'qemu.conf')
    return 'the URI %s is not one the check knows (qemu:///system, /session or /embed)' % uri, None


def _read_qemu_conf(path, notes):
    """The text of the qemu.conf at ``path`` (a regular file, read without blocking and bounded), or ''."""
    if not path:
        return ''
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, 'O_CLOEXEC', 0))
    except OSError:
        return ''
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_QEMU_CONF_BYTES:
            notes.append('define check: %s is not a regular file of at most %d bytes; none of its settings were '
                         'copied' % (path, MAX_QEMU_CONF_BYTES))
            return ''
        data = os.read(fd, MAX_QEMU_CONF_BYTES + 1)
    except OSError:
        return ''
    finally:
        os.close(fd)
    return data.decode('utf-8', 'replace')


def _settings(text, wanted):
    """{key: (raw value or None when it is not of the expected form)} of the ``wanted`` {key: pattern} lines."""
    found = {}
    for line in text.splitlines():
        key = line.split('=', 1)[0].strip()
        if key not in wanted:
            continue
        match = _SETTING.match(line)
        found[key] = match.group(2) if match and re.fullmatch(wanted[key], match.group(2)) else None
    return found


def mirrored_settings(path, notes, text=None):
    """The MIRRORED_SETTINGS lines of the qemu.conf at ``path`` (``text``: its content, already read), as
    they are written there; nothing when it cannot be read."""
    if text is None:
        text = _read_qemu_conf(path, notes)
    lines, unread = [], set()
    for line in text.splitlines():
        key = line.split('=', 1)[0].strip()
        if key not in MIRRORED_SETTINGS:
            continue
        match = _SETTING.match(line)
        if match and re.fullmatch(MIRRORED_SETTINGS[key], match.group(2)):
            lines.append('%s = %s' % (key, match.group(2)))
        else:
            unread.add(key)
    if unread:
        notes.append('define check: could not copy %s from %s (only plain one-line values of the expected type are '
                     'copied); domains that depend on them may be judged as with libvirt\'s defaults'
                     % (', '.join(sorted(unread)), path))
    return lines


def _account_id(value, lookup, attribute):
    """libvirt's reading of a qemu.conf user or group: ``+N`` is the number N, else a name, else a number."""
    if value.startswith('+') and value[1:].isdigit():
        return int(value[1:])
    try:
        return getattr(lookup(value), attribute)
    except KeyError:
        return int(value) if value.isdigit() else None


def probe_identity(text):
    """(uid, gid) the embedded driver runs QEMU's capability probe as, when this process is root: the
    ``user`` and ``group`` the daemon's qemu.conf (``text``) sets, else libvirt's usual default account
    (``libvirt-qemu`` on Debian and Ubuntu, ``qemu`` on RHEL and Fedora), as the daemon itself probes.
    Only programs only root can change are ever probed (the module docstring), and they do not run as
    root either. (euid, egid) when no such account exists."""
    import grp  # pylint: disable=import-outside-toplevel
    import pwd  # pylint: disable=import-outside-toplevel

    found = _settings(text, {'user': _STRING, 'group': _STRING})
    user, group = (found.get(key) for key in ('user', 'group'))
    uid = gid = None
    if user:
        uid = _account_id(user.strip('"'), pwd.getpwnam, 'pw_uid')
    else:
        for name in DEFAULT_QEMU_USERS:
            try:
                account = pwd.getpwnam(name)
            except KeyError:
                continue
            uid, gid = account.pw_uid, account.pw_gid
            try:
                gid = grp.getgrnam(name).gr_gid          # libvirt's default group has the user's name
            except KeyError:
                pass
            break
    if group:
        gid = _account_id(group.strip('"'), grp.getgrnam, 'gr_gid')
    if uid is None:
        return os.geteuid(), os.getegid()
    if gid is None:
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = os.getegid()
    return uid, gid


def _write_config(root, settings, identity=None):
    os.mkdir(os.path.join(root, 'etc'), 0o700)
    lines = list(settings)
    if os.geteuid() == 0:
        # QEMU's capability probe runs as the daemon's QEMU user, as the daemon's own probe does: only
        # programs only root can change are ever probed (see the module docstring), and not as root.
        uid, gid = identity or (os.geteuid(), os.getegid())
        lines = ['user = "+%d"' % uid, 'group = "+%d"' % gid] + lines
    with open(os.path.join(root, 'etc', 'qemu.conf'), 'x', encoding='utf-8') as handle:
        handle.write(''.join(line + '\n' for line in lines))


def child_path():
    """CHILD_PATH without the directories that someone other than root (or this user) can change:
    libvirt finds the default emulator of a domain that names none there."""
    kept = []
    for directory in CHILD_PATH.split(':'):
        try:
            trusted_directory(directory, 'PATH directory %s' % directory)
        except KvmioError:
            continue
        kept.append(directory)
    return ':'.join(kept) or '/usr/bin'


def _run_child(request, timeout):
    source = inspect.getsource(_define_check_child)
    # Whatever libvirt keeps per user (an unprivileged embedded driver uses HOME and the XDG
    # directories) stays inside the throwaway root too.
    root = request['root']
    env = {'PATH': child_path(), 'LC_ALL': 'C', 'HOME': root, 'XDG_CACHE_HOME': os.path.join(root, 'cache'),
           'XDG_CONFIG_HOME': os.path.join(root, 'etc'), 'XDG_RUNTIME_DIR': os.path.join(root, 'run')}
    proc = subprocess.Popen([sys.executable, '-I', '-c', source], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd='/', env=env, start_new_session=True, close_fds=True)
    try:
        out, err = proc.communicate(json.dumps(request).encode('utf-8'), timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _define_check_child.kill_probes(request['root'])
        proc.communicate()
        raise PlanError('the define check (every planned XML defined into a throwaway embedded libvirt) did not '
                        'finish within %d s, so nothing was changed. Run again; if it keeps happening, set '
                        'define_check=false and report it.' % timeout) from None
    lines = [line for line in out.decode('utf-8', 'replace').splitlines() if line.strip()]
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise PlanError('the define check failed (exit status %s, no answer): %s. Nothing was changed; set '
                        'define_check=false to run without it.'
                        % (proc.returncode, err.decode('utf-8', 'replace').strip()[-2000:] or 'no message')) from None
    if answer.get('error'):
        raise PlanError('the define check could not run libvirt\'s embedded driver: %s. Nothing was changed; set '
                        'define_check=false to run without it.' % answer['error'])
    return answer['domains']


def check_defines(items, cache_dir=None, timeout=None, redefine=True, uri=None):
    """Defines each ``(name, current XML or None, planned XML)`` into a throwaway embedded root: the
    planned XML over the current one (``redefine``, as a run against libvirt will), or in its place
    (a file no libvirt holds yet). ``uri``: the libvirt the run defines into (None: an xml_path file).

    Returns a DefineCheck; raises PlanError when the check itself cannot run (it never guesses).
    """
    check = DefineCheck()
    items = list(items)
    if not items:
        return check
    not_here, qemu_conf = check_target(uri)
    libvirt, why_not = _local_libvirt()
    if not_here or why_not:
        check.unchecked = {name: not_here or why_not for name, _before, _after in items}
        return check
    sent = []
    for name, before, after in items:
        problem = emulator_problem(before) or emulator_problem(after)
        if problem:
            check.unchecked[name] = problem
        else:
            sent.append((name, before, after))
    if not sent:
        return check
    root = None
    timeout = timeout or TIMEOUT_SECONDS + TIMEOUT_PER_DOMAIN * len(sent)
    try:
        root = _make_root(cache_dir or default_cache_dir(), check.notes)
        conf = _read_qemu_conf(qemu_conf, check.notes)
        _write_config(root, mirrored_settings(qemu_conf, check.notes, conf), probe_identity(conf))
        request = {'root': root, 'libvirt_dir': os.path.dirname(os.path.abspath(libvirt.__file__)),
                   'parent': os.getpid(), 'timeout': timeout + 5,
                   'domains': [{'name': name, 'before': before, 'after': after, 'redefine': redefine}
                               for name, before, after in sent]}
        verdicts = _run_child(request, timeout)
    except OSError as err:
        raise PlanError('the define check could not prepare its embedded libvirt root (%s). Nothing was changed; '
                        'set define_check=false to run without it.' % err) from None
    finally:
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    for name, _before, _after in sent:
        verdict = verdicts.get(name) or {'after': 'no answer from the check', 'before': 'no answer'}
        if verdict['after'] is None:
            check.checked.append(name)
        elif verdict['before'] is not None:
            check.unchecked[name] = ('libvirt\'s embedded driver here refuses even its current XML: %s'
                                     % verdict['before'])
        else:
            check.refused[name] = verdict['after']
    return check


def planned_xml_limit():
    return RPC_STRING_MAX - PLANNED_XML_MARGIN


def refuse_oversized(plans):
    """Raises PlanError naming every changed plan whose XML libvirt could not carry (see RPC_STRING_MAX)."""
    limit = planned_xml_limit()
    sizes = {plan.name: len(plan.after.encode('utf-8')) for plan in plans}
    over = sorted(name for name, size in sizes.items() if size > limit)
    if over:
        raise PlanError('the planned XML of %s is larger than libvirt can define and read back (%s); nothing was '
                        'changed. libvirt carries a domain XML in one message of at most %d bytes '
                        '(VIR_NET_MESSAGE_STRING_MAX) and adds its defaults when it stores it, so a planned XML '
                        'may have at most %d bytes.'
                        % (', '.join(over), ', '.join('%s: %d bytes' % (name, sizes[name]) for name in over),
                           RPC_STRING_MAX, limit), oversized={name: sizes[name] for name in over})


def check_plans(plans, enabled=True, cache_dir=None, redefine=True, uri=None):
    """The define check of the changed ``plans`` (DomainPlan) for the libvirt at ``uri`` (None: an
    xml_path file); raises PlanError naming every domain whose planned XML libvirt refuses, or could
    not carry, before anything has changed."""
    plans = [plan for plan in plans if plan.changed]
    refuse_oversized(plans)
    if not enabled:
        return DefineCheck(unchecked={plan.name: 'define_check=false' for plan in plans})
    check = check_defines([(plan.name, plan.source or None, plan.after) for plan in plans],
                          cache_dir=cache_dir, redefine=redefine, uri=uri)
    if check.refused:
        names = sorted(check.refused)
        raise PlanError('libvirt refuses the planned XML of %s, so nothing was changed (every planned XML was '
                        'defined into a throwaway embedded libvirt first): %s'
                        % (', '.join(names), '; '.join('%s: %s' % (name, check.refused[name]) for name in names)),
                        refused=dict(check.refused), define_check=check.as_dict())
    return check
