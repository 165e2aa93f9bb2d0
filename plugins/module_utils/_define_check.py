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
refuses even the current XML (it lacks something the real host has: another QEMU binary, a remote
URI's host), the domain is reported as unchecked, never as refused. Pools, networks, secrets,
nwfilters and host devices are not looked up at define time, so they need nothing in the empty root
(verified on libvirt 9.0). Start-time checks (a missing image, O_DIRECT) are out of its reach.

Cost: nothing when no domain changes (a second run). Else the embedded driver probes QEMU's
capabilities on first use (4-5 s per emulator binary on the test machine); the probe is cached under
a root-only directory and reused while QEMU and libvirt do not change, and a warm check took 0.1-0.3 s
for one domain and 1.4-3.3 s for 500 there (2 shared CPUs; benchmarks/bench_define_check.py).
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from . import _define_check_child
from ._errors import PlanError

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


def private_directory(path):
    """Creates ``path`` (0700, with missing parents) or checks it. Returns None when it is a real
    directory that only this user can write, on a path that no other user can change; else why not.

    Every existing component must be a directory (not a link) owned by root or this user and not
    writable by group or others unless sticky (``/tmp``); the last one must be ours and 0700.
    """
    euid = os.geteuid()
    current = '/'
    info = os.lstat(current)
    for part in [p for p in os.path.abspath(path).split('/') if p]:
        current = os.path.join(current, part)
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            try:
                os.mkdir(current, 0o700)
            except FileExistsError:
                pass
            except OSError as err:
                return 'cannot create %s: %s' % (current, err.strerror)
            info = os.lstat(current)
        if stat.S_ISLNK(info.st_mode):
            return '%s is a symbolic link' % current
        if not stat.S_ISDIR(info.st_mode):
            return '%s is not a directory' % current
        if info.st_uid not in (0, euid):
            return '%s belongs to uid %d' % (current, info.st_uid)
        if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
            return '%s is writable by group or others' % current
    if info.st_uid != euid or info.st_mode & 0o077:
        return '%s is not private to uid %d (owner %d, mode %04o)' % (
            path, euid, info.st_uid, stat.S_IMODE(info.st_mode))
    return None


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
    try:
        problem = private_directory(cache_dir) or private_directory(shared)
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


def _write_config(root):
    os.mkdir(os.path.join(root, 'etc'), 0o700)
    if os.geteuid() == 0:
        # QEMU probes run as this user, as they do for the module's own embedded connections; a user
        # that cannot open /dev/kvm would make libvirt probe QEMU again on every run.
        with open(os.path.join(root, 'etc', 'qemu.conf'), 'x', encoding='utf-8') as handle:
            handle.write('user = "+%d"\ngroup = "+%d"\n' % (os.geteuid(), os.getegid()))


def _kill_probes(root):
    """QEMU capability probes daemonize and leave the child's process group: end those of this root."""
    for top, _dirs, files in os.walk(root):
        for name in files:
            if not name.endswith('.pid'):
                continue
            try:
                with open(os.path.join(top, name), encoding='ascii') as handle:
                    pid = int(handle.read().strip())
                with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                    ours = root.encode() in handle.read()
            except (OSError, ValueError):
                continue
            if ours:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


def _run_child(request, timeout):
    source = inspect.getsource(_define_check_child)
    # Whatever libvirt keeps per user (an unprivileged embedded driver uses HOME and the XDG
    # directories) stays inside the throwaway root too.
    root = request['root']
    env = {'PATH': CHILD_PATH, 'LC_ALL': 'C', 'HOME': root, 'XDG_CACHE_HOME': os.path.join(root, 'cache'),
           'XDG_CONFIG_HOME': os.path.join(root, 'etc'), 'XDG_RUNTIME_DIR': os.path.join(root, 'run')}
    proc = subprocess.Popen([sys.executable, '-I', '-c', source], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd='/', env=env, start_new_session=True, close_fds=True)
    try:
        out, err = proc.communicate(json.dumps(request).encode('utf-8'), timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _kill_probes(request['root'])
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


def check_defines(items, cache_dir=None, timeout=None, redefine=True):
    """Defines each ``(name, current XML or None, planned XML)`` into a throwaway embedded root: the
    planned XML over the current one (``redefine``, as a run against libvirt will), or in its place
    (a file no libvirt holds yet).

    Returns a DefineCheck; raises PlanError when the check itself cannot run (it never guesses).
    """
    check = DefineCheck()
    items = list(items)
    if not items:
        return check
    libvirt, why_not = _local_libvirt()
    if why_not:
        check.unchecked = {name: why_not for name, _before, _after in items}
        return check
    root = None
    try:
        root = _make_root(cache_dir or default_cache_dir(), check.notes)
        _write_config(root)
        request = {'root': root, 'libvirt_dir': os.path.dirname(os.path.abspath(libvirt.__file__)),
                   'domains': [{'name': name, 'before': before, 'after': after, 'redefine': redefine}
                               for name, before, after in items]}
        verdicts = _run_child(request, timeout or TIMEOUT_SECONDS + TIMEOUT_PER_DOMAIN * len(items))
    except OSError as err:
        raise PlanError('the define check could not prepare its embedded libvirt root (%s). Nothing was changed; '
                        'set define_check=false to run without it.' % err) from None
    finally:
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    for name, _before, _after in items:
        verdict = verdicts.get(name) or {'after': 'no answer from the check', 'before': 'no answer'}
        if verdict['after'] is None:
            check.checked.append(name)
        elif verdict['before'] is not None:
            check.unchecked[name] = ('libvirt\'s embedded driver here refuses even its current XML: %s'
                                     % verdict['before'])
        else:
            check.refused[name] = verdict['after']
    return check


def check_plans(plans, enabled=True, cache_dir=None, redefine=True):
    """The define check of the changed ``plans`` (DomainPlan); raises PlanError naming every domain
    whose planned XML libvirt refuses, before anything has changed."""
    plans = [plan for plan in plans if plan.changed]
    if not enabled:
        return DefineCheck(unchecked={plan.name: 'define_check=false' for plan in plans})
    check = check_defines([(plan.name, plan.source or None, plan.after) for plan in plans],
                          cache_dir=cache_dir, redefine=redefine)
    if check.refused:
        names = sorted(check.refused)
        raise PlanError('libvirt refuses the planned XML of %s, so nothing was changed (every planned XML was '
                        'defined into a throwaway embedded libvirt first): %s'
                        % (', '.join(names), '; '.join('%s: %s' % (name, check.refused[name]) for name in names)),
                        refused=dict(check.refused), define_check=check.as_dict())
    return check
