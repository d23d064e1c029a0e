"""The reconciliation checks as Great Expectations Core 1.x suites, defined as code.

Each suite validates a compact frame cut from one comparison frame (checks/compare.py): only the columns its
expectations read, string keys as int codes, the frame row as index. Failing rows come back from GX as the
COMPLETE result format's unexpected_index_list (frame rows); findings take the keys from the comparison frame.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from omnirecon.checks.gx_import import import_gx
from omnirecon.config import Settings

log = logging.getLogger(__name__)
DATASOURCE = "omnirecon"
CHECKPOINT = "omnirecon_reconcile"
SETUP_MARKER = ".omnirecon-setup"   # in the GX dir: the stamp of the suites, definitions and checkpoints set up
DOCS_MARKER = ".omnirecon-docs"     # in the GX dir: the stamp of the suites whose Data Docs pages were rendered
SITE = "local_site"
DOCS_RUNS = 10                      # runs whose validation results GX's store, and so the Data Docs index, holds
ARCHIVE = "archive"                 # gx/uncommitted/archive/<run day>/: older runs' results and pages, until removed
# unexpected_index_list = frame rows (the default index); the pandas "query" would repeat them
RESULT_FORMAT = {"result_format": "COMPLETE", "return_unexpected_index_query": False}


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    keys: tuple            # columns identifying a row of the comparison frame (findings read them there)
    columns: tuple         # columns the expectations read (the GX frame holds only these)
    coded: tuple = ()      # of those, the ones GX only compares for equality: passed as int codes


SPECS = {
    "inventory_drift": SuiteSpec("inventory_drift", ("channel", "sku", "location"),
                                 ("delta", "raw_delta", "sells_past_zero")),
    "order_missing": SuiteSpec("order_missing", ("channel", "order_id"), ("unposted_age_minutes",)),
    "order_status_mismatch": SuiteSpec("order_status_mismatch", ("channel", "order_id"), ("erp_phase", "channel_phase")),
    "order_sequence": SuiteSpec("order_sequence", ("system", "channel", "order_id"),
                                ("shipped_without_erp_fulfilment", "cancelled_vs_shipped", "went_backwards")),
    "freshness": SuiteSpec("freshness", ("system", "kind"), ("age_minutes", "attempt_complete", "follow_lag_minutes")),
    "mapping": SuiteSpec("mapping", ("channel", "sku", "location"),
                         ("erp_known", "location_mapped", "item_sellable", "listed_on_channel",
                          "channel", "channel_sku", "location"), coded=("channel", "channel_sku", "location")),
    "listing_state": SuiteSpec("listing_state", ("channel", "sku"), ("state",)),
    "low_stock": SuiteSpec("low_stock", ("sku",), ("cover_days",)),
}


def _meta(rule: str, severity: str) -> dict:
    return {"rule": rule, "finding_severity": severity}


def build_suites(settings: Settings) -> dict:
    """name -> gx.ExpectationSuite (unsaved) for the given settings."""
    gx = import_gx()
    suites = {}
    for name, exps in expectations(settings).items():
        suite = gx.ExpectationSuite(name=name, meta={"omnirecon": "reconciliation check " + name})
        for e in exps:
            suite.add_expectation(e)
        suites[name] = suite
    return suites


def expectations(settings: Settings) -> dict:
    """name -> the suite's expectations (GX objects, in no suite yet) for the given settings."""
    import_gx()
    import great_expectations.expectations as gxe

    tol = int(settings["tolerance_units"])
    fresh = float(settings["freshness_minutes"])
    E = {
        "inventory_drift": [
            gxe.ExpectColumnValuesToBeBetween(column="delta", max_value=tol, meta=_meta("oversell", "critical")),
            gxe.ExpectColumnValuesToBeBetween(column="delta", min_value=-tol, meta=_meta("undersell", "warning")),
            gxe.ExpectColumnValuesToBeBetween(column="raw_delta", min_value=-tol, max_value=tol,
                                              meta=_meta("in_flight", "info")),
            gxe.ExpectColumnValuesToBeInSet(column="sells_past_zero", value_set=[False],
                                            meta=_meta("sells_past_zero", "critical")),
        ],
        "order_missing": [
            gxe.ExpectColumnValuesToBeBetween(column="unposted_age_minutes",
                                              max_value=float(settings["order_slas"]["ingest_minutes"]),
                                              meta=_meta("not_in_erp", "critical")),
        ],
        "order_status_mismatch": [
            gxe.ExpectColumnPairValuesToBeEqual(column_A="erp_phase", column_B="channel_phase",
                                                meta=_meta("phase_differs", "warning")),
        ],
        "order_sequence": [
            gxe.ExpectColumnValuesToBeInSet(column="shipped_without_erp_fulfilment", value_set=[False],
                                            meta=_meta("shipped_without_erp_fulfilment", "warning")),
            gxe.ExpectColumnValuesToBeInSet(column="cancelled_vs_shipped", value_set=[False],
                                            meta=_meta("cancelled_vs_shipped", "critical")),
            gxe.ExpectColumnValuesToBeInSet(column="went_backwards", value_set=[False],
                                            meta=_meta("went_backwards", "warning")),
        ],
        "freshness": [
            gxe.ExpectColumnValuesToBeInSet(column="attempt_complete", value_set=[True],
                                            meta=_meta("snapshot_failed", "critical")),
            gxe.ExpectColumnValuesToBeBetween(column="age_minutes", max_value=fresh, meta=_meta("stale_snapshot", "warning")),
            gxe.ExpectColumnValuesToBeBetween(column="follow_lag_minutes", max_value=fresh,
                                              meta=_meta("not_following_erp", "warning")),
        ],
        "mapping": [
            gxe.ExpectColumnValuesToBeInSet(column="erp_known", value_set=[True], meta=_meta("unknown_sku", "warning")),
            gxe.ExpectColumnValuesToBeInSet(column="location_mapped", value_set=[True],
                                            meta=_meta("unmapped_location", "warning")),
            gxe.ExpectColumnValuesToBeInSet(column="item_sellable", value_set=[True],
                                            meta=_meta("item_not_inventory", "warning")),
            gxe.ExpectColumnValuesToBeInSet(column="listed_on_channel", value_set=[True],
                                            meta=_meta("missing_on_channel", "warning")),
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["channel", "channel_sku", "location"],
                                                meta=_meta("duplicate", "warning")),
        ],
        "listing_state": [
            gxe.ExpectColumnValuesToBeInSet(column="state", value_set=["active", "untracked"],
                                            meta=_meta("not_buyable", "warning")),
        ],
        "low_stock": [
            gxe.ExpectColumnValuesToBeBetween(column="cover_days", min_value=float(settings["low_stock_days"]),
                                              meta=_meta("low_stock", "warning")),
        ],
    }
    for exps in E.values():
        for e in exps:
            e.severity = e.meta["finding_severity"]   # GX's own severity field mirrors the finding severity
    return E


def export_suites(directory: str | os.PathLike, settings: Settings | None = None) -> list[Path]:
    """Write every suite as GX JSON to <directory>/<suite>.json (default settings unless given)."""
    from omnirecon.config import settings_from_dict
    import_gx().get_context(mode="ephemeral")   # suites serialise through an active context
    settings = settings or settings_from_dict({})
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, suite in build_suites(settings).items():
        doc = suite.to_json_dict()
        doc.pop("id", None)
        for e in doc["expectations"]:
            e.pop("id", None)
        path = out / f"{name}.json"
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        paths.append(path)
    return paths


def gx_frame(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The compact frame GX validates: the suite's columns only (absent ones all-null), coded columns as int32
    codes (null and "" share one code), and a RangeIndex equal to the frame's `row`."""
    spec = SPECS[name]
    data = {}
    for c in spec.columns:
        if c not in frame:
            data[c] = np.full(len(frame), np.nan)
        elif c in spec.coded:   # the codes of factorize(frame[c].fillna("").astype(str)), from the distinct values
            codes, uniques = pd.factorize(frame[c], sort=False, use_na_sentinel=False)
            same = pd.factorize(pd.Series(uniques, dtype=object).fillna("").astype(str), sort=False)[0]
            data[c] = same.astype("int32")[codes] if len(codes) else np.zeros(0, dtype="int32")
        else:
            data[c] = frame[c].to_numpy()
    return pd.DataFrame(data, index=pd.RangeIndex(len(frame)))


@dataclass
class Failure:
    suite: str
    rule: str
    severity: str
    rows: list          # frame row numbers that failed
    unexpected_count: int


class SuiteRunner:
    """A GX context (file context under gx_dir, else ephemeral) with a checkpoint over every suite.

    Several tasks (the reconcile shards) may share one file context. Its stores are files that GX also keeps in
    memory, so a run holds a file lock over all its suites with the context freshly loaded from disk once: a
    context opened before another task added its assets would otherwise write its stale datasource config back
    over them."""

    def __init__(self, settings: Settings, gx_dir: str | None = None):
        self.gx = import_gx()
        self.settings = settings
        self.gx_dir = gx_dir
        if gx_dir:
            Path(gx_dir).mkdir(parents=True, exist_ok=True)
        self.context = None
        self._suites = None
        self._run_names: list[str] = []   # the GX run names this runner validated (their Data Docs pages)

    @property
    def suites(self) -> dict:
        if self._suites is None:
            with self._config_lock():
                self._open()
                self._suites = build_suites(self.settings)   # (GX suites read the active context's store as they grow)
        return self._suites

    def _open(self) -> None:
        """(Re)load the context from disk (file mode; called under the lock); the ephemeral one is opened once."""
        if self.context is not None and not self.gx_dir:
            return
        from great_expectations.data_context.types.base import ProgressBarsConfig
        gx = self.gx
        if self.gx_dir:
            if not _without_config_variables(Path(self.gx_dir)):
                gx.get_context(mode="file", project_root_dir=self.gx_dir)   # a new project: create it, then drop
                _without_config_variables(Path(self.gx_dir))                # its config variables before opening it
            self.context = gx.get_context(mode="file", project_root_dir=self.gx_dir)
        else:
            self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        try:
            self.datasource = self.context.data_sources.get(DATASOURCE)
        except Exception:   # GX raises different errors per store for "not found"
            self.datasource = self.context.data_sources.add_pandas(DATASOURCE)

    def _checkpoints(self, names: list[str]) -> dict:
        """The checkpoint of each named suite. A file project is set up once (every suite's data asset, batch
        definition, suite, validation definition and checkpoint written to its stores) and marked with a stamp
        of what was written; later runs find the stamp and read the checkpoints back instead of writing them."""
        stamp = self._stamp()
        marker = Path(self.gx_dir) / SETUP_MARKER if self.gx_dir else None
        if marker is not None and marker.exists() and marker.read_text() == stamp:
            try:
                return {name: self.context.checkpoints.get(f"{CHECKPOINT}_{name}") for name in names}
            except Exception:   # a store edited or removed by hand: set the project up again
                log.info("GX project %s: checkpoints not found, setting the suites up again", self.gx_dir)
        if self._suites is None:
            self._suites = build_suites(self.settings)
        checkpoints = {}
        for name in (self._suites if marker is not None else names):
            cp = self.gx.Checkpoint(name=f"{CHECKPOINT}_{name}", validation_definitions=[self._definition(name)],
                                    result_format=RESULT_FORMAT)
            checkpoints[name] = self.context.checkpoints.add_or_update(cp)
        if marker is not None:
            marker.write_text(stamp)
        return {name: checkpoints[name] for name in names}

    def _stamp(self) -> str:
        """What the project's suites, definitions and checkpoints are made of: every suite's expectations (their
        GX configuration), the result format, the GX version. (Built without a suite: adding an expectation to a
        suite the project's store already holds rewrites that store's file.)"""
        docs = {name: [e.configuration.to_json_dict() for e in exps] for name, exps in expectations(self.settings).items()}
        blob = json.dumps({"suites": docs, "result_format": RESULT_FORMAT, "gx": self.gx.__version__,
                           "datasource": DATASOURCE, "checkpoint": CHECKPOINT}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _definition(self, name: str):
        gx = self.gx
        try:
            asset = self.datasource.get_asset(name)
        except Exception:
            asset = self.datasource.add_dataframe_asset(name)
        try:
            batch_def = asset.get_batch_definition("whole")
        except Exception:
            batch_def = asset.add_batch_definition_whole_dataframe("whole")
        suite = self.context.suites.add_or_update(self._suites[name])
        vd = gx.ValidationDefinition(name=name, data=batch_def, suite=suite)
        return self.context.validation_definitions.add_or_update(vd)

    def run(self, frames: dict, run_id: str) -> dict[str, list[Failure]]:
        """Validate each frame with its suite; returns the failures per suite."""
        from great_expectations.core.run_identifier import RunIdentifier
        run_name = gx_run_name(run_id)
        self._run_names.append(run_name)
        failures: dict[str, list[Failure]] = {name: [] for name in frames}
        todo = [name for name, frame in frames.items() if frame is not None and not frame.empty]
        if not todo:
            return failures
        with self._config_lock():
            self._open()
            checkpoints = self._checkpoints(todo)
            for name in todo:
                data = gx_frame(name, frames[name])
                result = checkpoints[name].run(batch_parameters={"dataframe": data}, run_id=RunIdentifier(run_name=run_name))
                failures[name] = _failures(name, result)
        return failures

    @contextmanager
    def _config_lock(self):
        """One task at a time rewrites and runs the shared GX project's suites (an exclusive file lock)."""
        if not self.gx_dir:
            yield
            return
        with open(Path(self.gx_dir) / ".omnirecon.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def build_data_docs(self, run_id: str | None = None, now: datetime | None = None,
                        keep_days: float = 0) -> str | None:
        """Render the Data Docs pages of one run's validation results (every part's: a sharded run's shards
        validated as `run_id#i/n`; default: the runs this runner validated) and the index. Earlier runs' pages
        stay as rendered, and suite pages are rendered again only when the suites changed: re-rendering every
        stored result made this cost grow with every run.

        GX's store keeps the results of the newest DOCS_RUNS runs (and this one's); older runs' results and pages
        move to gx/uncommitted/archive/<run day>/, since GX lists and parses every stored key several times per
        build. With keep_days, archive days older than that before `now` are deleted."""
        if not self.gx_dir:
            return None
        from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier
        names = {gx_run_name(run_id)} if run_id else set(self._run_names)
        with self._config_lock():
            self._open()
            keys = self.context.validation_results_store.list_keys()
            self._archive_older_runs(keys, names)
            if keep_days:   # (results carry GX's wall-clock run time: so does the cut-off, unless a test sets now)
                self._drop_archive_before((now or datetime.now(timezone.utc)) - timedelta(days=keep_days))
            ids = [k for k in keys if _base_run(k) in names]
            marker, stamp = Path(self.gx_dir) / DOCS_MARKER, self._stamp()
            suites_new = not marker.exists() or marker.read_text() != stamp
            if suites_new or not ids:   # (no identifiers at all would make GX render every stored result)
                ids += [ExpectationSuiteIdentifier(name) for name in SPECS]
            self.context.build_data_docs(site_names=[SITE], resource_identifiers=ids)
            if suites_new:
                marker.write_text(stamp)
        sites = self.context.get_docs_sites_urls(site_name=SITE)
        return sites[0]["site_url"] if sites else None

    def _archive_root(self) -> Path:
        return Path(self.gx_dir) / "gx" / "uncommitted" / ARCHIVE

    def _archive_older_runs(self, keys, names: set) -> int:
        """Move the results (and rendered pages) of runs older than the newest DOCS_RUNS out of GX's stores, into
        archive/<run day>/validations/... and archive/<run day>/data_docs/... (the stores' own paths); the number
        of results moved."""
        newest: dict = {}
        for k in keys:
            newest[_base_run(k)] = max(newest.get(_base_run(k), _utc(k.run_id.run_time)), _utc(k.run_id.run_time))
        keep = set(sorted(newest, key=newest.get, reverse=True)[:DOCS_RUNS]) | names
        old = [k for k in keys if _base_run(k) not in keep]
        if not old:
            return 0
        backend = self.context.validation_results_store.store_backend
        results = Path(backend.full_base_directory)
        index = self.context.get_docs_sites_urls(site_name=SITE, only_if_exists=False)
        site = _file(index[0]["site_url"]).parent if index else None
        for k in old:
            day = self._archive_root() / _utc(k.run_id.run_time).strftime("%Y-%m-%d")
            json_file = _file(backend.get_url_for_key(k.to_tuple()))
            _move_within(json_file, results, day / "validations")
            if site is not None:
                for page in self.context.get_docs_sites_urls(resource_identifier=k, site_name=SITE):
                    _move_within(_file(page["site_url"]), site, day / "data_docs")
        log.info("GX project %s: %d validation results of older runs moved to %s", self.gx_dir, len(old),
                 self._archive_root())
        return len(old)

    def _drop_archive_before(self, cutoff: datetime) -> list[str]:
        """Delete the archive's days before the cut-off's day; the days deleted."""
        root, gone = self._archive_root(), []
        for day in sorted(root.iterdir()) if root.is_dir() else []:
            if day.is_dir() and day.name < cutoff.strftime("%Y-%m-%d"):
                shutil.rmtree(day, ignore_errors=True)
                gone.append(day.name)
        if gone:
            log.info("GX project %s: archived results of %s deleted (older than the retention)", self.gx_dir,
                     ", ".join(gone))
        return gone


def gx_run_name(run_id: str) -> str:
    """The GX run name of a run (GX's file store keys cannot hold path separators)."""
    return re.sub(r"[/\\]", "__", run_id)


def _base_run(key) -> str:
    """The run a validation result belongs to (a shard validates as `run#i/n`)."""
    return key.run_id.run_name.split("#", 1)[0]


def _utc(at: datetime | None) -> datetime:
    if at is None:
        return datetime.min.replace(tzinfo=timezone.utc)
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def _file(url: str) -> Path:
    return Path(unquote(urlparse(url).path))


def _move_within(src: Path, base: Path, dest_base: Path) -> None:
    """Move src (under base) to the same relative path under dest_base; remove the directories it leaves empty."""
    if not src.exists():
        return
    dest = dest_base / src.relative_to(base)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dest)
    parent = src.parent
    while parent != base and parent.is_relative_to(base):
        try:
            parent.rmdir()
        except OSError:   # not empty
            break
        parent = parent.parent


def _failures(name: str, result) -> list[Failure]:
    out = []
    for vr in result.run_results.values():
        for er in vr.results:
            if er.success:
                continue
            meta = er.expectation_config.meta or {}
            if er.exception_info and er.exception_info.get("raised_exception"):
                raise RuntimeError(f"GX suite {name}: {er.exception_info.get('exception_message')}")
            idx = er.result.get("unexpected_index_list") or []
            rows = sorted({int(r) for r in idx})
            out.append(Failure(name, meta.get("rule", er.expectation_config.type),
                               meta.get("finding_severity", "warning"), rows,
                               int(er.result.get("unexpected_count") or len(rows))))
    return out


_CONFIG_VARIABLES = re.compile(r"^config_variables_file_path:.*$", re.M)


def _without_config_variables(gx_dir: Path) -> bool:
    """The project keeps no config variables: GX would re-read and re-parse that YAML file on every access to a
    context setting (hundreds of times per run). The key is written empty (null). False: no project yet."""
    path = gx_dir / "gx" / "great_expectations.yml"
    if not path.exists():
        return False
    text = path.read_text()
    new = _CONFIG_VARIABLES.sub("config_variables_file_path:", text)
    if new != text:
        path.write_text(new)
    return True
