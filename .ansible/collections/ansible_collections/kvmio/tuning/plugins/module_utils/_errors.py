# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Typed errors raised deep in the collection and turned into ``fail_json`` once, in ``main()``."""

from __future__ import annotations


class KvmioError(Exception):
    """An error a user can act on. ``details`` become extra keys of the failed result."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


class LibvirtUnavailable(KvmioError):
    """libvirt cannot be reached (daemon down, wrong URI, missing binding)."""


class DomainNotFound(KvmioError):
    """A domain named literally by the user does not exist."""


class PlanError(KvmioError):
    """The requested policy cannot be applied; nothing has been changed."""


class ApplyError(KvmioError):
    """Applying a plan failed part-way; ``details`` say what was already done."""


class QemuImgError(KvmioError):
    """qemu-img failed or printed something that is not what was asked for."""
