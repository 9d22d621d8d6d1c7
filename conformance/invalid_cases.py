"""The invalid cases of the conformance suite: files every reader must refuse with a given code.

Like PngSuite's broken files, each case breaks exactly one rule of ``spec/mlarray.md``;
the expected code is the one the reader algorithm (spec section 8) reaches first. Ids are
permanent: a released case is never changed.

The cases live in four modules, by the part of the spec they break; the builders and
headers they share in ``invalidkit.py``. The order of ``INVALID`` is the manifest's.
"""

from __future__ import annotations

from casekit import InvalidCase
from invalid_data_cases import DATA_SECTION, SECTIONS
from invalid_frame_cases import FRAME
from invalid_header_cases import HEADER_RULES
from invalid_rule_cases import AUDIT, SPELLINGS

INVALID: list[InvalidCase] = [*FRAME, *HEADER_RULES, *DATA_SECTION, *SECTIONS, *SPELLINGS, *AUDIT]
