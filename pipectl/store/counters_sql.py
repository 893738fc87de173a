"""The report's counters the store keeps as it writes (migration m013 took them from triggers):
leads enrolled and stages entered, per pipeline and 15-minute slot, and sends (m015). Admission
counts a whole batch in one statement (`admission_sql.py`); a move or a retry counts its one
lead here; the tick counts a batch of sends in two statements (`sent`)."""

from __future__ import annotations

from collections import Counter

from .batches import chunks, rows_marks
from .database import Part

# Add to a counter row, or create it (the conflict target is report_counts' primary key).
UPSERT = (
    " ON CONFLICT (account_id, pipeline_id, metric, slot, detail, stage_id, from_stage_id)"
    " DO UPDATE SET n = report_counts.n + excluded.n"
)


def slot(at: str) -> str:
    """The 15-minute UTC slot of a stored time, as the counters key it: '2027-03-01T14:15'."""
    return f"{at[:14]}{int(at[14:16]) // 15 * 15:02d}"


class CountersSQL(Part):
    def enrolled(self, enrollment_id: int, at: str) -> None:
        """An enrollment started (its `started_at` was set to `at`)."""
        self.conn.execute(
            "INSERT INTO report_counts (account_id, pipeline_id, metric, detail, slot, stage_id,"
            " from_stage_id, n) SELECT account_id, pipeline_id, 'enrolled', '', ?, 0, 0, 1"
            f" FROM enrollments WHERE id = ?{UPSERT}",
            (slot(at), enrollment_id),
        )

    def entered(self, lead_stage_id: int, at: str) -> None:
        """A lead entered a stage at `at` (the lead_stages row just written): counted from
        the stage it left at that moment, if any."""
        self.conn.execute(
            "INSERT INTO report_counts (account_id, pipeline_id, metric, detail, slot, stage_id,"
            " from_stage_id, n) SELECT e.account_id, e.pipeline_id, 'entered', '', ?,"
            " s.pipeline_stage_id, coalesce((SELECT p.pipeline_stage_id FROM lead_stages p"
            " WHERE p.enrollment_id = s.enrollment_id AND p.id < s.id"
            " AND p.exited_at = s.entered_at ORDER BY p.id DESC LIMIT 1), 0), 1"
            " FROM lead_stages s JOIN enrollments e ON e.id = s.enrollment_id"
            f" WHERE s.id = ?{UPSERT}",
            (slot(at), lead_stage_id),
        )

    def sent(self, sends: list[tuple[int, int, int, str, str]]) -> None:
        """Sends that went out, each (account id, pipeline id, enrollment id, channel,
        sent_at): `sent` per channel, and each enrollment's first send (`contacted`) and first
        email (`emailed`), in the slot of that send. Two statements for the whole batch, each
        of a few rows (migration m015 took this from a per-row trigger)."""
        if not sends:
            return
        firsts: dict[tuple[int, str], tuple[int, int, str]] = {}  # the earliest send's
        counts: Counter[tuple[int, int, str, str, str]] = Counter()
        for account, pipeline, enrollment, channel, at in sends:
            at_slot = slot(at)
            counts[(account, pipeline, "sent", channel, at_slot)] += 1
            firsts.setdefault((enrollment, "contacted"), (account, pipeline, at_slot))
            if channel == "email":
                firsts.setdefault((enrollment, "emailed"), (account, pipeline, at_slot))
        for batch in chunks(sorted(firsts)):
            for enrollment, what in self.conn.execute(
                "INSERT INTO report_firsts (enrollment_id, what)"
                f" VALUES {rows_marks(len(batch), 2)} ON CONFLICT DO NOTHING"
                " RETURNING enrollment_id, what",
                [value for key in batch for value in key],
            ).fetchall():
                account, pipeline, at_slot = firsts[(enrollment, what)]
                counts[(account, pipeline, what, "", at_slot)] += 1
        # Sorted: every writer takes the counter rows' locks in one order.
        rows = sorted((*key, 0, 0, n) for key, n in counts.items())
        for batch in chunks(rows):
            self.conn.execute(
                "INSERT INTO report_counts (account_id, pipeline_id, metric, detail, slot,"
                f" stage_id, from_stage_id, n) VALUES {rows_marks(len(batch), 8)}{UPSERT}",
                [value for row in batch for value in row],
            )
