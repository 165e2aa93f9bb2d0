# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""The child process of ``_define_check``: defines domain XML into a throwaway embedded libvirt root.

It runs as ``python -I -c <this file's source>``: modules run from a zip (AnsiballZ), so the child
cannot import the collection, and it imports nothing but the standard library and libvirt. The
embedded driver claims every ``qemu://`` URI of the process that opens it, which is why this runs in
a process of its own and never in the module's.

Request on stdin (JSON): ``{"root": DIR, "libvirt_dir": DIR or null, "parent": PID, "timeout": S,
"domains": [{"name", "before", "after", "redefine"}]}``. Every ``before`` (the XML libvirt holds now)
is defined first, then every ``after`` (the planned XML) over it, as the real run would; with
``redefine`` false (a file that no libvirt holds) the ``before`` is undefined first (keeping any
nvram and TPM state: the files a template names are the host's), so a file without a UUID is not a
clash. Answer on stdout, one JSON line: ``{"domains": {name: {"before": null or message, "after":
null or message}}}``, or ``{"error": message}``.

The child ends itself, with every QEMU probe it started, when its parent (the module) is gone or its
time is up: a module killed by SIGKILL, or by SIGHUP when ssh drops, must not leave it running. As
root it also works in a mount namespace of its own with an empty ``/run/libvirt``: libvirt keeps a
token there (``common/system.token``) that belongs to the host's daemon.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import sys
import threading
import time

WATCH_SECONDS = 0.2
_CLONE_NEWNS = 0x00020000
_MS_REC, _MS_PRIVATE, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x4000, 1 << 18, 2, 4, 8


def kill_probes(root):
    """QEMU capability probes daemonize (setsid) and leave the child's process group: end those
    whose pid file is under ``root`` and whose command line names it."""
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


def _watch(parent, deadline, root):
    """Ends this process (and its probes) when the module that started it is gone or time is up.
    A thread: the main thread may be inside libvirt, waiting for a probe that never answers."""
    while True:
        time.sleep(WATCH_SECONDS)
        orphaned = os.getppid() != parent
        if orphaned or time.monotonic() > deadline:
            kill_probes(root)
            if orphaned:                # nobody else will remove the root
                shutil.rmtree(root, ignore_errors=True)
            try:
                os.killpg(0, signal.SIGKILL)    # us, and what libvirt started in our group (a probe not yet daemonized)
            finally:
                os._exit(3)     # pylint: disable=protected-access


def _private_run_directory():
    """As root: a mount namespace of our own where /run/libvirt is an empty tmpfs, so that nothing the
    embedded driver writes or reads there (the host daemon's system.token) is the host's. Best effort."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    target = b'/run/libvirt' if os.path.isdir('/run/libvirt') else b'/run'
    if libc.unshare(_CLONE_NEWNS) != 0:
        return
    if libc.mount(b'none', b'/', None, _MS_REC | _MS_PRIVATE, None) != 0:
        return
    libc.mount(b'tmpfs', target, b'tmpfs', _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, b'mode=0700')


def _start_event_loop(libvirt):
    libvirt.virEventRegisterDefaultImpl()

    def run():
        while True:
            libvirt.virEventRunDefaultImpl()

    threading.Thread(target=run, name='libvirt-event-loop', daemon=True).start()


def _define(libvirt, conn, xml):
    """(domain or None, None when libvirt accepts ``xml`` else its message)."""
    if xml is None:
        return None, None
    try:
        return conn.defineXML(xml), None
    except libvirt.libvirtError as err:
        return None, err.get_error_message() or str(err)


def _undefine_keeping_files(libvirt, dom):
    """Undefines ``dom`` without touching any file its XML names: nvram and TPM state are kept (an
    nvram file that exists makes a plain undefine fail; VIR_DOMAIN_UNDEFINE_NVRAM would delete it)."""
    flags = 0
    for name in ('VIR_DOMAIN_UNDEFINE_KEEP_NVRAM', 'VIR_DOMAIN_UNDEFINE_KEEP_TPM'):
        flags |= getattr(libvirt, name, 0)
    dom.undefineFlags(flags)


def check(request):
    if request.get('libvirt_dir') and request['libvirt_dir'] not in sys.path:
        sys.path.append(request['libvirt_dir'])
    import libvirt  # pylint: disable=import-outside-toplevel

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    _start_event_loop(libvirt)
    conn = libvirt.open('qemu:///embed?root=%s' % request['root'])
    try:
        verdicts, current = {}, {}
        for item in request['domains']:
            current[item['name']], message = _define(libvirt, conn, item.get('before'))
            verdicts[item['name']] = {'before': message}
        for item in request['domains']:
            if not item.get('redefine', True) and current[item['name']] is not None:
                _undefine_keeping_files(libvirt, current[item['name']])
            verdicts[item['name']]['after'] = _define(libvirt, conn, item['after'])[1]
    finally:
        conn.close()
    return verdicts


def main():
    try:
        request = json.load(sys.stdin)
        _private_run_directory()
        if request.get('parent'):
            threading.Thread(target=_watch, name='watchdog', daemon=True, args=(
                request['parent'], time.monotonic() + request.get('timeout', 600), request['root'])).start()
        answer = {'domains': check(request)}
    except Exception as err:  # pylint: disable=broad-except
        answer = {'error': '%s: %s' % (type(err).__name__, err)}
    sys.stdout.write('\n' + json.dumps(answer) + '\n')
    sys.stdout.flush()


if __name__ == '__main__':
    main()
