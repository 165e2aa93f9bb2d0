# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet report shows host-supplied text as text: Markdown rendered by a CommonMark renderer
with GFM tables (markdown-it-py), and the HTML page, carry no markup a name brought (issue 14, S7)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt

from ansible_collections.kvmio.tuning.plugins.module_utils._report import build_report, to_html, to_markdown

HOSTILE = [
    'x`<img src=x onerror=alert(1)>`',
    '``<script>alert(1)</script>``',
    'a|b</td><td><iframe src=//evil>',
    '[click](javascript:alert(1))',
    '*bold* _it_ <b>b</b> &amp; \\`',
    'two\nlines <svg onload=alert(1)>',
]


def facts_with(name):
    subject = '%s/vda' % name
    return {'domains': [{'name': name, 'disks': [{'device': 'disk', 'source': '/img/%s' % name, 'findings': ['writethrough']}]}],
            'findings': [{'severity': 'high', 'code': 'writethrough', 'subject': subject,
                          'message': 'disk %s runs writethrough' % name, 'fix': 'kvm_disk_tune domains=%s' % name}],
            'summary': {'high': 1}}


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags_of(html):
    parser = Tags()
    parser.feed(html)
    return parser.tags


@pytest.mark.parametrize('name', HOSTILE)
def test_markdown_renders_hostile_names_as_text(name):
    report = build_report({name: facts_with(name)},
                          bench={name: {'results': [{'cache': name, 'io': 'native', 'preallocation': 'off',
                                                     'workload': 'write', 'iops': 10, 'mb_per_s': 1.0}]}})
    markdown = to_markdown(report)
    html = MarkdownIt('commonmark').enable('table').render(markdown)
    allowed = {'h1', 'h2', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'ul', 'li', 'strong', 'code', 'p'}
    found = {tag for tag, _attrs in tags_of(html)}
    assert found <= allowed, (found - allowed, markdown)
    assert not any(attrs for _tag, attrs in tags_of(html) if _tag != 'td' and _tag != 'th')
    # Every table row still has its columns (a bar in a name did not split a cell).
    for row in [line for line in markdown.splitlines() if line.startswith('| ')]:
        assert row.replace('\\|', '').count('|') in (5 + 3, 7), row


@pytest.mark.parametrize('name', HOSTILE)
def test_html_page_escapes_hostile_names(name):
    report = build_report({name: facts_with(name)},
                          bench={name: {'results': [{'cache': name, 'io': 'native', 'preallocation': 'off',
                                                     'workload': 'write', 'iops': '<b>', 'mb_per_s': 1.0}]}})
    html = to_html(report)
    tags = {tag for tag, _attrs in tags_of(html)}
    assert tags <= {'html', 'head', 'meta', 'title', 'style', 'body', 'h1', 'h2', 'p', 'span', 'svg', 'text', 'rect',
                    'table', 'tr', 'th', 'td', 'code'}, tags
    assert not any(key.startswith('on') for _tag, attrs in tags_of(html) for key in attrs)


def test_code_spans_keep_their_text():
    from ansible_collections.kvmio.tuning.plugins.module_utils._report import md_code, md_text

    render = MarkdownIt('commonmark').render
    for text in ('a`b', '``', '`start', 'end`', 'plain'):
        assert render(md_code(text)) == '<p><code>%s</code></p>\n' % text.replace('&', '&amp;')
    assert render(md_text('<b>*x*</b> [a](b)')) == '<p>&lt;b&gt;*x*&lt;/b&gt; [a](b)</p>\n'


@pytest.mark.parametrize('hosts, before, bench, message', [
    ({'h1': 'not facts'}, None, None, 'host h1 must be a dictionary, not str'),
    ({'h1': {'domains': 3}}, None, None, 'host h1: domains must be a list, not int'),
    ({'h1': {'domains': [{'disks': [{'findings': 'writethrough'}]}]}}, None, None,
     'host h1: findings of a disk must be a list, not str'),
    ({'h1': {'summary': {'high': '1'}}}, None, None, 'host h1: summary high must be a whole number, not str'),
    ({'h1': {'findings': [{'severity': 'high'}]}}, None, None, 'host h1: the subject of a finding must be text'),
    ({'h1': facts_with('a')}, {'hosts': {'h1': {'coverage': {'covered': None, 'disks': 1}}}}, None,
     'before: host h1: coverage covered must be a whole number, not NoneType'),
    ({'h1': facts_with('a')}, None, {'h1': {'results': 'fast'}}, 'bench: host h1: results must be a list'),
])
def test_forged_input_is_a_clear_filter_error(hosts, before, bench, message):
    # Issue 14, second review (L8): input not shaped as the modules return it raised TypeError (or
    # AttributeError, KeyError) deep inside; the filter now names the host and the field.
    from ansible.errors import AnsibleFilterError
    from ansible_collections.kvmio.tuning.plugins.filter.fleet_report import fleet_report

    for fmt in ('data', 'markdown', 'html'):
        with pytest.raises(AnsibleFilterError) as err:
            fleet_report(hosts, format=fmt, before=before, bench=bench)
        assert 'fleet_report: %s' % message in str(err.value), str(err.value)
