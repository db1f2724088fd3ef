"""`tessera-reproduce`: run every paper-figure experiment and write one report (report.md, report.html).

cli.py runs them (runner.py), headlines*.py read their tables beside the papers' numbers, report.py writes it.
"""
