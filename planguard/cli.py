"""Command line: parse options, call the library, map outcomes to exit codes.

Exit codes: 0 GO (or success), 1 NO-GO, 2 error (bad input, unreachable cluster,
missing privilege...).  Errors are one line on stderr, never a traceback; set
``PLANGUARD_DEBUG=1`` to see one.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from planguard import db
from planguard.errors import PlanguardError

F = TypeVar("F", bound=Callable[..., Any])
EXIT_GO, EXIT_NO_GO, EXIT_ERROR = 0, 1, 2


def _progress(quiet: bool) -> Callable[[str], None] | None:
    if quiet:
        return None
    return lambda message: click.echo(f"  {message}", err=True)


def _reporter(title: str, quiet: bool, noun: str = "regression") -> Any:
    """Progress on stderr (``planguard.progress``): a bar on a terminal, quiet lines in CI or
    when piped, nothing with --quiet."""
    from planguard.progress import reporter

    return reporter(title, quiet=quiet, noun=noun)


def _fail(message: str) -> None:
    click.echo(f"planguard: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def handle_errors(func: F) -> F:
    """Turn library errors into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PlanguardError as exc:
            _fail(str(exc))
        except KeyboardInterrupt as exc:
            _fail(str(exc) or "interrupted")
        except Exception as exc:
            if os.environ.get("PLANGUARD_DEBUG"):
                raise
            _fail(f"unexpected {type(exc).__name__}: {exc} (set PLANGUARD_DEBUG=1 for a traceback)")

    return wrapper  # type: ignore[return-value]


class Duration(click.ParamType):
    """Seconds, or a number with a unit: ``90s``, ``15m``, ``1.5h``."""

    name = "duration"
    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip().lower()
        unit = {"s": 1, "m": 60, "h": 3600}.get(text[-1:])
        try:
            seconds = float(text[:-1] if unit else text) * (unit or 1)
        except ValueError:
            self.fail(f"{value!r} is not a duration (seconds, or 90s, 15m, 1.5h)", param, ctx)
        if seconds <= 0:
            self.fail(f"{value!r} must be more than 0", param, ctx)
        return seconds


def _limits(statement_timeout: int, lock_timeout: int) -> db.SessionLimits:
    return db.SessionLimits(statement_timeout_ms=statement_timeout, lock_timeout_ms=lock_timeout)


def _safety_options(func: F) -> F:
    func = click.option("--lock-timeout", type=click.IntRange(min=1), default=500, show_default=True,
                        metavar="MS", help="lock_timeout for every planguard session, in ms.")(func)
    func = click.option("--statement-timeout", type=click.IntRange(min=1), default=30_000,
                        show_default=True, metavar="MS",
                        help="statement_timeout for every planguard session, in ms.")(func)
    return func


FORMATS = ("json", "html", "md", "junit")  # planguard.report.FORMATS (the CLI imports it lazily)


class FormatList(click.ParamType):
    """A comma list of report formats: ``json,html,md,junit``."""

    name = "formats"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        chosen = tuple(dict.fromkeys(part.strip().lower() for part in str(value).split(",") if part.strip()))
        unknown = [f for f in chosen if f not in FORMATS]
        if unknown or not chosen:
            self.fail(f"{value!r}: formats are a comma list of {', '.join(FORMATS)}", param, ctx)
        return chosen


def _fail_on_option(func: F) -> F:
    return click.option("--fail-on", type=click.Choice(["blocker", "warning"]), default="blocker",
                        show_default=True,
                        help="Exit 1 on a blocker (NO-GO), or also on any warning (the verdict stays "
                             "as it is; a line says why the exit is 1).")(func)


def _output_options(func: F) -> F:
    """--format, --md, --junit and --fail-on (-o/--output and --json are the command's own)."""
    func = _fail_on_option(func)
    func = click.option("--junit", "junit_path", type=click.Path(dir_okay=False, path_type=Path),
                        help="JUnit XML report (default: reports/<name>.junit.xml); turns junit on.")(func)
    func = click.option("--md", "md_path", type=click.Path(dir_okay=False, path_type=Path),
                        help="Markdown summary (default: reports/<name>.md); turns md on.")(func)
    func = click.option("--format", "formats", type=FormatList(), default="json,html", show_default=True,
                        help="Reports to write, a comma list of json, html, md (Markdown for "
                             "$GITHUB_STEP_SUMMARY) and junit (JUnit XML); a path given with -o, --json, "
                             "--md or --junit turns its format on too.")(func)
    return func


def _allow_locks_option(func: F) -> F:
    return click.option("--allow-locks", is_flag=True,
                        help="When verifying fixes: also try those that take locks on NEW inside the "
                             "rolled-back transaction (DROP INDEX: ACCESS EXCLUSIVE; CREATE INDEX: SHARE), "
                             "each bounded by a short lock_timeout.")(func)


def _verify_options(func: F) -> F:
    func = _allow_locks_option(func)
    func = click.option("--verify-fixes", is_flag=True,
                        help="Try each blocker's fix on NEW only, in a transaction that is rolled back, "
                             "and measure its statements again; say what stays (pg_class row counts) "
                             "before doing it.")(func)
    return func


def _outputs(formats: tuple[str, ...], stem: str, given: dict[str, Path | None]) -> dict[str, Path]:
    """{format: path} to write: the formats asked for, and those given a path."""
    from planguard.report import SUFFIXES

    chosen = set(formats) | {fmt for fmt, path in given.items() if path is not None}
    return {fmt: given.get(fmt) or Path("reports") / f"{stem}{SUFFIXES[fmt]}" for fmt in FORMATS
            if fmt in chosen}


def _written(paths: dict[str, Path]) -> str:
    return "  ".join(f"{'report' if fmt == 'html' else fmt}: {path}" for fmt, path in paths.items())


def _exit(context: dict[str, Any], fail_on: str, *, err: bool = False) -> None:
    """Exit with the code the result stands for under --fail-on, saying why when it is not the
    verdict's."""
    from planguard.report import gate

    outcome = gate(context, fail_on)
    if outcome.why:
        click.echo(outcome.why, err=err)
    sys.exit(outcome.exit_code)


class _Group(click.Group):
    """Usage errors as one line too (click prints three), with where to read more."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.UsageError as exc:
            where = f"; see '{exc.ctx.command_path} --help'" if exc.ctx else ""
            _fail(f"{exc.format_message().rstrip('.')}{where}")
        except click.ClickException as exc:
            _fail(exc.format_message())
        except click.Abort:
            _fail("interrupted")
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="planguard")
def main() -> None:
    """planguard: go/no-go checks for PostgreSQL cutovers.

    Capture the production workload from the OLD cluster, replay it with
    EXPLAIN (ANALYZE, BUFFERS) on OLD and NEW, and get a verdict with reasons.
    Exit codes: 0 GO, 1 NO-GO, 2 error.
    """


@main.command()
@click.option("--dsn", required=True, metavar="DSN",
              help="Old cluster: 'host=... port=... dbname=... user=...' or postgresql://...; "
                   "the role needs pg_read_all_stats (or pg_monitor).")
@click.option("--top", type=click.IntRange(min=1), default=50, show_default=True,
              help="How many statements to keep.")
@click.option("--order-by", type=click.Choice(["total_time", "calls", "mean_time"]),
              default="total_time", show_default=True, help="What 'top' means.")
@click.option("--database", "databases", metavar="NAME", multiple=True,
              help="Database to capture from (repeatable; default: the DSN's database).")
@click.option("--all-databases", is_flag=True,
              help="Capture from every database that has statements in pg_stat_statements.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Workload file to write, e.g. workloads/prod.json.")
@click.option("--seed", type=int, default=42, show_default=True,
              help="Seed for sampling parameter values (same seed, same values).")
@click.option("--from-log", "from_log", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Server log (stderr, csvlog or jsonlog) with log_min_duration_statement or "
                   "auto_explain entries: their parameter values are used first.")
@click.option("--redact", is_flag=True,
              help="Reports never show parameter values; the workload file holds none either "
                   "(compare samples them from OLD again) unless --keep-values.")
@click.option("--keep-values", is_flag=True,
              help="With --redact: keep the sampled values in the workload file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@_safety_options
@handle_errors
def capture(dsn: str, top: int, order_by: str, databases: tuple[str, ...], all_databases: bool,
            output: Path, seed: int, from_log: Path | None,
            redact: bool, keep_values: bool, quiet: bool, statement_timeout: int,
            lock_timeout: int) -> None:
    """Capture the top statements of the OLD cluster into a workload file.

    Reads pg_stat_statements, binds every $n parameter to the column it is
    compared with and samples real values for it (TABLESAMPLE, read-only).
    """
    from planguard.capture import capture as do_capture

    if keep_values and not redact:
        raise click.UsageError("--keep-values only makes sense with --redact")
    if all_databases and databases:
        raise click.UsageError("--all-databases and --database exclude each other")
    shown = _reporter("capture", quiet)
    try:
        workload = do_capture(dsn, top=top, order_by=order_by, seed=seed,
                              databases=["*"] if all_databases else (list(databases) or None),
                              limits=_limits(statement_timeout, lock_timeout), progress=shown.message,
                              redact=redact, keep_values=keep_values, from_log=from_log, on_step=shown.step)
    finally:
        shown.close()
    workload.save(output)
    click.echo(f"captured {len(workload.statements)} statements from PostgreSQL "
               f"{workload.source.server_version}, database{'s' if len(workload.databases) > 1 else ''} "
               f"{', '.join(workload.databases)} -> {output}")
    click.echo(workload.summary())
    for note in workload.notes:
        click.echo(f"  note: {note}")
    for s in workload.statements:
        if s.skip_reason:
            click.echo(f"  not executable: {s.short_id} {s.query[:60]!r}: {s.skip_reason}")


@main.command()
@click.argument("old_dsn", metavar="OLD")
@click.argument("new_dsn", metavar="NEW")
@click.option("-w", "--workload", "workload_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="Workload file written by 'planguard capture'.")
@click.option("-o", "--output", "html", type=click.Path(dir_okay=False, path_type=Path),
              help="HTML report (default: reports/<workload name>.html).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON report (default: reports/<workload name>.json).")
@_output_options
@click.option("--repeat", type=click.IntRange(min=1, max=1000), default=5, show_default=True,
              help="Measured EXPLAIN ANALYZE runs per statement and side, after one warm-up.")
@click.option("--time-ratio", type=float, help="Regressed when NEW/OLD median time is at least this.")
@click.option("--min-time-delta-ms", type=float, help="... and NEW is at least this many ms slower.")
@click.option("--buffers-ratio", type=float, help="Regressed when NEW/OLD buffers are at least this.")
@click.option("--min-buffers-delta", type=int, help="... and NEW reads at least this many more buffers.")
@click.option("--stale-mod-fraction", type=float,
              help="stale_stats when rows modified since ANALYZE exceed this fraction.")
@click.option("--min-coverage", type=float,
              help="NO-GO unless this share of OLD's captured time was judged (default 0.9).")
@click.option("--redact", is_flag=True,
              help="Reports show no parameter values and no constants in plans (always on for "
                   "a workload captured with --redact).")
@click.option("--check-results", is_flag=True,
              help="Also check that NEW returns the same rows (count and checksum, computed on "
                   "the server) for every SELECT; meaningful when both hold the same data.")
@click.option("--save-recording", type=click.Path(dir_okay=False, path_type=Path),
              help="Also keep what both clusters answered (every run's plan and timing, the catalogs) "
                   "in this file, to judge again without a server.")
@click.option("--runs", "runs_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write every measured run as a table: .csv (or .parquet with pyarrow).")
@click.option("--generic/--no-generic", default=True, show_default=True,
              help="Also measure each statement's generic plan (what a prepared statement may "
                   "switch to after 5 executions) and whether the plan cache would pick it.")
@click.option("--writes", type=click.Choice(["rollback", "explain", "skip"]), default="rollback",
              show_default=True,
              help="Writes (INSERT, UPDATE, DELETE, MERGE, FOR UPDATE): executed in a transaction that "
                   "is always rolled back, planned only, or not run.  A rolled-back write still locks "
                   "its rows while it runs, writes WAL, consumes sequence values and fires triggers.")
@click.option("--max-query-ms", type=click.FloatRange(min=0, min_open=True), metavar="MS",
              help="Do not execute statements whose mean time on OLD exceeds this (they are planned "
                   "only, and say so).")
@click.option("--max-total", type=Duration(), metavar="DURATION",
              help="Time budget for the whole run (90s, 15m, 1h): then what was measured is judged "
                   "and reported as partial.")
@click.option("--max-old-server-time", type=Duration(), metavar="DURATION",
              help="Server time planguard may spend executing statements on OLD (production); then "
                   "the run stops, as with --max-total.")
@click.option("--polite", type=click.IntRange(min=0), metavar="SESSIONS",
              help="Pause while OLD has more than this many active sessions (the role needs "
                   "pg_read_all_stats to see other roles').")
@click.option("--polite-max-lag", type=Duration(), metavar="DURATION",
              help="Pause while a replica or subscriber of OLD lags by more than this.")
@click.option("--resume", "resume_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Complete an interrupted or partial comparison: its JSON report (or its "
                   "recording); only what is missing runs.")
@click.option("--allow-same-cluster", is_flag=True,
              help="Let OLD and NEW be one cluster (it proves nothing about a cutover; for testing "
                   "planguard itself).")
@click.option("--shard", "shard_spec", metavar="I/N",
              help="Run only shard I of N (from 1): a deterministic slice of the workload balanced by "
                   "OLD's mean time; only shard 1 runs the catalog checks.  Reports go to "
                   "reports/<name>-shard-I-of-N.*, with the recording and workload 'planguard merge' "
                   "joins into one result.")
@_verify_options
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@click.option("--fixed-runs", is_flag=True, hidden=True,
              help="Measure every parameter set --repeat times instead of stopping once its call is "
                   "settled (the rule before adaptive measurement; for benchmarks).")
@_safety_options
@handle_errors
def compare(old_dsn: str, new_dsn: str, workload_path: Path, html: Path | None,
            json_path: Path | None, formats: tuple[str, ...], md_path: Path | None,
            junit_path: Path | None, fail_on: str, repeat: int, check_results: bool, redact: bool,
            generic: bool,
            save_recording: Path | None, runs_path: Path | None, writes: str,
            max_query_ms: float | None, max_total: float | None, max_old_server_time: float | None,
            polite: int | None, polite_max_lag: float | None, resume_path: Path | None,
            allow_same_cluster: bool, shard_spec: str | None, verify_fixes: bool, allow_locks: bool,
            quiet: bool, fixed_runs: bool, statement_timeout: int, lock_timeout: int,
            **threshold_flags: Any) -> None:
    """Compare OLD and NEW on a workload and print GO or NO-GO.

    Runs every statement with EXPLAIN (ANALYZE, BUFFERS) on both clusters at once
    (SELECTs read-only, writes in a transaction that is always rolled back),
    diffs the plans, checks statistics freshness on NEW, and writes the reports.
    Ctrl-C or SIGTERM cancels what runs on both servers and saves the partial result
    (complete it with --resume).  Exit code 0 GO, 1 NO-GO, 2 error or partial.
    """
    from planguard.analysis import summaries
    from planguard.budget import Budget
    from planguard.compare import compare as do_compare
    from planguard.config import load_thresholds
    from planguard.interrupt import Stop, signals
    from planguard.loader import load
    from planguard.recording import BUDGET, resume_from
    from planguard.report import check_writable, context_of, write_context
    from planguard.safety import Policy
    from planguard.shard import parse, recording_beside, workload_beside

    shard = parse(shard_spec) if shard_spec is not None else None
    thresholds = load_thresholds(threshold_flags)
    workload = load(workload_path)
    stem = workload_path.stem if shard is None else f"{workload_path.stem}-shard-{shard[0]}-of-{shard[1]}"
    outputs = _outputs(formats, stem, {"html": html, "json": json_path, "md": md_path, "junit": junit_path})
    if shard is not None and "json" not in outputs:
        outputs["json"] = Path("reports") / f"{stem}.json"  # what merge reads
    json_base = outputs.get("json") or Path("reports") / f"{stem}.json"
    partial = recording_beside(json_base)
    if shard is not None:  # merge judges the raw measurements again: always kept
        save_recording = save_recording or partial
    shard_workload = workload_beside(save_recording) if shard is not None and save_recording else None
    check_writable([*outputs.values(), *(p for p in (save_recording or partial, runs_path, shard_workload)
                                         if p)])
    resume = resume_from(resume_path) if resume_path else None
    budget = Budget(max_total, max_old_server_time, polite,
                    polite_max_lag if polite_max_lag is not None else (30.0 if polite is not None else None))
    stop = Stop()
    shown = _reporter("compare" if shard is None else f"compare shard {shard[0]}/{shard[1]}", quiet)
    with signals(stop):
        try:
            result = do_compare(old_dsn, new_dsn, workload, repeat=repeat, thresholds=thresholds,
                                limits=_limits(statement_timeout, lock_timeout), progress=shown.message,
                                generic=generic, redact=redact, check_results=check_results,
                                save_recording=save_recording, runs=runs_path,
                                policy=Policy(writes, max_query_ms, allow_same_cluster), budget=budget,
                                stop=stop, resume=resume, partial_recording=partial, on_step=shown.step,
                                shard=shard, save_workload=shard_workload,
                                adaptive=not fixed_runs)
        finally:
            shown.close()
        context = context_of(result)
        if verify_fixes and result.stopped is None:
            from planguard.verify import verify

            context = verify(context, new_dsn, old_dsn, allow_locks=allow_locks, repeat=repeat,
                             limits=_limits(statement_timeout, lock_timeout), progress=_progress(quiet))
        paths = write_context(context, outputs, fail_on)
    resume_with = paths.get("json") or result.recording
    if result.stopped is not None and result.stopped.kind != BUDGET:
        saved = ", ".join(str(p) for p in (*paths.values(), result.recording) if p)
        _fail(f"{result.stopped.reason}: partial result saved to {saved}; "
              f"complete it with --resume {resume_with}")
    _print_verdict(result.verdict.decision, result.verdict.reasons)
    if result.stopped is not None:
        click.echo(f"  partial: {result.stopped.reason}; complete it with --resume {resume_with}")
    if result.coverage is not None:
        click.echo(f"  {result.coverage.text()}")
    top = summaries(result)["impact"]
    if not top.empty and (top["extra_sessions"] > 0).any():
        click.echo("  most load added at production call rates (average active sessions):")
        for row in top[top["extra_sessions"] > 0].head(5).itertuples():
            click.echo(f"    {row.statement}  {row.status:<16} +{row.extra_sessions:.3f}")
    click.echo(_written(paths))
    _exit(context, fail_on)


@main.command()
@click.argument("old_dsn", metavar="OLD")
@click.argument("new_dsn", metavar="NEW")
@click.option("-o", "--output", "html", type=click.Path(dir_okay=False, path_type=Path),
              help="HTML report (default: reports/check.html).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON report (default: reports/check.json).")
@_output_options
@click.option("--stale-mod-fraction", type=float,
              help="stale_stats when rows modified since ANALYZE exceed this fraction.")
@click.option("--max-scan-mb", type=click.IntRange(min=0), default=128, show_default=True,
              help="Read max(column) for a sequence check without an index only on smaller tables.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@_safety_options
@handle_errors
def check(old_dsn: str, new_dsn: str, html: Path | None, json_path: Path | None,
          formats: tuple[str, ...], md_path: Path | None, junit_path: Path | None, fail_on: str,
          max_scan_mb: int, quiet: bool, statement_timeout: int, lock_timeout: int,
          **threshold_flags: Any) -> None:
    """Compare OLD's and NEW's catalogs: the checklist for minutes before the switch.

    OLD is a DSN, or a workload file captured from it: its catalog as recorded then
    (production's sequence values and index usage, when OLD is now a replica or gone).

    Read-only and fast, no statement is run: statistics (never analyzed, stale,
    coverage), indexes (missing, invalid, unused, duplicate), sequences behind their
    tables, planner settings, extensions and collations.  Each finding comes with the
    SQL that fixes it.  Exit code 0 GO, 1 NO-GO, 2 error.
    """
    from planguard.check import check as do_check
    from planguard.config import load_thresholds
    from planguard.report import check_writable, context_of, write_context

    given = {"html": html, "json": json_path, "md": md_path, "junit": junit_path}
    outputs = _outputs(formats, "check", given)
    check_writable(list(outputs.values()))
    shown = _reporter("check", quiet, noun="blocker")
    try:
        result = do_check(old_dsn, new_dsn, thresholds=load_thresholds(threshold_flags),
                          limits=_limits(statement_timeout, lock_timeout), max_scan_bytes=max_scan_mb << 20,
                          on_step=shown.step)
    finally:
        shown.close()
    context = context_of(result)
    paths = write_context(context, outputs, fail_on)
    _print_verdict(result.verdict.decision, result.verdict.reasons)
    counts = result.counts()
    click.echo(f"{counts['blocker']} blockers, {counts['warning']} warnings, {counts['info']} notes; "
               f"{_written(paths)}")
    _exit(context, fail_on)


@main.command()
@click.argument("result_path", metavar="RESULT.json", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="md", show_default=True,
              help="Format to render: json, html, md (Markdown) or junit (JUnit XML).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write (default: standard output).")
@_fail_on_option
@handle_errors
def report(result_path: Path, fmt: str, output: Path | None, fail_on: str) -> None:
    """Render a saved result again, in any format, without a database.

    RESULT.json is the JSON report 'planguard compare' or 'planguard check' wrote; it is
    checked against the JSON Schema first.  Exits with the code the result stands for:
    0 GO, 1 NO-GO (or, with --fail-on warning, a warning), 2 bad input.
    """
    from planguard.report import check_writable, load_result, render

    if output is not None:
        check_writable([output])
    context = load_result(result_path)
    text = render(context, fmt, fail_on)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"{context['verdict']}: {fmt} report of {result_path} -> {output}")
    _exit(context, fail_on, err=output is None)


@main.command()
@click.argument("result_paths", metavar="RESULT.json...", nargs=-1, required=True,
                type=click.Path(path_type=Path))
@click.option("-o", "--output", "html", type=click.Path(dir_okay=False, path_type=Path),
              help="HTML report (default: reports/<workload name>.html).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON report (default: reports/<workload name>.json).")
@_output_options
@handle_errors
def merge(result_paths: tuple[Path, ...], html: Path | None, json_path: Path | None,
          formats: tuple[str, ...], md_path: Path | None, junit_path: Path | None, fail_on: str) -> None:
    """Merge the results of every shard of one comparison into one verdict and report.

    RESULT.json... are the JSON reports 'planguard compare --shard I/N' wrote, one per shard,
    with the recording and workload each wrote next to it.  Their measurements are joined and
    judged again, exactly as one unsharded run on them would be (the catalog checks come from
    shard 1).  Refuses shards of different workloads, a different N, duplicate or missing
    shards, other thresholds or other clusters.  No database is needed.  Exit code 0 GO,
    1 NO-GO, 2 error.
    """
    from planguard.report import check_writable, context_of, write_context
    from planguard.shard import merge as do_merge

    first = result_paths[0].name.removesuffix(".json")
    stem = first.rsplit("-shard-", 1)[0] if "-shard-" in first else "merged"
    outputs = _outputs(formats, stem, {"html": html, "json": json_path, "md": md_path, "junit": junit_path})
    check_writable(list(outputs.values()))
    result = do_merge(list(result_paths))
    context = context_of(result)
    paths = write_context(context, outputs, fail_on)
    _print_verdict(result.verdict.decision, result.verdict.reasons)
    click.echo(f"  merged {len(result_paths)} shards: {len(result.statements)} statements")
    if result.stopped is not None:
        click.echo(f"  partial: {result.stopped.reason}")
    if result.coverage is not None:
        click.echo(f"  {result.coverage.text()}")
    click.echo(_written(paths))
    _exit(context, fail_on)


@main.command(name="verify")
@click.argument("result_path", metavar="RESULT.json", type=click.Path(path_type=Path))
@click.argument("old_dsn", metavar="OLD")
@click.argument("new_dsn", metavar="NEW")
@click.option("-o", "--output", "html", type=click.Path(dir_okay=False, path_type=Path),
              help="HTML report (default: RESULT.html next to RESULT.json).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON result with the verification (default: RESULT.json itself).")
@_output_options
@_allow_locks_option
@click.option("--repeat", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="Measured runs per statement in each trial, after one warm-up.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@_safety_options
@handle_errors
def verify_command(result_path: Path, old_dsn: str, new_dsn: str, html: Path | None, json_path: Path | None,
                   formats: tuple[str, ...], md_path: Path | None, junit_path: Path | None, fail_on: str,
                   allow_locks: bool, repeat: int, quiet: bool, statement_timeout: int,
                   lock_timeout: int) -> None:
    """Prove the fixes of a saved comparison on NEW, before the cutover.

    For each blocker of RESULT.json (what 'planguard compare' wrote), tries its fix on NEW
    only, inside a transaction that is rolled back (ANALYZE, SET LOCAL, an index hidden with
    HypoPG or, with --allow-locks, dropped or built), measures its statements again and says
    whether OLD's plan comes back; for each regression, whether OLD's statistics bring OLD's
    plan back (statistics) or not (planner).  OLD is only read.  Exit code: the result's.
    """
    from planguard.report import check_writable, load_result, write_context
    from planguard.verify import verify

    context = load_result(result_path)
    if context["kind"] != "compare":
        _fail(f"{result_path} is a 'planguard check' result: verify needs a comparison's (planguard compare)")
    given = {"html": html or result_path.with_suffix(".html"), "json": json_path or result_path,
             "md": md_path, "junit": junit_path}
    outputs = _outputs(formats, result_path.stem, given)
    check_writable(list(outputs.values()))
    context = verify(context, new_dsn, old_dsn, allow_locks=allow_locks, repeat=repeat,
                     limits=_limits(statement_timeout, lock_timeout), progress=_progress(quiet))
    paths = write_context(context, outputs, fail_on)
    for f in context["findings"]:
        v = f.get("verification")
        if v:
            click.echo(f"  {v['outcome']:<17} {f['kind']}: {v['summary']}")
    check = context["verification"]
    click.echo("  NEW's catalog: " + ("unchanged" if check["catalog_unchanged"] else
                                     "CHANGED: " + "; ".join(check["catalog_diff"][:5])))
    click.echo(_written(paths))
    _exit(context, fail_on)


def _print_verdict(decision: str, reasons: tuple[str, ...], limit: int = 5) -> None:
    color = "green" if decision == "GO" else "red"
    click.echo(click.style(decision, fg=color, bold=True))
    for reason in reasons[:limit]:
        click.echo(f"  - {reason}")
    if len(reasons) > limit:
        click.echo(f"  ... and {len(reasons) - limit} more in the report")


@main.command()
@click.argument("new_dsn", metavar="NEW")
@click.option("-b", "--baseline", "baseline_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="OLD's workload, written by 'planguard capture' (its statements, call "
                                  "rates, plans and catalog are the baseline).")
@click.option("--interval", type=Duration(), default=10.0, show_default=True, metavar="DURATION",
              help="Read NEW's pg_stat_statements this often.")
@click.option("--duration", type=Duration(), metavar="DURATION",
              help="Stop after this long (default: until Ctrl-C).")
@click.option("--json-lines", "json_lines", type=click.Path(dir_okay=False, path_type=Path),
              help="Append one JSON object per interval to this file (plus a start and an end line).")
@click.option("--prometheus", "prometheus_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Rewrite this Prometheus text-format file each interval (node_exporter's textfile "
                   "collector): per-statement latency ratios, added sessions and the call.")
@click.option("-o", "--output", "html", type=click.Path(dir_okay=False, path_type=Path),
              help="HTML snapshot of the latest state, written on exit (default: "
                   "reports/watch-<baseline name>.html).")
@click.option("--exit-on-regression", is_flag=True,
              help="Exit with code 1 as soon as a regression is confirmed, for automation to act on.")
@click.option("--cores", type=click.IntRange(min=1), metavar="N",
              help="NEW's CPU cores: the capacity the rollback call weighs added sessions against "
                   "(default: the connections the application may open).")
@click.option("--rollback-share", type=click.FloatRange(min=0, max=1, min_open=True), default=0.5,
              show_default=True, help="ROLLBACK RECOMMENDED when confirmed regressions add this share "
                                      "of the capacity in active sessions ...")
@click.option("--rollback-window", type=Duration(), default=900.0, show_default=True, metavar="DURATION",
              help="... within this long after the cutover.")
@click.option("--cutover-at", type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S",
                                                          "%Y-%m-%d %H:%M:%S"]),
              help="When the switch happened (ISO 8601; default: when the watch starts).")
@click.option("--min-calls", type=click.IntRange(min=1), default=3, show_default=True,
              help="Calls a statement needs in an interval for its mean to be judged.")
@click.option("--explain-every", type=Duration(), default=300.0, show_default=True, metavar="DURATION",
              help="At most one plain EXPLAIN (never ANALYZE) per regressed statement this often.")
@click.option("--top", type=click.IntRange(min=1, max=100), default=10, show_default=True,
              help="Statements shown, by their share of NEW's load.")
@click.option("--time-ratio", type=float,
              help="Slower when NEW's mean is at least this times the baseline's.")
@click.option("--min-time-delta-ms", type=float, help="... and at least this many ms more.")
@click.option("--impact-block-aas", type=float,
              help="... and adding at least this many average active sessions (default 0.05).")
@click.option("-q", "--quiet", is_flag=True, help="No view on stdout (the files are still written).")
@click.option("--lock-timeout", type=click.IntRange(min=1), default=100, show_default=True, metavar="MS",
              help="lock_timeout of the watch's session, in ms.")
@click.option("--statement-timeout", type=click.IntRange(min=1), default=2000, show_default=True,
              metavar="MS", help="statement_timeout of the watch's session, in ms.")
@handle_errors
def watch(new_dsn: str, baseline_path: Path, interval: float, duration: float | None, json_lines: Path | None,
          prometheus_path: Path | None, html: Path | None, exit_on_regression: bool, cores: int | None,
          rollback_share: float, rollback_window: float, cutover_at: Any, min_calls: int,
          explain_every: float, top: int, quiet: bool, lock_timeout: int, statement_timeout: int,
          **threshold_flags: Any) -> None:
    """Watch NEW after the cutover against OLD's captured baseline.

    Every interval: NEW's pg_stat_statements deltas per statement (matched to the baseline by
    planguard's fingerprint), ranked by their share of NEW's load, with the latency ratio and the
    active sessions each adds (Little's law).  A regression is confirmed after two bad intervals;
    its cause comes from NEW's catalog and at most one plain EXPLAIN per statement per
    --explain-every.  Calls REGRESSION (with the fix), ROLLBACK RECOMMENDED, or RECOVERED.  One
    read-only session.  Exit code 0; 1 on a confirmed regression with --exit-on-regression; 2 error.
    """
    import json as jsonlib
    from datetime import timezone

    from planguard.config import load_thresholds
    from planguard.interrupt import Stop, signals
    from planguard.loader import load
    from planguard.report import check_writable
    from planguard.report.watch import (
        interval_dict,
        json_line,
        render_snapshot,
        snapshot_context,
        write_prometheus,
    )
    from planguard.watch import REGRESSION, ROLLBACK, Interval, WatchOptions
    from planguard.watcher import watch as do_watch
    from planguard.watchview import View

    thresholds = load_thresholds(threshold_flags)
    workload = load(baseline_path)
    html = html or Path("reports") / f"watch-{baseline_path.stem}.html"
    check_writable([p for p in (html, json_lines, prometheus_path) if p])
    options = WatchOptions(interval_s=interval, min_calls=min_calls, rollback_share=rollback_share,
                           rollback_window_s=rollback_window, cores=cores, explain_every_s=explain_every,
                           top=top)
    if cutover_at is not None and cutover_at.tzinfo is None:
        cutover_at = cutover_at.astimezone(timezone.utc)
    lines = json_lines.open("a", encoding="utf-8") if json_lines else None
    stop = Stop()
    view = View(open(os.devnull, "w") if quiet else sys.stdout)  # noqa: SIM115 (closed below)

    def emit(iv: Interval) -> None:
        view.show(iv)
        if lines is not None:
            lines.write(json_line(iv) + "\n")
            lines.flush()
        if prometheus_path is not None:
            write_prometheus(iv, prometheus_path)

    try:
        if lines is not None:
            lines.write(jsonlib.dumps({"type": "start", "baseline": str(baseline_path),
                                       "new": db.redact_dsn(new_dsn), "interval_s": interval}) + "\n")
        with signals(stop), view:
            result = do_watch(new_dsn, workload, options=options, thresholds=thresholds, duration_s=duration,
                              exit_on_regression=exit_on_regression, stop=stop, emit=emit, say=view.say,
                              cutover_at=cutover_at,
                              limits=db.SessionLimits(statement_timeout, lock_timeout, 10_000))
        context = snapshot_context(list(result.state.history), dsn=result.dsn, baseline=str(baseline_path),
                                   started_at=result.started_at, stopped=result.stopped,
                                   explains=result.explains, catalog_reads=result.catalog_reads,
                                   reconnects=result.reconnects, events=result.events)
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_snapshot(context), encoding="utf-8")
        if lines is not None:
            last = interval_dict(result.last) if result.last else None
            lines.write(jsonlib.dumps({"type": "end", "stopped": result.stopped,
                                       "verdict": last["verdict"] if last else None,
                                       "explains": result.explains, "catalog_reads": result.catalog_reads,
                                       "reconnects": result.reconnects}) + "\n")
    finally:
        if lines is not None:
            lines.close()
        if quiet:
            view.console.file.close()
    verdict = result.last.call.verdict if result.last else "STARTING"
    click.echo(f"planguard watch: {verdict} after {result.state.number} intervals ({result.stopped}); "
               f"snapshot: {html}", err=True)
    if exit_on_regression and verdict in (REGRESSION, ROLLBACK):
        sys.exit(EXIT_NO_GO)


class Rates(click.ParamType):
    """A comma-separated list of positive rate multipliers, ascending: ``0.25,0.5,1,2``."""

    name = "rates"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[float, ...]:
        if isinstance(value, tuple):
            return value
        try:
            rates = tuple(float(x) for x in str(value).split(",") if x.strip())
        except ValueError:
            self.fail(f"{value!r} is not a list of numbers like 0.25,0.5,1,2", param, ctx)
        if not rates or any(r <= 0 for r in rates) or list(rates) != sorted(set(rates)):
            self.fail(f"{value!r}: give positive rates in ascending order, like 0.25,0.5,1,2", param, ctx)
        return rates


@main.command()
@click.argument("new_dsn", metavar="NEW")
@click.option("-w", "--workload", "workload_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="The workload written by 'planguard capture' on OLD (its call rates "
                                  "and parameter values are replayed).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Replay at this multiple of the captured call rates; NO-GO when it is not held.")
@click.option("--duration", type=Duration(), default=60.0, show_default=True, metavar="DURATION",
              help="How long each rate is replayed.")
@click.option("--connections", type=click.IntRange(min=1, max=1000), metavar="N",
              help="The pool's size, like the application's (default: from OLD's observed concurrency).")
@click.option("--ramp", type=Rates(), metavar="R1,R2,...",
              help="Replay these rates in turn and stop at the first NEW cannot hold: the headroom.")
@click.option("--pool-timeout", type=Duration(), default=5.0, show_default=True, metavar="DURATION",
              help="A call waiting longer for a connection fails, as in an application's pool.")
@click.option("--statement-timeout", type=click.IntRange(min=1), default=5000, show_default=True,
              metavar="MS", help="statement_timeout of the replay's sessions, in ms.")
@click.option("--lock-timeout", type=click.IntRange(min=1), default=200, show_default=True, metavar="MS",
              help="lock_timeout of the replay's sessions, in ms: a rolled-back write never waits long.")
@click.option("--max-other-sessions", type=click.IntRange(min=0), default=3, show_default=True,
              help="Refuse when NEW has more client sessions than this that are not planguard's.")
@click.option("--i-know-this-is-production", "allow_production", is_flag=True,
              help="Rehearse even though NEW has other client sessions.")
@click.option("--seed", type=int, default=1, show_default=True,
              help="Seed of the arrivals and parameter draws.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the JSON result here (default: reports/rehearse-<workload name>.json).")
@click.option("-o", "--output", "html", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the HTML report here (default: reports/rehearse-<workload name>.html).")
@click.option("--time-ratio", type=float, help="Slower when NEW's server mean is this times OLD's.")
@click.option("--min-time-delta-ms", type=float, help="... and at least this many ms more.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@handle_errors
def rehearse(new_dsn: str, workload_path: Path, rate: float, duration: float, connections: int | None,
             ramp: tuple[float, ...] | None, pool_timeout: float, statement_timeout: int, lock_timeout: int,
             max_other_sessions: int, allow_production: bool, seed: int, json_path: Path | None,
             html: Path | None, quiet: bool, **threshold_flags: Any) -> None:
    """Replay the captured workload on NEW under production load: the cutover's dry run.

    Open-loop at the captured call rates times --rate, the captured parameter values drawn in
    proportion, over a bounded pool of connections.  Reads run READ ONLY; writes in transactions
    that are always rolled back.  Per statement: throughput against the target, latency p50 / p95 /
    p99 against OLD's mean, errors and lock waits; for the workload, active sessions and the pool's
    saturation over time.  NO-GO when NEW cannot sustain --rate, when a statement's calls fail, or
    when a statement is slower on NEW's server with more work per call, each with its cause and
    fix.  Refuses a NEW that has other client sessions (it looks like production).  Exit code 0
    GO, 1 NO-GO (or inconclusive), 2 error.
    """
    import time
    from datetime import datetime, timezone

    from planguard.config import load_thresholds
    from planguard.interrupt import Stop, signals
    from planguard.loader import load
    from planguard.rehearsal import RehearseOptions
    from planguard.rehearser import Progress
    from planguard.rehearser import rehearse as do_rehearse
    from planguard.report import check_writable
    from planguard.report.rehearsal import rehearsal_dict, write

    if duration < 1:
        _fail("--duration must be at least 1 s")
    thresholds = load_thresholds(threshold_flags)
    workload = load(workload_path)
    json_path = json_path or Path("reports") / f"rehearse-{workload_path.stem}.json"
    html = html or Path("reports") / f"rehearse-{workload_path.stem}.html"
    check_writable([json_path, html])
    options = RehearseOptions(rate=rate, duration_s=duration, connections=connections, ramp=ramp or (),
                              pool_timeout_s=pool_timeout, statement_timeout_ms=statement_timeout,
                              lock_timeout_ms=lock_timeout, seed=seed, max_other_sessions=max_other_sessions)
    say = _progress(quiet)
    shown = [0.0]

    def progress(p: Progress) -> None:
        now = time.monotonic()
        if say is None or (now - shown[0] < 5 and p.second < p.seconds):
            return
        shown[0] = now
        say(f"step {p.step}/{p.steps} at {p.rate:g}x: {p.second}/{p.seconds} s, "
            f"{p.served:,} of {p.arrived:,} "
            f"calls served, {p.waiting} waiting for a connection")

    stop = Stop()
    started = datetime.now(timezone.utc)
    t0 = time.monotonic()
    with signals(stop):
        result = do_rehearse(new_dsn, workload, options=options, thresholds=thresholds,
                             allow_production=allow_production, stop=stop, progress=progress, say=say)
    doc = rehearsal_dict(result, dsn=db.redact_dsn(new_dsn), workload=str(workload_path),
                         started_at=started.isoformat(timespec="seconds"), seconds=time.monotonic() - t0)
    paths = write(doc, json_path=json_path, html_path=html)
    click.echo(doc["headline"])
    for reason in doc["reasons"][1:6]:
        click.echo(f"  - {reason['text']}")
    for fix in doc["fixes"]:
        click.echo(f"  fix: {fix}")
    stopped = next((s["stopped"] for s in doc["steps"] if s["stopped"]), None)
    if stopped:
        click.echo(f"  stopped: {stopped}; what was measured is in the report", err=True)
    click.echo(_written(paths), err=True)
    sys.exit(result.exit_code)


@main.command()
@click.option("--rows", type=click.IntRange(min=10_000), default=1_000_000, show_default=True,
              help="Rows in the big table.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Where workloads/ and reports/ are written.")
@click.option("--repeat", type=click.IntRange(min=1, max=100), default=5, show_default=True,
              help="Measured runs per statement and side.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@handle_errors
def demo(rows: int, workdir: Path, repeat: int, quiet: bool) -> None:
    """Reproduce the cutover postmortem on two throwaway clusters.

    OLD: the oldest PostgreSQL found (e.g. 15), analyzed, with real traffic.
    NEW: the newest (e.g. the embedded 18), restored with pg_dump, the big table
    not analyzed.  Captures, compares (NO-GO), verifies each blocker's fix on NEW (rolled
    back), runs ANALYZE on NEW and compares again (GO).  Exits 0 when the scenario ran; the
    verdicts are printed.
    """
    from planguard.demo import run

    result = run(workdir, rows=rows, repeat=repeat, progress=_progress(quiet))
    shown = (("As restored (biggest table never analyzed on NEW):", result.before, "html"),
             ("After ANALYZE on NEW:", result.after, "after_html"))
    for title, comparison, report in shown:
        click.echo(f"\n{title}")
        _print_verdict(comparison.verdict.decision, comparison.verdict.reasons, limit=3)
        if comparison.coverage is not None:
            click.echo(f"  {comparison.coverage.text()}")
        if comparison is result.before:
            for line in result.verified:
                click.echo(f"  fix tried on NEW (rolled back): {line}")
        click.echo(f"  report: {result.reports[report]}")
    click.echo(f"\nworkload: {result.reports['workload']}")


if __name__ == "__main__":  # pragma: no cover
    main()
