"""The run's closing table, one row per stream, then why each stream ran as it did and what went wrong."""

from __future__ import annotations

from collections.abc import Sequence

from wootric_ingest.run.progress import Progress
from wootric_ingest.run.result import StreamResult


def summary(results: Sequence[StreamResult], progress: Progress) -> str:
    header = (
        "stream",
        "sync",
        "pages",
        "fetched",
        "inserted",
        "updated",
        "deleted",
        "marked deleted",
        "table rows",
        "requests",
        "seconds",
        "records/s",
        "status",
    )
    left_aligned = {0, 1, len(header) - 1}
    rows = []
    for r in results:
        fetched = progress.streams.get(r.stream_name)
        pages = str(fetched.pages) if fetched else "-"
        rate = f"{fetched.rate(progress.clock()):.0f}" if fetched else "-"
        rows.append(
            (
                r.stream_name,
                r.mode.value if r.mode else "",
                pages,
                str(r.records_fetched),
                str(r.rows_inserted),
                str(r.rows_updated),
                str(r.rows_deleted),
                str(r.rows_marked_deleted),
                "-" if r.table_rows is None else str(r.table_rows),
                str(r.api_requests),
                f"{r.seconds:.1f}",
                rate,
                r.status,
            )
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i in left_aligned else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))
        ).rstrip()

    lines = [fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows), ""]
    for r in results:
        line = f"{r.stream_name}: {r.mode.value} sync, {r.reason}" if r.mode else f"{r.stream_name}:"
        if r.records_rejected:
            line += f"; {r.records_rejected} records without a usable id kept in _wootric_ingest/rejected"
        if r.left_out:
            left = ", ".join(f"{n} {reason}" for reason, n in sorted(r.left_out.items()))
            line += f"; responses left out of the NPS counts: {left}"
        if r.error:
            line += f"; failed: {r.error.splitlines()[0]}"
        lines.append(line)
    return "\n".join(lines)
