from worker.core.report import csv_lines, safe_cell
from worker.core.rules import Violation


def test_cells_a_spreadsheet_would_run_are_escaped() -> None:
    assert [safe_cell(c) for c in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "ok", "")] == [
        "'=1+1",
        "'+1",
        "'-1",
        "'@SUM(A1)",
        "'\tx",
        "ok",
        "",
    ]


def test_a_rejected_row_gets_one_line_per_rule() -> None:
    lines = csv_lines(
        7,
        "REC_00007",
        '=HYPERLINK("http://x")',
        [Violation("price", "-1", "must be greater than 0"), Violation("sku", "a b", "pattern")],
    )

    assert lines == (
        '7,REC_00007,"\'=HYPERLINK(""http://x"")",price,\'-1,must be greater than 0\r\n'
        '7,REC_00007,"\'=HYPERLINK(""http://x"")",sku,a b,pattern\r\n'
    )
