"""`snakemake --report report.html` on the finished tiny workspace: one self-contained page that holds every table
and figure the tables stage wrote, without changing what Snakemake would run."""
import base64
import html
import json
import re

from kdlib.config import load_params
from kdlib.report.studies import report_outputs
from tests.conftest import SNAKEMAKE, run


def script_value(page: str, name: str):
    """The JSON a report page assigns to `var <name>` in its own script (results, categories, front page)."""
    script = name.replace("_", "-")
    return json.loads(re.search(rf'<script id="{script}">\s*var {name} = (.*?);\n', page, re.S).group(1))


def test_report_html_holds_every_table_and_figure(finished, tmp_path):
    out = tmp_path / "report.html"  # outside the shared workspace
    run([SNAKEMAKE, "--report", str(out)], finished)
    page = out.read_text(encoding="utf-8")
    results, categories = script_value(page, "results"), script_value(page, "categories")
    front = html.unescape(script_value(page, "workflow_desc"))

    expected = report_outputs(load_params(finished / "params.yaml"))
    assert sorted(results) == sorted(expected)
    figures = [p for p in expected if p.startswith("results/tiny/figures/")]
    tables = [p for p in expected if p.startswith("results/tiny/tables/")]
    assert figures and tables and "results/tiny/report.md" in expected
    assert sorted(p for sub in categories["Figures"].values() for p in sub) == sorted(figures)
    assert sorted(p for sub in categories["Tables"].values() for p in sub) == sorted(tables)
    for path in expected:  # each file embedded byte for byte, so the page needs no other file
        entry = results[path]
        assert entry["data_uri"].endswith("base64," + base64.b64encode((finished / path).read_bytes()).decode())
        assert entry["caption"] and entry["labels"]
    assert {results[p]["mime_type"] for p in figures} == {"image/png"}

    # The front page prints every table as the tables stage wrote it ...
    for path in tables:
        assert f"javascript:app.showResultInfo('{path}')" in front
        for line in (finished / path).read_text(encoding="utf-8").splitlines():
            assert line in front, (path, line)
    # ... with the computed numbers: the scratch student's test accuracy in its row of the runs table.
    student = json.loads((finished / "results/tiny/runs/student/eval.json").read_text())["test_acc"]
    assert re.search(rf"^\| student +\|.*\| {student:.2f} +\|$", front, re.M)
    assert results["results/tiny/tables/seed000_table1.md"]["labels"] == {"table": "seed 000, table 1"}

    # Offline: no script, style or font fetched from the network when the page is opened.
    assert not re.search(r"<(script|link|img)\b[^>]*\b(src|href)=[\"']?(https?:)?//", page)
    # The report() flags change no job: the workspace is still up to date.
    assert "Nothing to be done" in run([SNAKEMAKE, "-n"], finished).stdout
