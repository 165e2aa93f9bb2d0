# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""qcow2 planning: sizes, validation, preallocation state, drift and the chosen action."""

from __future__ import annotations

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._errors import PlanError
from ansible_collections.kvmio.tuning.plugins.module_utils._image_plan import WantedImage, drift_of, human_size, \
    parse_size, plan_image, preallocation_state, validate_wanted

G = 1 << 30


@pytest.mark.parametrize('text, size', [('10G', 10 * G), ('512M', 512 << 20), ('64k', 65536), ('1.5T', 3 << 39),
                                        ('4096', 4096), ('2GiB', 2 * G), (1024, 1024)])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize('text', ['ten', '10X', '-1G', '0', ''])
def test_parse_size_refuses_garbage(text):
    with pytest.raises(PlanError) as err:
        parse_size(text)
    assert "'%s'" % text in err.value.msg or 'larger than 0' in err.value.msg


def test_human_size():
    assert [human_size(s) for s in (10 * G, 65536, 1000)] == ['10G', '64K', '1000']


@pytest.mark.parametrize('wanted, version, message', [
    (WantedImage(size=G, cluster_size=3000), (7, 2, 0), 'cluster_size 3000 must be a power of two from 512 to 2M'),
    (WantedImage(size=G, cluster_size=4 << 20), (7, 2, 0), 'cluster_size 4M must be a power of two'),
    (WantedImage(size=G, extended_l2=True, cluster_size=4096), (7, 2, 0),
     'cluster_size 4K must be a power of two from 16K to 2M with extended_l2'),
    (WantedImage(size=G, extended_l2=True), (5, 1, 0), 'extended_l2 needs QEMU 5.2.0 or later; this host has 5.1.0'),
    (WantedImage(size=G, lazy_refcounts=True, compat='0.10'), (7, 2, 0), 'lazy_refcounts needs compat 1.1'),
    (WantedImage(size=G, backing_file='/base.qcow2'), (7, 2, 0),
     'preallocation=metadata with a backing file needs extended_l2=true'),
])
def test_validation_refuses_what_qemu_refuses(wanted, version, message):
    with pytest.raises(PlanError) as err:
        validate_wanted(wanted, version)
    assert message in err.value.msg


def test_validation_accepts_overlay_with_extended_l2():
    validate_wanted(WantedImage(size=None, backing_file='/base.qcow2', extended_l2=True, cluster_size=128 << 10),
                    (7, 2, 0))


# What `qemu-img map --output=json` prints for each preallocation mode (QEMU 7.2).
THIN = [{'start': 0, 'length': 8 << 20, 'depth': 0, 'present': False, 'zero': True, 'data': False}]
METADATA = [{'start': 0, 'length': 8 << 20, 'depth': 0, 'present': True, 'zero': True, 'data': True,
             'offset': 327680}]
FALLOC = [{'start': 0, 'length': 8 << 20, 'depth': 0, 'present': True, 'zero': False, 'data': True,
           'offset': 327680}]
WRITTEN_THIN = [{'start': 0, 'length': 65536, 'depth': 0, 'zero': False, 'data': True, 'offset': 327680},
                {'start': 65536, 'length': 8 << 20, 'depth': 0, 'zero': True, 'data': False}]
OVERLAY = [{'start': 0, 'length': 8 << 20, 'depth': 1, 'zero': True, 'data': False}]


@pytest.mark.parametrize('extents, state', [(THIN, 'off'), (METADATA, 'metadata'), (FALLOC, 'falloc'),
                                            (WRITTEN_THIN, 'off'), (OVERLAY, 'off'), ([], 'off')])
def test_preallocation_state(extents, state):
    assert preallocation_state(extents) == state


def facts(**kw):
    base = {'format': 'qcow2', 'virtual_size': G, 'actual_size': 200000, 'cluster_size': 65536, 'compat': '1.1',
            'lazy_refcounts': False, 'extended_l2': False, 'backing_file': None, 'backing_format': None,
            'preallocation': 'metadata'}
    base.update(kw)
    return base


def test_matching_image_has_no_drift_and_more_preallocation_is_fine():
    assert drift_of(facts(), WantedImage(size=G)) == {}
    assert drift_of(facts(preallocation='falloc'), WantedImage(size=G)) == {}
    assert drift_of(facts(preallocation='off'), WantedImage(size=G, preallocation='off')) == {}


def test_drift_lists_each_field():
    drift = drift_of(facts(preallocation='off', cluster_size=2 << 20, lazy_refcounts=True),
                     WantedImage(size=2 * G))
    assert drift == {'virtual_size': (G, 2 * G), 'lazy_refcounts': (True, False), 'preallocation': ('off', 'metadata')}
    assert drift_of(facts(format='raw'), WantedImage(size=G)) == {'format': ('raw', 'qcow2')}


@pytest.mark.parametrize('have, wanted, resize, convert, action', [
    (None, WantedImage(size=G), 'keep', False, 'create'),
    (facts(), WantedImage(size=G), 'keep', False, 'none'),
    (facts(), WantedImage(size=None), 'keep', False, 'none'),
    (facts(), WantedImage(size=2 * G), 'keep', False, 'drift'),
    (facts(), WantedImage(size=2 * G), 'grow', False, 'grow'),
    (facts(preallocation='off'), WantedImage(size=G), 'keep', False, 'drift'),
    (facts(preallocation='off'), WantedImage(size=G), 'keep', True, 'convert'),
    (facts(format='raw', compat=None), WantedImage(size=None), 'keep', True, 'convert'),
])
def test_plan_actions(have, wanted, resize, convert, action):
    assert plan_image('/img/a.qcow2', have, wanted, resize, convert).action == action


def test_shrink_is_always_refused():
    for resize in ('keep', 'grow'):
        with pytest.raises(PlanError) as err:
            plan_image('/img/a.qcow2', facts(virtual_size=2 * G), WantedImage(size=G), resize, True)
        assert err.value.msg == ("/img/a.qcow2 is 2G and the requested size is 1G: images are never shrunk (the "
                                 "guest's data at the end would be lost); ask for a size of at least 2G")


def test_create_needs_a_size():
    with pytest.raises(PlanError) as err:
        plan_image('/img/new.qcow2', None, WantedImage(size=None))
    assert err.value.msg == '/img/new.qcow2 does not exist and no size was given to create it'


def test_drift_reason_names_the_switches():
    plan = plan_image('/img/a.qcow2', facts(preallocation='off'), WantedImage(size=2 * G))
    assert plan.reason == 'left alone; set resize=grow to grow it or convert=true to rewrite it with the requested settings'
