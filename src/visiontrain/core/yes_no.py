"""The two labels of a yes/no column and the words read as them, in one dependency-free place.

Kept apart from :mod:`visiontrain.core.table_values` (which needs pandas) so that the config checks can name them
without importing pandas: a config error answers in about a second.
"""

from __future__ import annotations

YES_NO = ("No", "Yes")
YES_NO_WORDS = {**dict.fromkeys(("yes", "y", "true", "1", "1.0"), "Yes"),
                **dict.fromkeys(("no", "n", "false", "0", "0.0"), "No")}
