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

Request on stdin (JSON): ``{"root": DIR, "libvirt_dir": DIR or null, "domains": [{"name", "before",
"after", "redefine"}]}``. Every ``before`` (the XML libvirt holds now) is defined first, then every
``after`` (the planned XML) over it, as the real run would; with ``redefine`` false (a file that no
libvirt holds) the ``before`` is undefined first, so a file without a UUID is not a clash. Answer on stdout, one JSON line: ``{"domains": {name:
{"before": null or message, "after": null or message}}}``, or ``{"error": message}``.
"""

from __future__ import annotations

import json
import sys
import threading


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
                current[item['name']].undefine()
            verdicts[item['name']]['after'] = _define(libvirt, conn, item['after'])[1]
    finally:
        conn.close()
    return verdicts


def main():
    try:
        answer = {'domains': check(json.load(sys.stdin))}
    except Exception as err:  # pylint: disable=broad-except
        answer = {'error': '%s: %s' % (type(err).__name__, err)}
    sys.stdout.write('\n' + json.dumps(answer) + '\n')
    sys.stdout.flush()


if __name__ == '__main__':
    main()
