"""Does racing pick the best configuration, out of sample, and at what cost? A replay on a recorded grid.

    python scripts/race_replay.py docs/data/lambda_ci_grid_10seeds.csv --draws 2000

The table (``scripts/export_grid.py``) holds every configuration (``lambda_ci``) at every seed
(the recorded grid: 5 configurations x 10 seeds). Each rule -- the racing rule of
``simtune.search.racing`` at each ``--first-test`` and ``--min-difference`` δ, and fixed-K
selection (the best mean over the first K seeds) -- is judged on truth it did not see:

- **seed split**: each draw shuffles the recorded seeds, races on the first half (at most that
  many rounds; fixed K up to half) and takes the means over the other half as the truth;
- **simulation**: the additive seed + configuration model fitted to the table
  (``stats.fit_additive``) gives the truth (the configurations' estimates) and the noise (seed
  sd, residual sd); each draw is a new table of ``--seeds`` seeds from that model.

Per rule: P(picks the true best), expected regret (true best minus the pick's truth, metric
units), trials spent (% of every configuration on every seed), each with a 95% interval over
draws. Then the paired regret differences racing - fixed K against the fixed K just cheaper and
just dearer than racing (a negative difference whose interval excludes 0: racing picks better),
how often a configuration the race eliminated is *told* a better value than the
winner (raw mean over its seeds vs its seed-adjusted estimate; on the recorded table in random
seed orders, as a live race would tell TPE), and the false-elimination rates of the rule on
identical configurations (the model's noise, every configuration the same truth).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from simtune.search.racing import Racing, decide, leader, replay
from simtune.stats import fit_additive, format_interval, paired_difference, spread
from simtune.tables import text_table
from simtune.keys import SELECTION_METRIC

Table = dict[str, list[float]]
Rule = Callable[[Table], tuple[str, int, dict[str, list[float | None]]]]  # table -> (pick, trials, what ran)


def read_table(path: Path, metric: str, key: str) -> Table:
    """Configuration -> its metric by seed, seeds in ascending order (every configuration has every seed)."""
    by_config: dict[str, dict[int, float]] = {}
    with open(path) as handle:
        for row in csv.DictReader(handle):
            by_config.setdefault(f"{key} {row[key]}", {})[int(row["seed"])] = float(row[metric])
    seeds = sorted(next(iter(by_config.values())))
    if any(sorted(values) != seeds for values in by_config.values()):
        raise SystemExit(f"{path}: every configuration needs the same seeds")
    return {c: [values[s] for s in seeds] for c, values in by_config.items()}


def rules(first_tests: list[int], deltas: list[float], fixed: list[int], seeds: int,
          confidence: float) -> dict[str, Rule]:
    """The rules to compare on tables of ``seeds`` seeds: racing (first test x δ) and fixed K."""
    out: dict[str, Rule] = {}
    for first in first_tests:
        for delta in deltas:
            racing = Racing(first_test=first, max_replicates=seeds, confidence=confidence, min_difference=delta)
            out[f"racing, first_test {first}, δ = {delta:g}"] = _racing_rule(racing)
    for k in (k for k in fixed if k <= seeds):
        out[f"fixed K = {k}"] = _fixed_rule(k)
    return out


def _racing_rule(racing: Racing) -> Rule:
    def run(table: Table) -> tuple[str, int, dict[str, list[float | None]]]:
        outcome = replay({c: list(v[: racing.max_replicates]) for c, v in table.items()}, racing)
        return outcome.winner, outcome.trials, outcome.table
    return run


def _fixed_rule(k: int) -> Rule:
    def run(table: Table) -> tuple[str, int, dict[str, list[float | None]]]:
        return leader(table, list(table), k), k * len(table), {c: list(v[:k]) for c, v in table.items()}
    return run


def judge(draws: list[tuple[Table, dict[str, float]]], named: dict[str, Rule], seeds: int) -> dict[str, np.ndarray]:
    """Rule -> array (draws x 3): picked the true best (0/1), regret, trials as a fraction of the full table."""
    out: dict[str, list[tuple[float, float, float]]] = {name: [] for name in named}
    for table, truth in draws:
        best = max(truth.values())
        for name, rule in named.items():
            pick, trials, _ = rule(table)
            out[name].append((float(truth[pick] == best), best - truth[pick], trials / (seeds * len(table))))
    return {name: np.array(rows) for name, rows in out.items()}


def split_draws(table: Table, draws: int, rng: np.random.Generator) -> list[tuple[Table, dict[str, float]]]:
    """Seed split: race on a random half of the seeds (shuffled), truth = means over the other half."""
    seeds = len(next(iter(table.values())))
    half, out = seeds // 2, []
    for _ in range(draws):
        order = rng.permutation(seeds)
        chosen, held = order[:half], order[half:]
        out.append(({c: [v[i] for i in chosen] for c, v in table.items()},
                    {c: float(np.mean([v[i] for i in held])) for c, v in table.items()}))
    return out


def model_draws(truth: dict[str, float], seed_sd: float, residual_sd: float, seeds: int, draws: int,
                rng: np.random.Generator) -> list[tuple[Table, dict[str, float]]]:
    """Simulation: y[c, s] = truth[c] + beta[s] + e[c, s], beta ~ N(0, seed_sd^2), e ~ N(0, residual_sd^2)."""
    out = []
    for _ in range(draws):
        beta = rng.normal(0.0, seed_sd, seeds)
        out.append(({c: list(mu + beta + rng.normal(0.0, residual_sd, seeds)) for c, mu in truth.items()}, truth))
    return out


def interval(values: np.ndarray, scale: float = 1.0, digits: int = 1) -> str:
    """``mean [low, high]`` of a column over draws (normal 95% interval of the mean), times ``scale``."""
    m, h = float(values.mean()), 1.96 * float(values.std(ddof=1)) / math.sqrt(len(values))
    return format_interval(m * scale, (m - h) * scale, (m + h) * scale, digits=digits)


def result_table(judged: dict[str, np.ndarray]) -> str:
    rows = [["rule", "P(true best) %", "regret (mIoU)", "trials spent %"]]
    rows += [[name, interval(a[:, 0], 100), interval(a[:, 1], digits=2), interval(a[:, 2], 100)]
             for name, a in judged.items()]
    return text_table(rows, right=(1, 2, 3))


def versus_fixed(judged: dict[str, np.ndarray]) -> list[str]:
    """Racing's regret minus that of the fixed K just cheaper and just dearer than it, paired over draws."""
    fixed = sorted((float(a[:, 2].mean()), name) for name, a in judged.items() if name.startswith("fixed"))
    lines = []
    for name, a in judged.items():
        if name.startswith("fixed"):
            continue
        cost = float(a[:, 2].mean())
        below = [f for c, f in fixed if c < cost - 1e-9][-1:]
        above = [f for c, f in fixed if c >= cost - 1e-9][:1]
        for match in below + above:
            diff = paired_difference(list(a[:, 1]), list(judged[match][:, 1]))
            assert diff.half_width is not None and diff.low is not None and diff.high is not None
            word = ("racing lower beyond noise" if diff.high < 0 else
                    "racing higher beyond noise" if diff.low > 0 else "within noise")
            lines.append(f"{name} ({cost:.0%} of the trials) vs {match} "
                         f"({float(judged[match][:, 2].mean()):.0%}): regret difference {diff.mean:+.3f} ± "
                         f"{diff.half_width:.3f} mIoU, {word}")
    return lines


def told_check(table: Table, named: dict[str, Rule], draws: int, rng: np.random.Generator) -> list[str]:
    """How often an eliminated configuration is told a better value than the winner: raw vs seed-adjusted."""
    seeds = len(next(iter(table.values())))
    lines = []
    for name, rule in named.items():
        if name.startswith("fixed"):
            continue
        raw = adjusted = races = 0
        for _ in range(draws):
            order = rng.permutation(seeds)
            pick, _, ran = rule({c: [v[i] for i in order] for c, v in table.items()})
            losers = [c for c, v in ran.items() if len(v) < len(ran[pick])]
            if not losers:
                continue
            races += 1
            means = {c: spread([float(x) for x in v if x is not None]).mean for c, v in ran.items()}
            fit = fit_additive({c: {i: float(x) for i, x in enumerate(v) if x is not None} for c, v in ran.items()})
            raw += any(means[c] > means[pick] for c in losers)
            adjusted += any(fit.estimates[c].value > fit.estimates[pick].value for c in losers)
        if races:
            lines.append(f"{name}: an eliminated configuration told better than the winner in {raw / draws:.1%} "
                         f"of orders with raw means, {adjusted / draws:.1%} seed-adjusted ({raw / races:.1%} vs "
                         f"{adjusted / races:.1%} of the {races} orders that eliminated)")
    return lines


def false_eliminations(mean: float, seed_sd: float, residual_sd: float, configs: int, seeds: int,
                       first_tests: list[int], confidence: float, draws: int, rng: np.random.Generator) -> list[str]:
    """Identical configurations: how often the first test, and the whole race, eliminate any of them."""
    truth = {f"c{i}": mean for i in range(configs)}
    tables = [t for t, _ in model_draws(truth, seed_sd, residual_sd, seeds, draws, rng)]
    lines = []
    for first in first_tests:
        racing = Racing(first_test=first, max_replicates=seeds, confidence=confidence)
        first_hits = sum(bool(decide(t, list(t), first, racing).eliminated) for t in tables)
        race_hits = sum(bool(replay(t, racing).eliminated) for t in tables)
        lines.append(f"first_test {first}: the first test eliminates one of {configs} identical configurations in "
                     f"{first_hits / draws:.1%} of draws, a whole race (to {seeds} seeds) in {race_hits / draws:.1%}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path)
    parser.add_argument("--metric", default=SELECTION_METRIC, help="the selection metric (default val/miou)")
    parser.add_argument("--key", default="lambda_ci", help="the column naming a configuration")
    parser.add_argument("--draws", type=int, default=2000, help="draws per evaluation (default 2000)")
    parser.add_argument("--seeds", type=int, default=10, help="seeds per simulated table (default 10)")
    parser.add_argument("--first-test", type=int, nargs="+", default=[2, 3, 5], help="racing.first_test values")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--min-difference", type=float, nargs="+", default=[0.0, 0.5, 1.0], help="racing δ values")
    parser.add_argument("--fixed", type=int, nargs="+", default=[2, 3, 5, 10], help="fixed K to compare")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    table = read_table(args.table, args.metric, args.key)
    recorded = len(next(iter(table.values())))
    fit = fit_additive({c: dict(enumerate(v)) for c, v in table.items()})
    assert fit.seed_sd is not None and fit.residual_sd is not None
    truth = {c: e.value for c, e in fit.estimates.items()}
    print(f"{args.table}: {len(table)} configurations x {recorded} seeds on {args.metric}; fitted additive model: "
          f"seed sd {fit.seed_sd:.2f}, residual sd {fit.residual_sd:.2f}; estimates "
          + ", ".join(f"{c} {v:.2f}" for c, v in truth.items()))
    print(f"confidence {args.confidence}; {args.draws} draws per evaluation (seed {args.seed}); "
          "[low, high] = 95% interval over draws")
    half = recorded // 2
    split = rules(args.first_test, args.min_difference, args.fixed, half, args.confidence)
    print(f"\n## Seed split: race on {half} of the recorded seeds, truth = means over the other {recorded - half}\n")
    judged = judge(split_draws(table, args.draws, rng), split, half)
    print(result_table(judged), *versus_fixed(judged), sep="\n")
    simulated = rules(args.first_test, args.min_difference, args.fixed, args.seeds, args.confidence)
    print(f"\n## Simulation from the fitted model: {args.seeds} seeds, truth = the estimates\n")
    judged = judge(model_draws(truth, fit.seed_sd, fit.residual_sd, args.seeds, args.draws, rng), simulated, args.seeds)
    print(result_table(judged), *versus_fixed(judged), sep="\n")
    print(f"\n## What TPE would be told: the recorded table ({recorded} seeds) in random seed orders\n")
    told = rules(args.first_test, args.min_difference, [], recorded, args.confidence)
    print(*told_check(table, told, args.draws, rng), sep="\n")
    print(f"\n## Identical configurations ({len(table)}, the fitted noise, {args.seeds} seeds)\n")
    print(*false_eliminations(float(np.mean(list(truth.values()))), fit.seed_sd, fit.residual_sd, len(table),
                              args.seeds, args.first_test, args.confidence, args.draws, rng), sep="\n")
    print("\ncommand: " + " ".join(["python scripts/race_replay.py", *(argv if argv is not None else sys.argv[1:])]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
