# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""The one place that runs qemu-img: argument lists (never a shell), JSON output parsed.

``run_command`` is any callable taking an argv list and returning (rc, stdout, stderr): in a
module, ``module_runner(module)``; elsewhere (tests, benchmarks), ``subprocess_runner()``.
"""

from __future__ import annotations

import json
import re
import subprocess

from ._errors import QemuImgError

_VERSION_RE = re.compile(r'qemu-img version (\d+)\.(\d+)\.(\d+)')


def module_runner(module):
    def run(argv):
        return module.run_command(argv, expand_user_and_vars=False)
    return run


def subprocess_runner():
    def run(argv):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr
    return run


class QemuImg:
    def __init__(self, run_command, binary='qemu-img'):
        self.run_command = run_command
        self.binary = binary
        self._version = None

    def _run(self, what, *args):
        argv = [self.binary] + [str(a) for a in args]
        try:
            rc, out, err = self.run_command(argv)
        except OSError as exc:
            raise QemuImgError('cannot run %s to %s: %s (install qemu-utils)' % (self.binary, what, exc)) from None
        if rc != 0:
            raise QemuImgError('qemu-img failed to %s: %s' % (what, (err or out).strip()), rc=rc, cmd=argv)
        return out

    def _json(self, what, *args):
        out = self._run(what, *args)
        try:
            return json.loads(out)
        except ValueError:
            raise QemuImgError('qemu-img printed something that is not JSON while trying to %s: %r'
                               % (what, out[:200])) from None

    def version(self):
        """(major, minor, micro) of the installed qemu-img."""
        if self._version is None:
            out = self._run('print its version', '--version')
            match = _VERSION_RE.search(out)
            if not match:
                raise QemuImgError('cannot read the qemu-img version from %r' % out[:200])
            self._version = tuple(int(g) for g in match.groups())
        return self._version

    def info(self, path, backing_chain=False, force_share=True):
        """``qemu-img info --output=json``; a list of dicts with ``backing_chain``.

        ``force_share`` (-U) reads an image a running QEMU holds open without taking its lock.
        """
        args = ['info', '--output=json']
        if force_share:
            args.append('-U')
        if backing_chain:
            args.append('--backing-chain')
        return self._json('read the image %s' % path, *(args + ['--', path]))

    def map(self, path, force_share=True):
        args = ['map', '--output=json'] + (['-U'] if force_share else []) + ['--', path]
        return self._json('map the image %s' % path, *args)

    def check(self, path):
        return self._json('check the image %s' % path, 'check', '--output=json', '--', path)

    def create(self, path, size, fmt='qcow2', options=None, backing_file=None, backing_format=None):
        args = ['create', '-q', '-f', fmt]
        if backing_file:
            args += ['-b', backing_file, '-F', backing_format or 'qcow2']
        opts = ','.join('%s=%s' % (k, v) for k, v in sorted((options or {}).items()) if v is not None)
        if opts:
            args += ['-o', opts]
        args += ['--', path]
        if size is not None:
            args.append(size)
        self._run('create %s' % path, *args)
