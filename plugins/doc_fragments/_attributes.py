# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this doc fragment is PRIVATE to the collection. It can change at any time.

from __future__ import annotations


class ModuleDocFragment:

    # Every module of this collection: full check mode and diff mode, on POSIX hosts.
    DOCUMENTATION = r'''
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in C(check_mode)), when in diff mode.
    support: full
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
'''
