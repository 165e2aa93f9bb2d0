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
import os
import re
import stat
import subprocess

from ._errors import QemuImgError

_VERSION_RE = re.compile(r'qemu-img version (\d+)\.(\d+)\.(\d+)')
# coreutils timeout(1): 124 when the time ran out, 137 when the command then needed SIGKILL.
_TIMED_OUT = (124, 137)
_BENCH_RE = re.compile(r'Run completed in ([0-9.]+) seconds')


_OPTION_WORD_RE = re.compile(r'^[A-Za-z0-9_.+-]+$')


def module_runner(module):
    def run(argv, pass_fds=()):
        return module.run_command(argv, expand_user_and_vars=False, pass_fds=list(pass_fds) or None)
    return run


def subprocess_runner():
    def run(argv, pass_fds=()):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, pass_fds=tuple(pass_fds))
        return proc.returncode, proc.stdout, proc.stderr
    return run


def option_string(options):
    """``-o`` text from {key: value}. Keys and values must be plain words: qemu-img splits the text at
    commas, so a value such as ``raw,data_file=/etc/shadow`` would add an option of its own."""
    words = []
    for key, value in sorted(options.items()):
        if value is None:
            continue
        if not (_OPTION_WORD_RE.match(str(key)) and _OPTION_WORD_RE.match(str(value))):
            raise QemuImgError("refusing the qemu-img option %s=%r: option values must be plain words" % (key, value))
        words.append('%s=%s' % (key, value))
    return ','.join(words)


class QemuImg:
    """``timeout``: seconds any one call may take (through coreutils ``timeout``), for reads of images
    that may sit on a hung NFS server or name a FIFO; None for long jobs (convert, bench)."""

    def __init__(self, run_command, binary='qemu-img', timeout=None):
        self.run_command = run_command
        self.binary = binary
        self.timeout = timeout
        self._version = None

    def _run(self, what, *args, pass_fds=(), timeout=None):
        """Runs qemu-img; ``pass_fds`` are descriptors it reads as /dev/fd/N, ``timeout`` bounds it (s)."""
        argv = [self.binary] + [str(a) for a in args]
        timeout = timeout or self.timeout
        if timeout:
            argv = ['timeout', '--kill-after=5', str(timeout)] + argv
        try:
            rc, out, err = self.run_command(argv, pass_fds=pass_fds) if pass_fds else self.run_command(argv)
        except OSError as exc:
            raise QemuImgError('cannot run %s to %s: %s (install qemu-utils)' % (self.binary, what, exc)) from None
        if timeout and rc in _TIMED_OUT:
            raise QemuImgError('qemu-img did not finish within %d s while trying to %s (a hung NFS server, FUSE '
                               'daemon or network source?); it was stopped' % (timeout, what), rc=rc, cmd=argv)
        if rc != 0:
            raise QemuImgError('qemu-img failed to %s: %s' % (what, (err or out).strip()), rc=rc, cmd=argv)
        return out

    def _json(self, what, *args, **kwargs):
        out = self._run(what, *args, **kwargs)
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

    def info(self, path, backing_chain=False, force_share=True, fmt=None):
        """``qemu-img info --output=json``; a list of dicts with ``backing_chain``.

        ``force_share`` (-U) reads an image a running QEMU holds open without taking its lock.
        ``fmt`` (-f) opens the image as that format: give the format its user declares, or qemu-img
        guesses from the bytes, and a guest writes the bytes of a raw disk (a qcow2 header included).
        """
        args = ['info', '--output=json']
        if fmt:
            args += ['-f', fmt]
        if force_share:
            args.append('-U')
        if backing_chain:
            args.append('--backing-chain')
        return self._json('read the image %s' % path, *(args + ['--', path]))

    def map(self, path, force_share=True, fmt=None):
        """``qemu-img map --output=json``. With ``fmt`` qcow2, the image alone, its backing file not
        opened (``"backing": null``): the name in the header is not followed, and the map of the top
        layer is what allocation needs (unallocated clusters show no offset either way)."""
        args = ['map', '--output=json'] + (['-U'] if force_share else [])
        if fmt == 'qcow2':
            protocol = 'host_device' if stat.S_ISBLK(os.stat(path).st_mode) else 'file'
            spec = {'driver': 'qcow2', 'backing': None, 'file': {'driver': protocol, 'filename': path}}
            args += ['--', 'json:' + json.dumps(spec, sort_keys=True)]
        else:
            args += (['-f', fmt] if fmt else []) + ['--', path]
        return self._json('map the image %s' % path, *args)

    def check(self, path):
        return self._json('check the image %s' % path, 'check', '--output=json', '--', path)

    def create(self, path, size, fmt='qcow2', options=None, backing_file=None, backing_format=None, pass_fds=()):
        args = ['create', '-q', '-f', fmt]
        if backing_file:
            args += ['-b', backing_file, '-F', backing_format or 'qcow2']
        opts = option_string(options or {})
        if opts:
            args += ['-o', opts]
        args += ['--', path]
        if size is not None:
            args.append(size)
        self._run('create %s' % path, *args, pass_fds=pass_fds)

    def resize(self, path, size, preallocation=None):
        args = ['resize', '-q'] + (['--preallocation=%s' % preallocation] if preallocation else []) + ['--', path, size]
        self._run('resize %s' % path, *args)

    def convert(self, src, src_format, dst, options=None, backing_file=None, backing_format=None):
        """Writes ``src`` as a new qcow2 ``dst`` with ``options``; keeps a backing chain with ``backing_file``."""
        args = ['convert', '-q', '-f', src_format, '-O', 'qcow2']
        opts = dict(options or {})
        if backing_file:
            args += ['-B', backing_file]
            opts['backing_fmt'] = backing_format or 'qcow2'
        text = option_string(opts)
        if text:
            args += ['-o', text]
        self._run('convert %s' % src, *(args + ['--', src, dst]))

    def compare(self, first, second, first_format=None, second_format='qcow2'):
        """True when both images show the guest the same content (``qemu-img compare``)."""
        args = ['compare', '-q'] + (['-f', first_format] if first_format else []) + ['-F', second_format]
        rc, out, err = self.run_command([self.binary] + args + ['--', first, second])
        if rc in (0, 1):
            return rc == 0
        raise QemuImgError('qemu-img failed to compare %s with %s: %s' % (first, second, (err or out).strip()))

    def bench(self, path, fmt, cache, aio, count, depth, block_size, step, write, pass_fds=()):
        """Seconds ``qemu-img bench`` takes for ``count`` requests of ``block_size`` bytes (``pass_fds``:
        descriptors ``path`` goes through, as /dev/fd/N/...)."""
        args = ['bench', '-f', fmt, '-t', cache, '-i', aio, '-c', count, '-d', depth, '-s', block_size, '-S', step]
        if write:
            args.append('-w')
        out = self._run('benchmark %s' % path, *(args + ['--', path]), pass_fds=pass_fds)
        match = _BENCH_RE.search(out)
        if not match:
            raise QemuImgError('cannot read the time from qemu-img bench: %r' % out[-200:])
        return float(match.group(1))

    # --- images opened by descriptor (qcow2_create) ----------------------------------------------
    # ``spec`` is a ``json:`` description naming every file as /dev/fd/N and every format explicitly
    # (``_image_chain.Chain.spec``), so qemu-img opens nothing an image header names.

    def info_spec(self, spec, what, pass_fds, timeout=None):
        return self._json('read %s' % what, 'info', '--output=json', '-U', spec, pass_fds=pass_fds, timeout=timeout)

    def map_spec(self, spec, what, pass_fds, timeout=None):
        return self._json('map %s' % what, 'map', '--output=json', '-U', spec, pass_fds=pass_fds, timeout=timeout)

    def create_new(self, path, size, options, backing_name, backing_format, what, pass_fds):
        """A new qcow2 image at ``path``; a backing file is recorded by name without being opened (-u)."""
        args = ['create', '-q', '-f', 'qcow2']
        if backing_name:
            args += ['-u', '-b', backing_name, '-F', backing_format]
        text = option_string(options)
        if text:
            args += ['-o', text]
        self._run('create %s' % what, *(args + ['--', path, size]), pass_fds=pass_fds)

    def convert_spec(self, source_spec, path, options, backing_spec, backing_format, what, pass_fds):
        """Writes the image ``source_spec`` describes as a new qcow2 file ``path``; with ``backing_spec``,
        only what the top layer holds is copied and the new file points to that backing (re-point it
        with ``rebase_unsafe`` to the name it should record)."""
        args = ['convert', '-q', '-O', 'qcow2']
        opts = dict(options)
        if backing_spec:
            args += ['-B', backing_spec]
            opts['backing_fmt'] = backing_format
        text = option_string(opts)
        if text:
            args += ['-o', text]
        self._run('convert %s' % what, *(args + [source_spec, path]), pass_fds=pass_fds)

    def rebase_unsafe(self, path, backing_name, backing_format, what, pass_fds):
        """Records ``backing_name`` in the qcow2 header of ``path`` without opening any backing file."""
        self._run('record the backing file of %s' % what, 'rebase', '-q', '-u', '-f', 'qcow2', '-b', backing_name,
                  '-F', backing_format, '--', path, pass_fds=pass_fds)

    def resize_spec(self, spec, size, preallocation, what, pass_fds):
        args = ['resize', '-q'] + (['--preallocation=%s' % preallocation] if preallocation else [])
        self._run('resize %s' % what, *(args + [spec, size]), pass_fds=pass_fds)

    def compare_specs(self, first, second, what, pass_fds):
        """True when both images show the guest the same content (a longer one only zeros beyond)."""
        argv = [self.binary, 'compare', '-q', first, second]
        rc, out, err = self.run_command(argv, pass_fds=pass_fds)
        if rc in (0, 1):
            return rc == 0
        raise QemuImgError('qemu-img failed to compare %s with its converted copy: %s' % (what, (err or out).strip()))
