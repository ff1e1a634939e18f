"""A run's report as files a reader opens without running anything (controller only).

    write_default_report(run_dir, title, summary)   report.md with the summary, for an
                                                    experiment without a report of its own
    write_html(run_dir)                             report.html from report.md: one
                                                    self-contained file, images inlined
    write_metrics_csv(run_dir, metrics)             metrics.csv: every number, one per row
    flatten(metrics)                                those numbers by dotted path (also for
                                                    `mip6bench compare` and sweeps)
"""
from __future__ import annotations

import base64
import re
from pathlib import Path

_IMAGE = re.compile(r'<img alt="([^"]*)" src="([^":/]+\.png)" ?/?>')
_STYLE = ("body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
          "pre{background:#f6f6f6;padding:.8em;overflow-x:auto}img{max-width:100%}"
          "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em}")


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_default_report(run_dir: Path, title: str, summary: str) -> None:
    _write(run_dir / "report.md", f"# {title}\n\n```\n{summary}\n```\n")


def write_html(run_dir: Path) -> Path:
    """report.html beside report.md, its PNGs embedded (data: URIs)."""
    import markdown

    body = markdown.markdown((run_dir / "report.md").read_text(), extensions=["tables", "fenced_code"])

    def inline(match: re.Match) -> str:
        image = run_dir / match.group(2)
        if not image.is_file():
            return match.group(0)
        data = base64.b64encode(image.read_bytes()).decode()
        return f'<img alt="{match.group(1)}" src="data:image/png;base64,{data}">'

    body = _IMAGE.sub(inline, body)
    title = re.search(r"<h1>(.*?)</h1>", body)
    page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>"
            f"{title.group(1) if title else run_dir.name}</title><style>{_STYLE}</style></head>"
            f"<body>\n{body}\n</body></html>\n")
    _write(run_dir / "report.html", page)
    return run_dir / "report.html"


def flatten(data, prefix: str = "") -> dict[str, float]:
    """Numeric leaves by dotted path; list items by their "phase"/"name" field, else index."""
    out: dict[str, float] = {}
    if isinstance(data, bool):
        return out
    if isinstance(data, (int, float)):
        return {prefix: data}
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = ((str(x.get("phase", x.get("name", i))) if isinstance(x, dict) else str(i), x)
                 for i, x in enumerate(data))
    else:
        return out
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def write_metrics_csv(run_dir: Path, metrics: dict) -> None:
    rows = ["metric,value"] + [f'"{k}",{v}' if "," in k else f"{k},{v}" for k, v in flatten(metrics).items()]
    _write(run_dir / "metrics.csv", "\n".join(rows) + "\n")
