"""Wootric's timestamps as Unix seconds, the unit of its filters.

The API renders times as Ruby's `Time#to_s` (`2018-01-02 23:03:41 -0800`), sometimes without an offset
(then the account's zone, America/Los_Angeles) and sometimes as ISO-8601 with millis
(`2015-02-12T06:29:27.000-08:00`); some fields are plain Unix seconds. The offset is always honoured:
the same wall time means different instants in January (-0800) and August (-0700).
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

NAIVE_ZONE = ZoneInfo("America/Los_Angeles")

_TIMESTAMP = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?\s*(Z|[+-]\d{2}:?\d{2})?$")


def unix_seconds(value: object) -> int:
    """The Unix second (floored) of a Wootric timestamp; `ValueError` for anything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return math.floor(value)
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {value!r}")
    match = _TIMESTAMP.match(value.strip())
    if not match:
        raise ValueError(f"not a timestamp: {value!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    offset = match.group(8)
    zone: tzinfo
    if offset is None:
        zone = NAIVE_ZONE
    elif offset == "Z":
        zone = timezone.utc
    else:
        digits = offset.replace(":", "")
        sign = -1 if digits[0] == "-" else 1
        zone = timezone(sign * timedelta(hours=int(digits[1:3]), minutes=int(digits[3:5])))
    return math.floor(datetime(year, month, day, hour, minute, second, tzinfo=zone).timestamp())
