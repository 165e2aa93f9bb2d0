# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test-side helpers around the real qemu-img binary."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile


def create(path, size='16M', fmt='qcow2', preallocation=None, backing=None, backing_format='qcow2'):
    args = ['qemu-img', 'create', '-q', '-f', fmt]
    if preallocation:
        args += ['-o', 'preallocation=%s' % preallocation]
    if backing:
        args += ['-b', backing, '-F', backing_format]
    args += [path]
    if size:
        args.append(size)
    subprocess.run(args, check=True)
    return path


def info(path):
    out = subprocess.run(['qemu-img', 'info', '-U', '--output=json', path], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def guest_sha256(path):
    """Checksum of what the guest sees (the raw content), whatever the image format."""
    with tempfile.TemporaryDirectory() as scratch:
        raw = os.path.join(scratch, 'content.raw')
        subprocess.run(['qemu-img', 'convert', '-U', '-O', 'raw', str(path), raw], check=True)
        with open(raw, 'rb') as handle:
            return hashlib.sha256(handle.read()).hexdigest()


def drop_backing_format(path):
    """Turns the backing-format header extension of a qcow2 image into an unknown one (QEMU ignores
    those): the image then names a backing file without its format, as images made by older tools do."""
    import struct

    with open(path, 'r+b') as handle:
        header = handle.read(65536)
        offset = struct.unpack('>I', header[100:104])[0]
        while True:
            kind, length = struct.unpack('>II', header[offset:offset + 8])
            if kind == 0:
                raise AssertionError('no backing format extension in %s' % path)
            if kind == 0xE2792ACA:
                handle.seek(offset)
                handle.write(struct.pack('>I', 0x6b76696f))
                return
            offset += 8 + ((length + 7) & ~7)
