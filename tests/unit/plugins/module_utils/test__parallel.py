# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""map_threads: results in item order, every item processed, the first failure (in item order) raised."""

from __future__ import annotations

import threading
import time

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._parallel import map_threads


def test_results_keep_item_order_although_items_finish_out_of_order():
    def slow_for_small(n):
        time.sleep((10 - n) * 0.002)
        return n * n
    assert map_threads(slow_for_small, range(10), workers=4) == [n * n for n in range(10)]


def test_work_overlaps_across_threads():
    inside, peak, lock = [0], [0], threading.Lock()

    def call(_item):
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        time.sleep(0.02)        # stands for a libvirt call, which releases the GIL
        with lock:
            inside[0] -= 1
    map_threads(call, range(8), workers=4)
    assert peak[0] == 4


@pytest.mark.parametrize('workers', [1, 3])
def test_first_failure_in_item_order_is_raised_after_every_item_ran(workers):
    seen = []

    def call(n):
        seen.append(n)
        if n in (7, 3):
            raise ValueError('item %d' % n)
        return n
    with pytest.raises(ValueError, match='item 3'):
        map_threads(call, range(10), workers=workers)
    assert sorted(seen) == list(range(10))


def test_empty_and_single_item():
    assert map_threads(lambda n: n + 1, [], workers=4) == []
    assert map_threads(lambda n: n + 1, [41], workers=4) == [42]
