#!/usr/bin/env python
"""The proof table of issue #24 item 7 from ``nerkd report --redact`` outputs (their ``report.json``).

For each report, each model and each bias asked (default: 0 and the report's ``redact.bias``), one row per
redaction (model alone, model + rules): token-level (character) recall of PER, LOC, ORG, of the rule labels
together (every gold label the rules can give: PHONE, NIR, DATE, the patterns' labels...) and of all labels,
the documents fully redacted and the over-redaction, as ``nerkd report`` computed them (nothing recomputed
here but the rule labels' sum of covered characters over their characters).

    python benchmarks/redact_leak_table.py runs/hw/report.json runs/ids/report.json --bias 0 --bias 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson


def pct(num: int, den: int) -> str:
    return f"{100 * num / den:.1f}" if den else "-"


def cells(score: dict, rule_labels: list[str]) -> list[str]:
    per = score["per_label"]

    def recall(label: str) -> str:
        row = per.get(label)
        return pct(row["covered_chars"], row["entity_chars"]) if row and row["entity_chars"] else "-"

    rules = [per[label] for label in rule_labels if label in per]
    covered, chars = sum(r["covered_chars"] for r in rules), sum(r["entity_chars"] for r in rules)
    return [recall("PER"), recall("LOC"), recall("ORG"), pct(covered, chars), pct(score["covered_chars"],
            score["entity_chars"]), f"{pct(score['docs_fully_redacted'], score['docs_with_entities'])} "
            f"({score['docs_fully_redacted']}/{score['docs_with_entities']})",
            f"{100 * score['over_redaction']:.2f}"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reports", nargs="+", type=Path, help="report.json files of nerkd report --redact")
    p.add_argument("--bias", type=float, action="append", help="biases to show (default: 0 and redact.bias)")
    args = p.parse_args(argv)
    print("| data | model | bias | redaction | PER | LOC | ORG | rule labels | all | docs fully redacted | "
          "over-redaction |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for path in args.reports:
        report = orjson.loads(path.read_bytes())
        section = report["redaction"]
        wanted = sorted(set(args.bias or [0.0, section["bias"]]))
        data = Path(report["data"]["path"]).name
        for model in section["models"]:
            for point in model["sweep"]:
                if point["bias"] not in wanted:
                    continue
                for kind, key in (("model", "model"), ("model + rules", "model_rules")):
                    row = [data, model["name"], f"{point['bias']:g}", kind,
                           *cells(point[key], section["rule_labels"])]
                    print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
