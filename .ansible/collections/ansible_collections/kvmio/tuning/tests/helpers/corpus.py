# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""libvirt's own domain XML test data (../shared/corpus), when present."""

from __future__ import annotations

import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.environ.get('KVMIO_CORPUS', os.path.join(os.path.dirname(REPO), 'shared', 'corpus'))


def corpus_documents(valid=True, positive=True):
    """[(relative path, schema_valid, expected)] from the corpus MANIFEST, or [] without a corpus."""
    manifest = os.path.join(CORPUS, 'MANIFEST.tsv')
    if not os.path.exists(manifest):
        return []
    rows = []
    with open(manifest, encoding='utf-8') as handle:
        header = handle.readline().rstrip('\n').split('\t')
        for line in handle:
            row = dict(zip(header, line.rstrip('\n').split('\t')))
            if valid is not None and (row['schema_valid'] == 'yes') != valid:
                continue
            if positive is not None and (row['expected'] == 'positive') != positive:
                continue
            rows.append(row['path'])
    return rows
