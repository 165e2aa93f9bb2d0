# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""The fleet report: kvm_io_info (and kvm_io_bench) results of many hosts -> JSON, Markdown, HTML.

Pure and self-contained: the HTML page has its charts as inline SVG, no scripts, no external files.

Every text that comes from a host (host and domain names, disk paths, messages) is escaped for where
it lands: HTML text and attributes (``html.escape``), Markdown text (``md_text``) and Markdown code
spans (``md_code``), so a name such as ``x`<img src=x onerror=alert(1)>`` shows as itself.
"""

from __future__ import annotations

import re
from html import escape

from ._disk_policy import ADVISORIES, DISK_RULES, SEVERITIES
COLOURS = {'critical': '#b3261e', 'high': '#e8710a', 'medium': '#f9ab00', 'low': '#1a73e8',
           'before': '#9aa0a6', 'after': '#188038', 'bar': '#1a73e8'}
# Findings that mean a disk is not yet on the collection's disk policy: what kvm_disk_tune fixes.
POLICY_FINDINGS = frozenset(c.code for c in DISK_RULES + ADVISORIES if c.fixed_by == 'kvm_disk_tune')


# Markdown punctuation that can open markup (emphasis, links, code, HTML, tables, entities); CommonMark
# lets any ASCII punctuation be backslash-escaped, and GFM tables take \| as a literal bar.
_MD_SPECIAL = re.compile(r'([\\`*_{}\[\]()<>&|#!~"\'])')


def _one_line(value):
    return ' '.join(str(value).splitlines()) if value is not None else ''


def md_text(value):
    """``value`` as literal Markdown text (a table cell, a list item, a heading)."""
    return _MD_SPECIAL.sub(r'\\\1', _one_line(value))


def md_code(value, in_table=False):
    """``value`` as a Markdown code span: a backtick fence longer than any run inside it (HTML in a
    code span is text); in a GFM table, bars become \\| (which GFM reads as a bar even in code)."""
    text = _one_line(value)
    fence = '`' * (max([len(run) for run in re.findall('`+', text)] + [0]) + 1)
    if text.startswith(('`', ' ')) or text.endswith(('`', ' ')):
        text = ' %s ' % text
    if in_table:
        text = text.replace('|', '\\|')
    return '%s%s%s' % (fence, text, fence)


def coverage(facts):
    """(disks on policy, tunable disks) of one host's kvm_io_info result."""
    total = covered = 0
    for domain in facts.get('domains', []):
        for disk in domain.get('disks', []):
            if disk.get('device', 'disk') != 'disk' or not disk.get('source'):
                continue
            total += 1
            if not POLICY_FINDINGS & set(disk.get('findings', [])):
                covered += 1
    return covered, total


class ReportInputError(ValueError):
    """What the report was given is not what kvm_io_info, kvm_io_bench or an earlier report returns."""


def _expect(value, kind, where):
    names = {dict: 'a dictionary', list: 'a list', int: 'a whole number', str: 'text'}
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ReportInputError('%s must be %s, not %s (is it a kvm_io_info or kvm_io_bench result?)'
                               % (where, names[kind], type(value).__name__))
    return value


def check_input(hosts, before=None, bench=None):
    """Raises ReportInputError naming the host and the field where the input is not what the modules
    return (facts copied by hand, another tool's output): a clear error, not a TypeError inside."""
    _expect(hosts, dict, 'the input')
    for name, facts in hosts.items():
        where = 'host %s' % name
        _expect(facts, dict, where)
        for domain in _expect(facts.get('domains', []), list, '%s: domains' % where):
            _expect(domain, dict, '%s: each of domains' % where)
            for disk in _expect(domain.get('disks', []), list, '%s: disks' % where):
                _expect(disk, dict, '%s: each of disks' % where)
                _expect(disk.get('findings', []), list, '%s: findings of a disk' % where)
        for severity, count in _expect(facts.get('summary', {}), dict, '%s: summary' % where).items():
            _expect(count, int, '%s: summary %s' % (where, severity))
        for finding in _expect(facts.get('findings', []), list, '%s: findings' % where):
            _expect(finding, dict, '%s: each of findings' % where)
            for key in ('severity', 'subject', 'message', 'fix'):
                _expect(finding.get(key), str, '%s: the %s of a finding' % (where, key))
    if before is not None:
        for name, entry in _expect(_expect(before, dict, 'before').get('hosts', {}), dict, 'before: hosts').items():
            coverage = _expect(_expect(entry, dict, 'before: host %s' % name).get('coverage'), dict,
                               'before: host %s: coverage' % name)
            for key in ('covered', 'disks'):
                _expect(coverage.get(key), int, 'before: host %s: coverage %s' % (name, key))
    if bench is not None:
        for name, result in _expect(bench, dict, 'bench').items():
            if not result:
                continue
            for row in _expect(_expect(result, dict, 'bench: host %s' % name).get('results', []), list,
                               'bench: host %s: results' % name):
                _expect(row, dict, 'bench: host %s: each of results' % name)


def build_report(hosts, before=None, bench=None):
    """``hosts``: {host: kvm_io_info result}; ``before``: an earlier report's JSON; ``bench``: {host: kvm_io_bench}.
    Raises ReportInputError when the input is not shaped as those are."""
    check_input(hosts, before, bench)
    report = {'hosts': {}, 'totals': {s: 0 for s in SEVERITIES}}
    for name in sorted(hosts):
        facts = hosts[name]
        covered, total = coverage(facts)
        summary = facts.get('summary', {})
        entry = {'domains': len(facts.get('domains', [])), 'summary': {s: summary.get(s, 0) for s in SEVERITIES},
                 'coverage': {'covered': covered, 'disks': total}, 'findings': facts.get('findings', [])}
        previous = (before or {}).get('hosts', {}).get(name)
        if previous:
            entry['coverage_before'] = previous['coverage']
        if bench and bench.get(name):
            entry['bench'] = {'results': bench[name].get('results', []),
                              'recommendation': bench[name].get('recommendation')}
        report['hosts'][name] = entry
        for severity in SEVERITIES:
            report['totals'][severity] += entry['summary'][severity]
    return report


def to_markdown(report):
    lines = ['# KVM disk I/O fleet report', '', '| host | domains | disks on policy | %s |' % ' | '.join(SEVERITIES),
             '|---|---|---|%s' % ('---|' * len(SEVERITIES))]
    for name, entry in report['hosts'].items():
        cov = entry['coverage']
        before = entry.get('coverage_before')
        cover = '%d/%d' % (cov['covered'], cov['disks'])
        if before:
            cover += ' (before: %d/%d)' % (before['covered'], before['disks'])
        counts = ' | '.join(str(entry['summary'][s]) for s in SEVERITIES)
        lines.append('| %s | %d | %s | %s |' % (md_text(name), entry['domains'], cover, counts))
    lines += ['', '## Findings', '']
    for name, entry in report['hosts'].items():
        for finding in entry['findings']:
            values = (md_text(finding['severity']), md_text(name), md_code(finding['subject']),
                      md_text(finding['message']), md_code(finding['fix']))
            lines.append('- **%s** %s %s: %s. Fix: %s' % values)
    if not any(entry['findings'] for entry in report['hosts'].values()):
        lines.append('None.')
    for name, entry in report['hosts'].items():
        if entry.get('bench'):
            lines += ['', '## Benchmark on %s' % md_text(name), '',
                      '| cache | io | preallocation | workload | IOPS | MB/s |', '|---|---|---|---|---|---|']
            keys = ('cache', 'io', 'preallocation', 'workload', 'iops', 'mb_per_s')
            lines += ['| %s |' % ' | '.join(md_text(r.get(k)) for k in keys) for r in entry['bench']['results']]
    return '\n'.join(lines) + '\n'


def _bars(rows, width=640, bar_height=18, label_width=230, unit=''):
    """Horizontal bar chart as inline SVG; ``rows``: [(label, value, colour)]."""
    peak = max([value for _l, value, _c in rows] + [1])
    height = len(rows) * (bar_height + 6) + 6
    parts = ['<svg role="img" width="%d" height="%d" viewBox="0 0 %d %d">' % (width, height, width, height)]
    for index, (label, value, colour) in enumerate(rows):
        y = 6 + index * (bar_height + 6)
        length = int((width - label_width - 70) * value / peak)
        parts.append('<text x="0" y="%d" font-size="12">%s</text>' % (y + 13, escape(label)))
        parts.append('<rect class="bar" x="%d" y="%d" width="%d" height="%d" fill="%s"/>'
                     % (label_width, y, max(length, 1), bar_height, colour))
        parts.append('<text x="%d" y="%d" font-size="12">%s%s</text>' % (label_width + length + 6, y + 13,
                                                                         escape(str(value)), unit))
    parts.append('</svg>')
    return ''.join(parts)


def to_html(report, title='KVM disk I/O fleet report'):
    body = ['<h1>%s</h1>' % escape(title)]
    totals = report['totals']
    body.append('<p class="totals">%s</p>' % ' &middot; '.join(
        '<span style="color:%s">%s: %d</span>' % (COLOURS[s], s, totals[s]) for s in SEVERITIES))
    body.append('<h2>Findings per host</h2>')
    rows = [('%s %s' % (name, severity), entry['summary'][severity], COLOURS[severity])
            for name, entry in report['hosts'].items() for severity in SEVERITIES]
    body.append(_bars(rows))
    body.append('<h2>Disks on policy</h2>')
    rows = []
    for name, entry in report['hosts'].items():
        cov = entry['coverage']
        if entry.get('coverage_before'):
            before = entry['coverage_before']
            rows.append(('%s before' % name, _percent(before), COLOURS['before']))
        rows.append(('%s now' % name, _percent(cov), COLOURS['after']))
    body.append(_bars(rows, unit='%'))
    for name, entry in report['hosts'].items():
        if entry.get('bench'):
            body.append('<h2>4K write IOPS on %s</h2>' % escape(name))
            rows = [('%s/%s %s' % (r['cache'], r['io'], r['preallocation']), _number(r['iops']), COLOURS['bar'])
                    for r in entry['bench']['results'] if r['workload'] == 'write']
            body.append(_bars(rows))
    body.append('<h2>Findings</h2><table><tr><th>severity</th><th>host</th><th>subject</th><th>finding</th>'
                '<th>fix</th></tr>')
    for name, entry in report['hosts'].items():
        for finding in entry['findings']:
            body.append('<tr><td style="color:%s">%s</td><td>%s</td><td>%s</td><td>%s</td><td><code>%s</code></td>'
                        '</tr>' % (COLOURS.get(finding['severity'], '#202124'), escape(str(finding['severity'])),
                                   escape(name),
                                   escape(finding['subject']), escape(finding['message']), escape(finding['fix'])))
    body.append('</table>')
    style = ('body{font-family:sans-serif;margin:2em;color:#202124}table{border-collapse:collapse}'
             'td,th{border:1px solid #dadce0;padding:4px 8px;font-size:13px;text-align:left}h2{margin-top:1.5em}')
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>%s</title><style>%s</style></head>'
            '<body>%s</body></html>\n' % (escape(title), style, '\n'.join(body)))


def _number(value):
    """A bar's length: a number, or 0 for anything else (a bench result is data from a host)."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _percent(cov):
    return round(100 * cov['covered'] / cov['disks']) if cov['disks'] else 100
