# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Selecting domains by names and glob patterns (``domains``/``exclude`` options).

Real names may hold glob characters (libvirt accepts ``adv[1]``), so a pattern that is exactly the
name of something that exists names that one thing and is not used as a glob: with domains ``adv1``
and ``adv[1]``, ``exclude: ['adv[1]']`` leaves out ``adv[1]``, not ``adv1``. Every place that matches
names or paths (domains, exclude, overrides, disk rules) goes through ``matches``.
"""

from __future__ import annotations

import fnmatch

from ._errors import DomainNotFound, PlanError

SELECTION_ARGUMENT_SPEC = {
    'domains': {'type': 'list', 'elements': 'str', 'default': ['*']},
    'exclude': {'type': 'list', 'elements': 'str', 'default': []},
}

_GLOB_CHARS = frozenset('*?[')


def is_glob(pattern):
    return any(char in _GLOB_CHARS for char in pattern)


def matches(name, pattern, known=frozenset()):
    """Whether ``pattern`` selects ``name``. An exact match always selects; a pattern that is itself
    one of the ``known`` names (everything that could be selected) selects only that name; any other
    pattern with glob characters is a glob."""
    if name == pattern:
        return True
    if not is_glob(pattern) or pattern in known:
        return False
    return fnmatch.fnmatchcase(name, pattern)


def select_names(available, patterns, exclude=(), what='domain', where=''):
    """Names from ``available`` matched by ``patterns`` and by none of ``exclude``, sorted.

    A pattern without glob characters names one thing; if it does not exist, that is an error
    (a typo must not silently tune nothing). Globs may match nothing.
    """
    available = list(available)
    known = frozenset(available)
    missing = [p for p in patterns if not is_glob(p) and p not in known]
    if missing:
        raise DomainNotFound('%s %s not found%s: %s' % (
            what, 'is' if len(missing) == 1 else 'are', where, ', '.join("'%s'" % m for m in missing)),
            missing=missing)
    chosen = [n for n in available if any(matches(n, p, known) for p in patterns)]
    return sorted(n for n in chosen if not any(matches(n, p, known) for p in exclude))


def still_defined(names, found):
    """(names that are in ``found``, a warning naming the others or ''): domains undefined by someone
    else between the listing and the read are left alone, and the run says so."""
    gone = [name for name in names if name not in found]
    kept = [name for name in names if name in found]
    warning = ('domains undefined by another tool during this run, left alone: %s' % ', '.join(gone)) if gone else ''
    return kept, warning


def select_with_overrides(available, params, overrides, where=''):
    """``select_names`` for the ``domains``/``exclude`` options, then a check that every override
    keyed by a literal name targets a selected domain (a typo there must not pass silently)."""
    names = select_names(available, params['domains'], params['exclude'], where=where)
    literal = [p for p in overrides if not is_glob(p) and p not in names]
    if literal:
        raise PlanError('overrides name domains that are not selected or not defined: %s' % ', '.join(literal))
    return names
