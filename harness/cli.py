"""The `harness` command: benchmark, worker, record, reproduce, score, splits, datasets, leaderboard, losses.

User errors (HarnessError, LossError) become one line on stderr and exit code 2; a run that failed
for a reason of its own work (RunFailed) one line and exit code 1; nothing else is caught. Every
command imports what it needs when it runs, so `harness --help` and `--version` load neither torch
nor Optuna.
`results/`, `reports/` and `datasets/` are found relative to the current directory (the repository
root under make) unless --results, --reports or --data-root say otherwise; an installed package
never writes inside itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from harness import __version__
from harness.errors import HarnessError, RunFailed
from harness.redact import redact

EXIT_RUN_FAILED = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C


def _epilog() -> str:
    from harness.dataset_names import available_datasets
    from harness.names import loss_names
    from harness.protocol import available_protocols

    return (f"losses: none (untrained baseline), {', '.join(loss_names())}\n"
            f"datasets: {', '.join(available_datasets())} (or a folder with one subfolder per class, "
            "or a .csv with path,label)\n"
            f"protocols: {', '.join(available_protocols())} (or a path to a .toml file)")


def _add_locations(parser: argparse.ArgumentParser, *, results: bool = True, data: bool = True) -> None:
    """The output and data folders, relative to the current directory by default."""
    if results:
        parser.add_argument("--results", type=Path, default=Path("results"),
                            help="run records, studies and leaderboard CSVs (default: ./results)")
        parser.add_argument("--reports", type=Path, default=Path("reports"),
                            help="Markdown reports and plots (default: ./reports)")
    if data:
        parser.add_argument("--data-root", type=Path, default=None,
                            help="where datasets live, one folder each (default: ./datasets)")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """What names one study's work, shared by benchmark, worker and record."""
    parser.add_argument("--loss", required=True, help="a registered loss, or 'none' for the untrained baseline")
    parser.add_argument("--dataset", default="glyphs",
                        help="a dataset name, an image folder (one subfolder per class) or a .csv with path,label")
    parser.add_argument("--protocol", help="a shipped protocol name or a path to a .toml file (default: the "
                        "dataset's kind picks it: quick for images, text_quick for text)")
    parser.add_argument("--trials", type=int, help="override the protocol's trial count (new protocol hash)")
    parser.add_argument("--reps", type=int, help="override the protocol's reproductions (new protocol hash)")
    parser.add_argument("--seed", type=int, help="override the protocol's seed (new protocol hash)")
    parser.add_argument("--storage", help="Optuna storage: sqlite:///FILE (default results/studies.db, one worker), "
                        "journal:FILE (several workers on one machine), postgresql://USER@HOST/DB (many machines)")
    parser.add_argument("--heartbeat", type=int, default=60, metavar="SECONDS",
                        help="PostgreSQL/MySQL: a worker's heartbeat; a trial silent for 3 beats is failed and "
                        "queued again (default: 60)")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="trainings side by side, each on a fixed number of threads, so the figures are the "
                        "same for any N (default: every GPU, or without one every core)")
    _add_locations(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness", description="Fair-comparison benchmark of deep metric learning losses.",
        epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    bench = commands.add_parser("benchmark", help="search, test and record one loss under a protocol")
    _add_run_options(bench)
    bench.add_argument("--if-missing", action="store_true",
                       help="skip the loss if this protocol already has a complete run of it (same source)")
    worker = commands.add_parser("worker", help="join the study of one loss as one more worker (search trials and "
                                 "test units); exits when nothing is left to do")
    _add_run_options(worker)
    record = commands.add_parser("record", help="write the record and tables of a study whose work is all done, "
                                 "training nothing")
    _add_run_options(record)

    score = commands.add_parser("score", help="P@1, R-precision and MAP@R of saved embeddings, as JSON")
    score.add_argument("--embeddings", type=Path, required=True, help=".npy float array [N, D]")
    score.add_argument("--labels", type=Path, required=True, help=".npy array [N] of ints or strings")

    splits = commands.add_parser("splits", help="print the class-disjoint split as JSON")
    which = splits.add_mutually_exclusive_group(required=True)
    which.add_argument("--dataset", help="a dataset: the JSON then also lists each position's class")
    which.add_argument("--classes", type=int)
    splits.add_argument("--folds", type=int, default=4)
    _add_locations(splits, results=False)

    sets = commands.add_parser("datasets", help="list the datasets (present or not, counts, version); "
                               "'datasets download NAME' fetches one")
    _add_locations(sets, results=False)
    sets.add_argument("action", nargs="?", choices=["download"], help="download a dataset")
    sets.add_argument("name", nargs="?", help="the dataset to download")
    sets.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    board = commands.add_parser("leaderboard", help="regenerate leaderboard CSVs and reports from the records")
    _add_locations(board, data=False)

    versus = commands.add_parser("compare", help="two losses of one table: both rows, their difference in "
                                 "concatenated MAP@R with its 95%% interval, and both p-values")
    versus.add_argument("loss_a")
    versus.add_argument("loss_b")
    versus.add_argument("--dataset", default="glyphs", help="the table's dataset (default: glyphs)")
    versus.add_argument("--protocol", help="the table's protocol (default: quick for images, text_quick for text)")
    _add_locations(versus, data=False)

    table = commands.add_parser("table", help="a leaderboard table as a paper prints it (LaTeX, Markdown or CSV)")
    table.add_argument("--format", choices=["latex", "markdown", "csv"], default="latex", dest="fmt")
    table.add_argument("--dataset", default="glyphs", help="the table's dataset (default: glyphs)")
    table.add_argument("--protocol", help="the table's protocol (default: quick for images, text_quick for text)")
    table.add_argument("--losses", help="comma-separated losses to show, in the table's order (default: all)")
    _add_locations(table, data=False)

    cite = commands.add_parser("cite", help="what a paper needs to cite one row: the rerun command, versions, "
                               "hashes and BibTeX")
    cite.add_argument("loss")
    cite.add_argument("--dataset", default="glyphs", help="the table's dataset (default: glyphs)")
    cite.add_argument("--protocol", help="the table's protocol (default: quick for images, text_quick for text)")
    _add_locations(cite, data=False)

    again = commands.add_parser("reproduce", help="rerun a record's exact protocol, loss code, data and seeds into a "
                                "temporary folder and say, figure by figure, whether each reproduced bit for bit")
    again.add_argument("run_id", help="the run's id (its folder under RESULTS/runs/)")
    again.add_argument("--dataset", help="where a researcher's own dataset is now (default: the record's dataset name)")
    again.add_argument("--jobs", type=int, default=None, metavar="N",
                       help="trainings side by side (the figures are the same for any N)")
    again.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    _add_locations(again, results=False)
    again.add_argument("--results", type=Path, default=Path("results"),
                       help="where the record is (default: ./results)")

    zoo = commands.add_parser("losses", help="list the registered losses with their search spaces")
    zoo_format = zoo.add_mutually_exclusive_group()
    zoo_format.add_argument("--names", action="store_true", help="only the names, one a line (for scripts)")
    zoo_format.add_argument("--json", action="store_true", help="per loss, one JSON object a line: name, class, "
                            "identity, space (Optuna's JSON form), defaults, paper, description")
    zoo.add_argument("--dataset", default=None, help="also the floors of this dataset's kind (text: tfidf), "
                     "first: rows without a network that its tables hold beside none")
    return parser


def _benchmark(args: argparse.Namespace) -> None:
    from harness.benchmark import check_inputs, completed_run, loss_section, run_benchmark, run_key
    from harness.dataset_names import dataset_label
    from harness.jobs import default_jobs
    from harness.report import format_table
    from harness.tables import leaderboard_tables, table_stem

    if args.jobs is not None and args.jobs < 1:
        raise HarnessError(f"--jobs must be at least 1, got {args.jobs}")
    protocol = _protocol(args).with_overrides(trials=args.trials, reproductions=args.reps, seed=args.seed)
    modality = check_inputs(args.loss, args.dataset, protocol)
    if getattr(args, "if_missing", False):
        version = modality.version(args.dataset, protocol, root=args.data_root)
        done = completed_run(args.results, run_key(dataset_label(args.dataset), version, protocol,
                                                   loss_section(args.loss)))
        if done:
            print(f"{args.loss}: already run under protocol {protocol.name} ({protocol.short_hash}): {done}")
            return
    record, tables = run_benchmark(loss_name=args.loss, dataset=args.dataset, protocol=protocol,
                           results_dir=args.results, reports_dir=args.reports, storage=args.storage,
                           data_root=args.data_root, progress=not args.no_progress,
                           take_work=args.command != "record", heartbeat_seconds=args.heartbeat,
                           jobs=args.jobs or default_jobs())
    if args.command == "worker":
        print(f"{args.loss}: nothing left to do in this study; record: "
              f"{args.results / 'runs' / record.run_id / 'record.json'}")
        return
    stem = table_stem(record.key.dataset, protocol.name, protocol.hash, record.dataset)
    table = (tables if tables is not None else leaderboard_tables(args.results))[stem]  # built once
    print(f"\n{args.loss} on {record.key.dataset}, protocol {protocol.name} ({protocol.short_hash}), "
          f"{record.wall_seconds:.0f} s; best hyperparameters: {json.dumps(record.search['best_params'])}")
    print("Test figures in percent, mean ± 95% CI over reproductions "
          "(sep. = fold models alone, averaged; con. = 4 fold models concatenated):\n")
    print(format_table(table))
    print(f"\nrecord: {args.results / 'runs' / record.run_id / 'record.json'}")
    print(f"leaderboard: {args.results / 'leaderboard' / (stem + '.csv')}  report: {args.reports / (stem + '.md')}")


def _protocol(args: argparse.Namespace):
    """--protocol for --dataset, or the default protocol of the dataset's kind."""
    from harness.modality import modality_of
    from harness.protocol import load_protocol

    return load_protocol(args.protocol or modality_of(args.dataset).default_protocol, dataset=args.dataset)


def _table_stem(args: argparse.Namespace) -> str:
    """The table of --dataset and --protocol (the protocol as it stands now)."""
    from harness.dataset_names import dataset_label
    from harness.tables import table_stem

    protocol = _protocol(args)
    return table_stem(dataset_label(args.dataset), protocol.name, protocol.hash)


def _table(args: argparse.Namespace) -> None:
    from harness.lookups import table_of
    from harness.report.paper import paper_table, select_losses

    losses = [loss.strip() for loss in args.losses.split(",") if loss.strip()] if args.losses else None
    print(paper_table(select_losses(table_of(args.results, _table_stem(args)), losses), args.fmt), end="")


def _cite(args: argparse.Namespace) -> None:
    from harness.citations import cite_block
    from harness.lookups import table_record

    print(cite_block(table_record(args.results, _table_stem(args), args.loss)))


def _compare(args: argparse.Namespace) -> None:
    from harness.lookups import compare_losses

    stem = _table_stem(args)
    out = compare_losses(args.results, stem, args.loss_a, args.loss_b)
    print(f"{stem}: concatenated MAP@R in percent, mean ± 95% CI over reproductions")
    for loss, row in out["rows"].items():
        mean, ci95 = 100 * row["concatenated_map_at_r_mean"], 100 * row["concatenated_map_at_r_ci95"]
        print(f"  {loss:24s} {mean:6.2f} ± {ci95:.2f}   ({row['reproductions']} reproductions, run {row['run_id']})")
    print(f"  {args.loss_a} - {args.loss_b} = {100 * out['diff']:+.2f}, 95% CI [{100 * out['ci_low']:+.2f}, "
          f"{100 * out['ci_high']:+.2f}] (paired bootstrap over reproductions and {out['queries']} test queries)")
    print(f"  p = {out['p_bootstrap']:.4f} (paired bootstrap, 10,000 resamples), "
          f"p = {out['p_welch']:.4f} (Welch's t-test over reproductions; little power with 3 each)")


def _splits(args: argparse.Namespace) -> None:
    from harness.splits import class_disjoint_split

    if args.classes is not None:
        print(json.dumps(class_disjoint_split(args.classes, args.folds).as_dict()))
        return
    from harness.modality import modality_of

    names, trainval = modality_of(args.dataset).classes(args.dataset, root=args.data_root)  # nothing decoded
    split = class_disjoint_split(len(names), args.folds, trainval_classes=trainval)
    print(json.dumps(split.as_dict(names)))


def _datasets(args: argparse.Namespace) -> None:
    from harness.image.data import fetch_dataset
    from harness.modality import rooms

    if args.action == "download":
        for path in fetch_dataset(args.name, args.data_root, progress=not args.no_progress):
            print(path)
        return
    for room in rooms():
        for row in room.describe(args.data_root):
            print(f"{row['name']}: {_dataset_line(row)}")


def _dataset_line(row: dict) -> str:
    """One line per dataset for `harness datasets`."""
    if row["name"] == "glyphs":
        return f"embedded ({row['where']}), {row['images']:,} images, {row['classes']:,} classes"
    if not row["present"]:
        return f"missing: looked in {row['where']}; {row['how_to_get']}"
    if "summary" in row:  # a kind that words its own line
        return row["summary"]
    if "problem" in row:
        return f"present in {row['where']} but unusable: {row['problem']}"
    official = ("official" if row["official"] else
                f"differs from the official counts ({row['official_images']:,} images, "
                f"{row['official_classes']:,} classes)")
    return (f"present in {row['where']}, {row['images']:,} images, {row['classes']:,} classes, {official}, "
            f"version {row['version']}")


def _losses(names_only: bool, as_json: bool, dataset: str | None = None) -> None:
    import losses
    from harness.modality import modality_of

    floors = list(modality_of(dataset).floors.values()) if dataset else []
    if names_only:
        print("\n".join([floor.name for floor in floors] + losses.available()))
        return
    for floor in floors:
        print(json.dumps({"name": floor.name, "role": "floor", "identity": floor.identity(),
                          "description": floor.description}) if as_json else
              f"{floor.name}: {floor.description}\n    searched: nothing (a floor)")
    if as_json:
        for name in losses.available():  # JSON Lines: one loss per line
            print(json.dumps(losses.summary(name)))
        return
    for name in losses.available():
        info = losses.info(name)
        space = "; ".join(f"{k} {losses.describe(v)}" for k, v in info.space.items()) or "no hyperparameters"
        print(f"{name}: {info.description}\n    searched: {space}\n    paper: {info.paper}")


def _user_error(error: Exception) -> bool:
    """A HarnessError, or a LossError (a loss refusing its hyperparameters); the losses package is looked up
    only if something imported it, since an error can only be one of its own then."""
    losses = sys.modules.get("losses")
    return isinstance(error, HarnessError) or (losses is not None and isinstance(error, losses.LossError))


def _reproduce(args: argparse.Namespace) -> int:
    from harness.jobs import default_jobs
    from harness.reproduce import reproduce

    report = reproduce(args.results, args.run_id, dataset=args.dataset, data_root=args.data_root,
                       jobs=args.jobs or default_jobs(), progress=not args.no_progress)
    for line in report.lines():
        print(line)
    return 0 if report.identical else EXIT_RUN_FAILED


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="harness: %(message)s")
    try:
        if args.command in ("benchmark", "worker", "record", "reproduce"):
            signal.signal(signal.SIGTERM, _terminated)  # a scheduler's stop: end the trial cleanly, queue it again
            if args.command == "reproduce":
                return _reproduce(args)
            _benchmark(args)
        elif args.command == "score":
            from harness.metrics import score_files

            print(json.dumps(score_files(args.embeddings, args.labels)))
        elif args.command == "splits":
            _splits(args)
        elif args.command == "datasets":
            _datasets(args)
        elif args.command == "leaderboard":
            from harness.publish import write_leaderboards

            for path in write_leaderboards(args.results, args.reports):
                print(path)
        elif args.command == "compare":
            _compare(args)
        elif args.command == "table":
            _table(args)
        elif args.command == "cite":
            _cite(args)
        elif args.command == "losses":
            _losses(args.names, args.json, args.dataset)
    except BrokenPipeError:  # the reader stopped early (`harness losses | head`): what it read was all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except RunFailed as error:
        print(f"harness: run failed: {redact(str(error))}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except Exception as error:
        if not _user_error(error):
            raise
        print(f"harness: error: {redact(str(error))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        # records and tables are written atomically and the study commits each finished trial
        print("harness: interrupted; finished trials stay in the study, and the same command resumes it",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
