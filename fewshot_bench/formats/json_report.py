"""JSON: the report as data: title, columns, one object per row (numbers as numbers), caption."""

from __future__ import annotations

import json
import math
from typing import Any

from fewshot_bench.registry import register_format
from fewshot_bench.report import Report, ReportFormat


def _plain(value: Any) -> Any:
    """JSON-safe: NaN and infinities (an interval over one seed) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@register_format("json")
class JsonFormat(ReportFormat):
    """A JSON document, for scripts and dashboards (`jq`, pandas.json_normalize)."""

    def render(self, report: Report) -> str:
        rows = []
        for row in report.rows:
            entry = {}
            for column, value in zip(report.columns, report.values(row)):
                if value is None:
                    entry[column.name] = None
                    continue
                data = value.data
                if value.mark:
                    data = {**data, "mark": value.mark} if isinstance(data, dict) else {"value": data, "mark": value.mark}
                entry[column.name] = data
            kind = (report.extra.get("context_rows") or {}).get(len(rows))
            if kind:
                entry["context"] = kind
            rows.append(entry)
        document = {"kind": report.kind, "title": report.title, "columns": [c.name for c in report.columns],
                    "rows": rows, "caption": report.caption, **report.extra}
        return json.dumps(_plain(document), indent=1, ensure_ascii=False) + "\n"
