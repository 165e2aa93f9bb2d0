# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs the @pytest.mark.embed tests of each test file in a child pytest process of its own.

Once a process has opened libvirt's embedded QEMU driver, that driver claims every qemu:// URI
in the process, so qemu:///system tests and embedded-driver tests cannot share a process. And a
process can register the embedded driver only a limited number of times ("Too many drivers, cannot
register QEMU"), so each file gets a fresh process rather than all of them one.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def embed_files():
    """Test files that have embedded-driver tests (marked directly, or through the libvirt_env fixture)."""
    found = []
    for path in sorted(glob.glob(os.path.join(HERE, '**', 'test_*.py'), recursive=True)):
        if os.path.basename(path) == os.path.basename(__file__):
            continue
        with open(path, encoding='utf-8') as handle:
            text = handle.read()
        if 'mark.embed' in text or 'libvirt_env' in text:
            found.append(os.path.relpath(path, HERE))
    return found


@pytest.mark.parametrize('path', embed_files())
def test_embedded_driver_tests_pass(path):
    if os.environ.get('KVMIO_EMBED_PROCESS') == '1':
        pytest.skip('this is the child process already')
    env = dict(os.environ, KVMIO_EMBED_PROCESS='1')
    proc = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-m', 'embed', '-p', 'no:cacheprovider',
                           '-rfE', os.path.join(HERE, path)], env=env, capture_output=True, text=True, check=False)
    print(proc.stdout[-4000:])
    assert proc.returncode == 0, proc.stdout[-30000:] + proc.stderr[-5000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert ' passed' in summary and 'failed' not in summary and 'error' not in summary, summary
