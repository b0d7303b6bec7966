"""An ablation folder, its record and its tables; pooling finished folders over disjoint seeds.

``simtune ablation`` writes, into its ``--out``::

    runs/<row>-seed<s>/        one run directory per (row, seed), see simtune.rundir
    stage0_cache/ stage1_cache/  the stage-0 model of each seed, + SSL's shared stage 1
    ablation.json              the record: every run's last scores with its seed, the settings
    ablation.md                the tables below, with the command that produced them

Only this module spells these names. Tables: each row's mean ± sample std over seeds, and the
paired differences of ``comparisons`` with their 95% t-intervals and verdicts
(``simtune.stats``), on the report split, the selection split, and the report split's thing
and stuff classes apart (mean IoU over each group).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simtune.keys import REPORT_METRIC, SELECTION_METRIC
from simtune.errors import ConfigError
from simtune.rundir import RunsFolder, read_json, write_json, write_text
from simtune.stats import format_interval, format_spread, paired_difference, spread, verdict
from simtune.tables import text_table

SSL = "+ AA + SIM + SSL"
LONG_SOURCE = "source only (as long as + SSL)"  # the equal-length controls: one stage as long as
LONG_AA = "+ AA (as long as + SSL)"  # + SSL's stage 1 and stage 2 together
METRICS = {REPORT_METRIC: "report mIoU", SELECTION_METRIC: "selection mIoU",
           "report/things": "report, thing classes", "report/stuff": "report, stuff classes"}
Runs = dict[str, list[dict[str, float]]]  # row -> one dict of last scores per seed, in seed order


def sim_row(value: float) -> str:
    """The + SIM row at lambda_ci ``value``."""
    return f"+ AA + SIM (lambda_ci {value:g})"


@dataclass(frozen=True)
class AblationDir(RunsFolder):
    """Paths of an ablation folder (nothing is created until written)."""

    @property
    def record(self) -> Path:
        return self.root / "ablation.json"

    @property
    def table(self) -> Path:
        return self.root / "ablation.md"

    def run(self, row: str, seed: int) -> Path:
        """The run directory of one (row, seed)."""
        return self.runs / f"{row.replace(' ', '_').replace('+', 'p')}-seed{seed}"


@dataclass(frozen=True)
class AblationRecord:
    """What an ablation folder measured.

    Attributes:
        results: row -> one dict per seed (``seed``, ``report/miou``, ``val/miou``,
            ``report/things``, ``report/stuff``, ``seconds``), in seed order.
        config: the flat settings every row shares (without ``seed`` and ``mode``).
        default_sim: the + SIM row at the experiment's lambda_ci ("SIM - AA", "SSL - SIM").
        command: the command that wrote the folder.
        wall_seconds: wall time of the runs (pooled: the sum over the folders).
        pooled_from: the folders a pooled record combines; () for a run folder.
    """

    results: Runs
    config: dict[str, Any]
    default_sim: str
    command: str
    wall_seconds: float
    pooled_from: tuple[str, ...] = ()

    @property
    def seeds(self) -> list[int]:
        return [int(run["seed"]) for run in next(iter(self.results.values()), [])]


def write_record(folder: AblationDir, record: AblationRecord) -> None:
    """``ablation.json`` and ``ablation.md`` in ``folder``."""
    write_json(folder.record, dataclasses.asdict(record))
    write_text(folder.table, markdown(record) + "\n")


def read_record(folder: AblationDir, *, label: str) -> AblationRecord:
    """The record of a finished ablation folder.

    Raises:
        ConfigError: no folder, no record, or a record without the seeds of its runs.
    """
    if not folder.root.is_dir():
        raise ConfigError(f"{label}: ablation folder not found")
    payload = read_json(folder.record)
    if payload is None:
        raise ConfigError(f"{label}: no {folder.record.name}; its ablation has not finished")
    runs = [run for rows in payload.get("results", {}).values() for run in rows]
    if "config" not in payload or not runs or any("seed" not in run for run in runs):
        raise ConfigError(f"{label}/{folder.record.name}: written before seeds were recorded; rerun its command "
                          f"as 'simtune ablation' with the same --out (finished runs are reused) to rewrite it")
    return AblationRecord(results=payload["results"], config=payload["config"], default_sim=payload["default_sim"],
                          command=payload["command"], wall_seconds=payload["wall_seconds"],
                          pooled_from=tuple(payload.get("pooled_from", ())))


def recorded_config(folder: AblationDir) -> dict[str, Any] | None:
    """The settings a folder's record holds; None without a record (or one from before they were kept)."""
    payload = read_json(folder.record)
    return payload.get("config") if isinstance(payload, dict) else None


def pool_records(records: Mapping[Path, AblationRecord], *, command: str) -> AblationRecord:
    """One record over the seeds of all ``records``, for the rows they all have.

    Raises:
        ConfigError: a seed in two folders, different settings, or no row in common.
    """
    items = [(str(folder), record) for folder, record in records.items()]
    owner: dict[int, str] = {}
    for label, record in items:
        for seed in record.seeds:
            if seed in owner:
                raise ConfigError(f"cannot pool {owner[seed]} and {label}: both hold seed {seed}; pool folders "
                                  f"over disjoint seeds (--first-seed)")
            owner[seed] = label
    first_label, first = items[0]
    for label, record in items[1:]:
        difference = first_difference(first.config, record.config)
        if difference:
            raise ConfigError(f"cannot pool {first_label} and {label}: they ran different settings ({difference})")
    common = [row for row in first.results if all(row in record.results for _, record in items)]
    if not common:
        raise ConfigError(f"cannot pool {', '.join(label for label, _ in items)}: no row in common")
    results = {row: sorted((run for _, record in items for run in record.results[row]), key=lambda r: r["seed"])
               for row in common}
    return AblationRecord(results=results, config=first.config, default_sim=first.default_sim, command=command,
                          wall_seconds=sum(record.wall_seconds for _, record in items),
                          pooled_from=tuple(label for label, _ in items))


def first_difference(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """``"key: 1 vs 2"`` for the first setting that differs, None when none does."""
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return f"{key}: {a.get(key)!r} vs {b.get(key)!r}"
    return None


# ----------------------------------------------------------------------------- tables


def comparisons(rows: Collection[str], default_sim: str) -> list[tuple[str, str, str]]:
    """(label, first row, second row) of every paired difference both of whose rows exist."""
    pairs = [("AA - source", "+ AA", "source only"), ("SIM - AA", default_sim, "+ AA"),
             ("SSL - SIM", SSL, default_sim), ("full - source", SSL, "source only"),
             ("target - source", "target only", "source only"),
             ("SSL - AA, equal length", SSL, LONG_AA), ("full - source, equal length", SSL, LONG_SOURCE),
             ("AA as long as SSL - AA", LONG_AA, "+ AA"),
             ("source as long as SSL - source", LONG_SOURCE, "source only"),
             ("AA - source, both as long as SSL", LONG_AA, LONG_SOURCE)]
    pairs += [(f"SIM - AA at {row.split('(')[1].rstrip(')')}", row, "+ AA")
              for row in rows if row.startswith("+ AA + SIM (")]
    return [(label, first, second) for label, first, second in pairs if first in rows and second in rows]


def row_cells(record: AblationRecord) -> list[list[str]]:
    """Header and one line per row: mean ± sample std over seeds of each metric."""
    lines = [["row", *METRICS.values()]]
    for row, runs in record.results.items():
        lines.append([row, *(format_spread(spread([run[m] for run in runs])) for m in METRICS)])
    return lines


def difference_cells(record: AblationRecord) -> tuple[list[list[str]], list[str]]:
    """Header and one line per comparison (mean [95% interval]); the report-mIoU verdict lines."""
    lines = [["paired difference, 95% interval", *METRICS.values()]]
    verdicts = []
    for label, first, second in comparisons(list(record.results), record.default_sim):
        diffs = {m: paired_difference([r[m] for r in record.results[first]], [r[m] for r in record.results[second]])
                 for m in METRICS}
        lines.append([label, *(format_interval(d.mean, d.low, d.high, signed=True) for d in diffs.values())])
        verdicts.append(f"{label}: " + verdict(diffs[REPORT_METRIC], first=first, second=second))
    return lines, verdicts


def markdown(record: AblationRecord) -> str:
    """The tables of ``ablation.md``."""
    differences, verdicts = difference_cells(record)
    lines = [*_markdown_table(row_cells(record)), "", *_markdown_table(differences), "",
             *(f"- {line}" for line in verdicts), ""]
    lines += _footer(record, command=f"`{record.command}`")
    return "\n".join(lines)


def text(record: AblationRecord) -> str:
    """The same tables for the terminal."""
    differences, verdicts = difference_cells(record)
    numeric = range(1, len(METRICS) + 1)
    parts = [text_table(row_cells(record), right=numeric), "", text_table(differences, right=numeric), "",
             *verdicts, "", *_footer(record, command=record.command)]
    return "\n".join(parts)


def _footer(record: AblationRecord, *, command: str) -> list[str]:
    lines = [f"{len(record.seeds)} seeds ({seed_span(record.seeds)}), paired by seed: mean ± sample std over seeds, "
             f"95% t-intervals of the paired differences; scores at the last iteration, report split = "
             f"lindau + munster, selection split = frankfurt.", f"Command: {command}"]
    if record.pooled_from:
        lines.append(f"Pooled from: {', '.join(record.pooled_from)}; wall time of their runs together: "
                     f"{record.wall_seconds / 60:.1f} min.")
    else:
        lines.append(f"Wall time: {record.wall_seconds / 60:.1f} min.")
    return lines


def seed_span(seeds: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    spans: list[list[int]] = []
    for seed in sorted(seeds):
        if spans and seed == spans[-1][-1] + 1:
            spans[-1].append(seed)
        else:
            spans.append([seed])
    return ", ".join(str(s[0]) if len(s) == 1 else f"{s[0]}-{s[-1]}" for s in spans)


def _markdown_table(cells: list[list[str]]) -> list[str]:
    head, *body = cells
    return ["| " + " | ".join(head) + " |", "|---" * len(head) + "|", *("| " + " | ".join(r) + " |" for r in body)]

