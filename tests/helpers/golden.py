# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Golden files: expected outputs kept under tests/data and compared byte for byte (virtinst's
``diff_compare`` habit). ``pytest --regenerate-goldens`` rewrites them; see tests/README.md."""

from __future__ import annotations

import difflib
import json
import os

import pytest

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'data')


def read(path):
    with open(path, encoding='utf-8', newline='') as handle:
        return handle.read()


def compare(pairs, regenerate=False):
    """Fails with a unified diff unless each file holds exactly its text (plus a final newline).

    ``pairs``: (text produced now, golden file path). With ``regenerate`` the files are rewritten and
    the test passes: review ``git diff tests/data``. Missing files are written and the test fails, so
    a new golden is always read once by a person.
    """
    problems = []
    for actual, path in pairs:
        if not actual.endswith('\n'):
            actual += '\n'
        exists = os.path.exists(path)
        if regenerate or not exists:
            with open(path, 'w', encoding='utf-8', newline='') as handle:
                handle.write(actual)
            if not exists and not regenerate:
                problems.append('new golden file written: %s; read it, then run the test again' % os.path.relpath(path))
            continue
        expected = read(path)
        if actual != expected:
            diff = difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), os.path.relpath(path),
                                        'produced now')
            problems.append('output differs from the golden file (pytest --regenerate-goldens rewrites it; '
                            'review the diff first):\n' + ''.join(diff))
    if problems:
        pytest.fail('\n'.join(problems), pytrace=False)


def json_lines(document):
    """JSON with each list item on one line: a change reads as one line, and a diff shows one line per change."""
    lines = ['{']
    keys = list(document)
    for position, key in enumerate(keys):
        value = document[key]
        comma = ',' if position < len(keys) - 1 else ''
        if isinstance(value, list) and value:
            lines.append('  %s: [' % json.dumps(key))
            last = len(value) - 1
            lines.extend('    %s%s' % (json.dumps(item), ',' if n < last else '') for n, item in enumerate(value))
            lines.append('  ]%s' % comma)
        else:
            lines.append('  %s: %s%s' % (json.dumps(key), json.dumps(value), comma))
    lines.append('}')
    return '\n'.join(lines) + '\n'
