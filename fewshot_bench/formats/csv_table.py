"""CSV: one row per table row, numbers in numeric columns (a mapping entry spreads over one column each)."""

from __future__ import annotations

import csv
import io
from typing import Any

from fewshot_bench.registry import register_format
from fewshot_bench.report import Report, ReportFormat


def _number(value: Any) -> Any:
    return f"{value:.4f}" if isinstance(value, float) else value


@register_format("csv")
class CsvFormat(ReportFormat):
    """Comma-separated values for spreadsheets and pandas: numbers stay numbers, marks get their own column."""

    def render(self, report: Report) -> str:
        rows = [report.values(row) for row in report.rows]
        # What every row is about (a table's dataset and split), which other formats say in the caption.
        identity = {key: value for key, value in report.extra.get("identity", {}).items() if value}
        header: list[str] = list(identity)
        for index, column in enumerate(report.columns):
            keys = list(dict.fromkeys(k for row in rows if row[index] is not None and isinstance(row[index].data, dict)
                                      for k in row[index].data))
            header += [f"{column.name} {key}" for key in keys] if keys else [column.name]
            if any(row[index] is not None and row[index].mark for row in rows):
                header.append(f"{column.name} mark")
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n", restval="")
        writer.writeheader()
        for row in rows:
            record: dict[str, Any] = dict(identity)
            for column, value in zip(report.columns, row):
                if value is None or value.data is None:  # an empty entry ("—") stays empty in every sub-column
                    continue
                if isinstance(value.data, dict):
                    record.update({f"{column.name} {k}": _number(v) for k, v in value.data.items()})
                else:
                    record[column.name] = _number(value.data)
                if value.mark:
                    record[f"{column.name} mark"] = value.mark
            writer.writerow(record)
        return out.getvalue()
