# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Golden in/out tests of the XML transforms and the fleet report, kept as virt-manager's virtinst keeps
them (tests/data/xmlparse, tests/data/report): a small input, the exact output, compared byte for byte.

XML cases (tests/helpers/golden_cases.py names each one and its options):
    tests/data/xmlparse/<folder>/<case>-in.xml       the domain as a user has it
    tests/data/xmlparse/<folder>/<case>-out.xml      the planned XML, exactly as written back
    tests/data/xmlparse/<folder>/<case>-changes.json the plan's changes, warnings and errors
Each input and output is valid against libvirt's RELAX NG schema, and planning the output again changes
nothing. tests/integration/test_goldens_libvirt.py defines each output on libvirt's embedded driver.

Report cases: tests/data/report/<case>-facts.json (kvm_io_info results recorded on the embedded driver by
tests/helpers/record_report_facts.py) -> <case>.md (to_markdown) and <case>.html (to_html).

After a deliberate change of behaviour, rewrite the goldens and read the diff before committing:
    .venv/bin/python -m pytest tests/unit/test_goldens.py --regenerate-goldens
    git diff tests/data
A new case: add its -in.xml and a line in golden_cases.py; the first run writes its goldens and fails
once, so that someone reads them.
"""

from __future__ import annotations

import glob
import json
import os

import pytest
from lxml import etree

from ansible_collections.kvmio.tuning.plugins.module_utils._bus_convert import CONVERTIBLE_FROM
from ansible_collections.kvmio.tuning.plugins.module_utils._report import build_report, to_html, to_markdown
from helpers import golden
from helpers.corpus import CORPUS
from helpers.golden_cases import BY_NAME, CASES, XMLPARSE

REPORT = os.path.join(golden.DATA, 'report')
SCHEMAS = (os.path.join(CORPUS, 'schemas', 'domain.rng'),       # libvirt 10.7, as the corpus sweep uses
           '/usr/share/libvirt/schemas/domain.rng')             # the host's libvirt, where the corpus is absent
_SCHEMA = []


def schema():
    if not _SCHEMA:
        found = [path for path in SCHEMAS if os.path.exists(path)]
        if not found:
            pytest.fail('no libvirt domain schema at %s (set KVMIO_CORPUS or install libvirt-daemon)'
                        % ', '.join(SCHEMAS))
        _SCHEMA.append(etree.RelaxNG(etree.parse(found[0])))
    return _SCHEMA[0]


def assert_valid(text, what):
    rng = schema()
    assert rng.validate(etree.fromstring(text.encode('utf-8'))), '%s is not valid against domain.rng: %s' % (
        what, rng.error_log)


def changes_document(plan):
    return golden.json_lines({'changes': [c.as_dict() for c in plan.changes], 'warnings': plan.warnings,
                              'errors': plan.errors})


@pytest.mark.parametrize('name', sorted(BY_NAME))
def test_xml_golden(name, regenerate_goldens):
    case = BY_NAME[name]
    source = golden.read(case.path('in.xml'))
    assert_valid(source, 'the input')
    plan = case.plan(source)
    golden.compare([(plan.after, case.path('out.xml')), (changes_document(plan), case.path('changes.json'))],
                   regenerate_goldens)
    assert_valid(plan.after, 'the output')
    again = case.plan(plan.after)
    assert not again.changed and again.changes == [], 'planning the output again changes it: %s' % again.changes


def test_every_input_has_a_case_and_every_golden_an_input():
    inputs = {os.path.relpath(p, XMLPARSE)[:-len('-in.xml')]
              for p in glob.glob(os.path.join(XMLPARSE, '*', '*-in.xml'))}
    assert inputs == set(BY_NAME), 'inputs without a case: %s; cases without an input: %s' % (
        sorted(inputs - set(BY_NAME)), sorted(set(BY_NAME) - inputs))
    files = {os.path.relpath(p, XMLPARSE) for p in glob.glob(os.path.join(XMLPARSE, '*', '*'))}
    expected = {'%s-%s' % (name, suffix) for name in BY_NAME for suffix in ('in.xml', 'out.xml', 'changes.json')}
    assert files == expected, 'stray files: %s' % sorted(files - expected)


def test_case_names_are_unique():
    assert len(BY_NAME) == len(CASES)


# --- every kind of bus conversion appears in a golden ---------------------------------------------------

BUS_CONVERSION_KINDS = (
    'controller added', 'controller converted in place', 'controller removed', 'emptied controller kept',
    'target renamed', 'target kept', 'address rewritten', 'address added', 'address dropped',
    'scsi disk moved to another controller', 'queues set', 'iothread carried',
    'virtio-only settings dropped', 'virtio-blk-incompatible elements dropped', 'boot disk held', 'boot disk moved',
    'disk kept by a per-disk override',
) + tuple('%s to %s' % (old, new) for new, olds in sorted(CONVERTIBLE_FROM.items()) for old in sorted(olds))


def _controllers(root):
    return {(c.get('type'), c.get('index', '0')): c for c in root.findall('devices/controller')}


def _on_controller(root, ctype, index):
    bus_of = {'ide': 'ide', 'sata': 'sata', 'scsi': 'scsi'}
    count = 0
    for disk in root.findall('devices/disk'):
        address = disk.find('address')
        controller = address.get('controller', '0') if address is not None and address.get('type') == 'drive' else '0'
        if bus_of.get(disk.find('target').get('bus')) == ctype and controller == index:
            count += 1
    return count


def conversion_kinds(case):
    """The kinds of bus conversion one golden shows, read from its input, output and change list."""
    before = etree.fromstring(golden.read(case.path('in.xml')).encode())
    after = etree.fromstring(golden.read(case.path('out.xml')).encode())
    record = json.loads(golden.read(case.path('changes.json')))
    kinds = set()
    for change in record['changes']:
        if change['device'].startswith('controller') and change['setting'] == 'model':
            kinds.add('controller added' if change['before'] is None else
                      'controller removed' if change['after'] is None else 'controller converted in place')
            if 'iothread=' in (change['after'] or ''):
                kinds.add('iothread carried')
        kinds.update({'target': ['target renamed'], 'queues': ['queues set'],
                      'controller': ['scsi disk moved to another controller']}.get(change['setting'], []))
    for key in _controllers(before):
        if key in _controllers(after) and _on_controller(before, *key) and not _on_controller(after, *key):
            kinds.add('emptied controller kept')
    for old, new in zip(before.findall('devices/disk'), after.findall('devices/disk')):
        old_target, new_target = old.find('target'), new.find('target')
        old_address, new_address = old.find('address'), new.find('address')
        if old_address is not None and new_address is None:
            kinds.add('address dropped')
        elif old_address is None and new_address is not None:
            kinds.add('address added')
        elif new_address is not None and dict(old_address.attrib) != dict(new_address.attrib):
            kinds.add('address rewritten')
        if old_target.get('bus') == new_target.get('bus'):
            if case.options.bus != 'keep' and old.get('device', 'disk') == 'disk' and any(
                    rule.matches(old_target.get('dev'), None) for rule in case.options.disk_rules):
                kinds.add('disk kept by a per-disk override')
            continue
        kinds.add('%s to %s' % (old_target.get('bus'), new_target.get('bus')))
        if old_target.get('dev') == new_target.get('dev'):
            kinds.add('target kept')
        old_driver, new_driver = old.find('driver'), new.find('driver')
        if old_driver is not None and any(old_driver.get(a) and (new_driver is None or not new_driver.get(a))
                                          for a in ('queues', 'queue_size', 'ioeventfd', 'event_idx')):
            kinds.add('virtio-only settings dropped')
        if any(old.find(tag) is not None and new.find(tag) is None for tag in ('wwn', 'vendor', 'product')) or \
                (old_target.get('rotation_rate') and not new_target.get('rotation_rate')):
            kinds.add('virtio-blk-incompatible elements dropped')
    for warning in record['warnings']:
        if 'is the boot disk and stays' in warning:
            kinds.add('boot disk held')
        elif 'is the boot disk and moves' in warning:
            kinds.add('boot disk moved')
    return kinds


def test_every_bus_conversion_kind_has_a_golden():
    # A new kind of conversion (a new source bus, a new element dropped) needs a golden that shows it.
    shown = {}
    for case in CASES:
        if case.name.startswith('bus/'):
            for kind in conversion_kinds(case):
                shown.setdefault(kind, case.name)
    missing = [kind for kind in BUS_CONVERSION_KINDS if kind not in shown]
    assert not missing, 'no golden shows: %s' % missing
    assert set(shown) <= set(BUS_CONVERSION_KINDS), 'name the new kinds in BUS_CONVERSION_KINDS: %s' % (
        set(shown) - set(BUS_CONVERSION_KINDS))


# --- the fleet report ---------------------------------------------------------------------------------------

REPORT_CASES = sorted(os.path.basename(p)[:-len('-facts.json')]
                      for p in glob.glob(os.path.join(REPORT, '*-facts.json')))


def test_report_cases_exist():
    assert REPORT_CASES, 'no recorded facts under %s' % REPORT


@pytest.mark.parametrize('name', REPORT_CASES)
def test_report_golden(name, regenerate_goldens):
    recorded = json.loads(golden.read(os.path.join(REPORT, name + '-facts.json')))
    before = build_report(recorded['before']) if recorded.get('before') else None
    report = build_report(recorded['after'], before=before, bench=recorded.get('bench'))
    golden.compare([(to_markdown(report), os.path.join(REPORT, name + '.md')),
                    (to_html(report), os.path.join(REPORT, name + '.html'))], regenerate_goldens)
