"""Your own click log: a CSV (plain or gzip) or parquet table, optionally pre-split, with a schema file.

A :class:`TabularReader` is one more raw reader for the streaming preparation (``preprocess.run``):
vocabularies fitted on train only, the same cache and fingerprint as the built-in datasets. The schema
(TOML, :func:`load_schema`) declares how each column is read::

    label = "click"            # the 0/1 label column (or --label)
    categorical = ["site_id"]  # optional: every column not declared otherwise is categorical
    integer = ["I1", "I2"]     # counts, bucketed as Criteo's: v > 2 -> floor(ln(v)^2), else v
    numeric = ["price"]        # real values, cut at train quantiles into `numeric_buckets` buckets
    numeric_buckets = 10
    ignore = ["id"]            # columns that are not fields
    missing = ["", "NA"]       # values that mean "missing" (their own token in every field)
    user = "user_id"           # the field that identifies a user (GAUC, NDCG, Light-FMP's subset)
    delimiter = ","            # CSV only

Given ``train``, ``valid`` and ``test`` files the split is theirs (``split="given"``: BARS-style splits
stay comparable); given only ``train``, rows are split as for every dataset (seeded random 8:1:1 or
sequential 7:2:1).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from fmpbench.data.errors import DataError
from fmpbench.data.rawio import arrow_stream, check_file, first_line, gzip_error, iter_lines, open_raw
from fmpbench.data.readers import Batch, Column, RawReader, bucket_int_codes, to_numpy
from fmpbench.data.splits import TRAIN, random_split, sequential_bounds

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

KIND = "tabular"
ROLES = ("train", "valid", "test")
DEFAULT_NUMERIC_BUCKETS = 10
#: ``min_count`` default: as for every built-in dataset but Criteo
MIN_COUNT = 2
#: numeric values kept per field to place the quantile cuts: bounded memory on any file size
QUANTILE_SAMPLE = 1 << 21
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_INT_TEXT = r"^\s*-?[0-9]{1,18}\s*$"
_FLOAT_TEXT = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"


_EXPECTED = {"integer": "an integer", "numeric": "a number"}


class SchemaError(DataError):
    """A schema, a column list or a command line that cannot describe the given files (a usage error)."""


@dataclass(frozen=True)
class TabularSchema:
    """How each column of the table is read (see the module docstring)."""

    label: str | None = None
    categorical: tuple[str, ...] = ()
    integer: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    missing: tuple[str, ...] = ("",)
    user: str | None = None
    delimiter: str = ","
    numeric_buckets: int = DEFAULT_NUMERIC_BUCKETS
    source: str = field(default="", compare=False)

    def as_params(self) -> dict[str, Any]:
        """What changes the prepared output (enters the fingerprint); not where the schema file lay."""
        out = asdict(self)
        del out["source"], out["label"]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


_LIST_KEYS = ("categorical", "integer", "numeric", "ignore")
_SCHEMA_KEYS = ("label", *_LIST_KEYS, "missing", "user", "delimiter", "numeric_buckets")


def load_schema(path: str | Path) -> TabularSchema:
    """Parse and check a schema file; every mistake is a one-line :class:`SchemaError` naming file and key."""
    path = Path(path).expanduser()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SchemaError(f"schema {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaError(f"schema {path}: cannot read it ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"schema {path}: not valid TOML ({exc})") from None
    return schema_from_dict(raw, str(path))


def schema_from_dict(raw: dict[str, Any], source: str = "schema") -> TabularSchema:
    unknown = sorted(set(raw) - set(_SCHEMA_KEYS))
    if unknown:
        raise SchemaError(f"{source}: unknown key '{unknown[0]}'; the keys are: {', '.join(_SCHEMA_KEYS)}")
    kw: dict[str, Any] = {"source": source}
    for key in _LIST_KEYS:
        if key in raw:
            kw[key] = _names(raw[key], source, key)
    if "missing" in raw:
        value = raw["missing"]
        kw["missing"] = (value,) if isinstance(value, str) else _names(value, source, "missing", allow_empty=True)
    for key in ("label", "user", "delimiter"):
        if key in raw:
            if not isinstance(raw[key], str) or not raw[key]:
                raise SchemaError(f"{source}: '{key}' must be a column name (a non-empty string), got {raw[key]!r}")
            kw[key] = raw[key]
    if len(kw.get("delimiter", ",")) != 1:
        raise SchemaError(f"{source}: 'delimiter' must be one character, got {kw['delimiter']!r}")
    if "numeric_buckets" in raw:
        buckets = raw["numeric_buckets"]
        if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 2:
            raise SchemaError(f"{source}: 'numeric_buckets' must be an integer of at least 2, got {buckets!r}")
        kw["numeric_buckets"] = buckets
    seen: dict[str, str] = {}
    for key in _LIST_KEYS:
        for name in kw.get(key, ()):
            if name in seen:
                raise SchemaError(f"{source}: column '{name}' is declared both {seen[name]} and {key}")
            seen[name] = key
    return TabularSchema(**kw)


def _names(value: object, source: str, key: str, allow_empty: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and (v or allow_empty) for v in value):
        raise SchemaError(f"{source}: '{key}' must be a list of column names (strings), got {value!r}")
    return tuple(value)


def check_dataset_name(name: str, builtin: tuple[str, ...]) -> None:
    """A custom dataset's name becomes a folder and a ``--dataset`` value: short, plain, not a built-in's."""
    if not _NAME_RE.match(name):
        raise SchemaError(f"dataset name {name!r}: use letters, digits, '_', '.' or '-' (at most 64, not leading)")
    if name in builtin:
        raise SchemaError(f"dataset name '{name}' is a built-in dataset; choose another --name")


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PAR1"


class _Table:
    """One input file (CSV, gzip CSV or parquet): its columns and its record batches of chosen columns."""

    def __init__(self, path: Path, role: str, delimiter: str) -> None:
        try:
            self.path = check_file(path, f"tabular {role} file")
        except DataError as exc:  # a missing or empty file is a mistake on the command line
            raise SchemaError(str(exc)) from None
        self.role = role
        self.delimiter = delimiter
        self.parquet = _is_parquet(self.path)
        if self.parquet:
            try:
                self.columns = list(pq.ParquetFile(self.path).schema_arrow.names)
            except (pa.ArrowException, OSError) as exc:
                raise DataError(f"tabular {role} file {self.path}: not a readable parquet file ({exc})") from None
        else:
            header = first_line(self.path)
            if not header.strip():
                raise DataError(f"tabular {role} file {self.path}: the first line (the header) is empty")
            self.columns = next(csv.reader([header], delimiter=delimiter))
        dup = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if dup:
            raise SchemaError(f"tabular {role} file {self.path}: column '{dup[0]}' appears twice in the header")

    def batches(self, columns: list[str], chunk_rows: int) -> Iterator[pa.RecordBatch]:
        if self.parquet:
            try:
                with open_raw(self.path) as f:
                    yield from pq.ParquetFile(f).iter_batches(batch_size=chunk_rows, columns=columns)
            except (pa.ArrowException, OSError) as exc:
                raise DataError(f"tabular {self.role} file {self.path}: {str(exc).splitlines()[0]}") from None
            return
        read = pcsv.ReadOptions(column_names=self.columns, skip_rows=1, block_size=1 << 21)
        parse = pcsv.ParseOptions(delimiter=self.delimiter, ignore_empty_lines=True)
        convert = pcsv.ConvertOptions(
            column_types={c: pa.string() for c in columns},
            include_columns=columns,
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        try:
            with arrow_stream(self.path) as stream:
                for rb in pcsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert):
                    if rb.num_rows:
                        yield rb
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                return
            where = self._first_ragged_line() if "columns, got" in str(exc) else ""
            raise DataError(f"tabular {self.role} file {self.path}{where}: {str(exc).splitlines()[0]}") from None
        except OSError as exc:
            raise gzip_error(self.path, exc) from exc

    def _first_ragged_line(self) -> str:
        """`` line N`` of the first row whose field count is not the header's: pyarrow's parse error names
        the row's text but not its line. Read again up to that row, only on this error path."""
        for number, line in iter_lines(self.path):
            if number > 1 and line and len(next(csv.reader([line], delimiter=self.delimiter))) != len(self.columns):
                return f" line {number}"
        return ""


class _Sample:
    """Every ``stride``-th value (by stream position) of a numeric field, at most ``QUANTILE_SAMPLE``."""

    def __init__(self) -> None:
        self.pos: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.stride = 1
        self.size = 0

    def add(self, pos: np.ndarray, values: np.ndarray) -> None:
        keep = pos % self.stride == 0
        self.pos.append(pos[keep])
        self.values.append(values[keep])
        self.size += int(keep.sum())
        while self.size > QUANTILE_SAMPLE:
            self.stride *= 2
            pos_all, values_all = np.concatenate(self.pos), np.concatenate(self.values)
            keep = pos_all % self.stride == 0
            self.pos, self.values, self.size = [pos_all[keep]], [values_all[keep]], int(keep.sum())

    def train_values(self, before: int | None) -> np.ndarray:
        values = np.concatenate(self.values) if self.values else np.zeros(0)
        if before is None:
            return values
        return values[np.concatenate(self.pos) < before]


class TabularReader(RawReader):
    """Rows of a user's table(s) as :class:`Batch`es; see the module docstring for the schema."""

    dataset = KIND

    def __init__(
        self,
        files: dict[str, Path],
        label: str | None,
        schema: TabularSchema | None = None,
        *,
        split: str = "random",
        split_seed: int = 2024,
        skip_bad_rows: bool = False,
    ) -> None:
        super().__init__(skip_bad_rows)
        self.schema = schema or TabularSchema()
        if set(files) not in ({"train"}, set(ROLES)):
            raise SchemaError("tabular: give --train alone, or --train, --valid and --test together")
        if label and self.schema.label and label != self.schema.label:
            raise SchemaError(f"--label '{label}' differs from the schema's label '{self.schema.label}' "
                              f"({self.schema.source})")
        label = label or self.schema.label
        if not label:
            raise SchemaError("tabular: name the label column (--label COLUMN, or label = \"COLUMN\" in the schema)")
        self.label = label
        self.split = "given" if len(files) == 3 else split
        self.split_seed = split_seed
        self.tables = [_Table(Path(files[r]), r, self.schema.delimiter) for r in ROLES if r in files]
        self.fields = self._fields(self.tables[0])
        for table in self.tables:
            self._check_columns(table)
        self.kinds = {f: "categorical" for f in self.fields}
        self.kinds.update({f: "integer" for f in self.schema.integer})
        self.kinds.update({f: "numeric" for f in self.schema.numeric})
        self.missing = pa.array(list(self.schema.missing), pa.string())
        self.bounds: dict[str, np.ndarray] = {}
        self.rows_per_file: list[int] = []

    def _fields(self, train: _Table) -> list[str]:
        where = f"tabular train file {train.path}"
        if self.label not in train.columns:
            raise SchemaError(f"{where}: no label column '{self.label}'; its columns: {', '.join(train.columns)}")
        declared = {key: getattr(self.schema, key) for key in _LIST_KEYS}
        declared["user"] = (self.schema.user,) if self.schema.user else ()
        for key, names in declared.items():
            for name in names:
                if name not in train.columns:
                    raise SchemaError(f"{self.schema.source}: {key} column '{name}' is not a column of {train.path}; "
                                      f"its columns: {', '.join(train.columns)}")
                if name == self.label:
                    raise SchemaError(f"{self.schema.source}: '{name}' is the label; it cannot also be {key}")
        if self.schema.user in self.schema.ignore:
            raise SchemaError(f"{self.schema.source}: the user column '{self.schema.user}' is also ignored")
        fields = [c for c in train.columns if c != self.label and c not in self.schema.ignore]
        if not fields:
            raise SchemaError(f"{where}: no field columns besides the label '{self.label}' and the ignored ones")
        return fields

    def _check_columns(self, table: _Table) -> None:
        absent = [c for c in [self.label, *self.fields] if c not in table.columns]
        if absent:
            raise SchemaError(f"tabular {table.role} file {table.path}: no column '{absent[0]}' (the train file "
                              f"has it); its columns: {', '.join(table.columns)}")

    # ---- RawReader interface

    def files(self) -> dict[str, Path]:
        return {t.role: t.path for t in self.tables}

    def raw_arg(self) -> list[Path]:
        return [t.path for t in self.tables]

    def params(self) -> dict[str, object]:
        return {"kind": KIND, "label": self.label, "schema": self.schema.as_params()}

    def given_bounds(self) -> tuple[int, int]:
        n_train, n_valid, _ = self.rows_per_file
        return n_train, n_train + n_valid

    def describe(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "label": self.label,
            "field_kinds": {f: self.kinds[f] for f in self.fields},
            "numeric_bounds": {f: b.tolist() for f, b in self.bounds.items()},
            "rows_per_file": dict(zip((t.role for t in self.tables), self.rows_per_file, strict=True)),
            **({"user_field": self.schema.user} if self.schema.user else {}),
        }

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        if self.schema.numeric and not self.bounds:
            self.bounds = self._fit_bounds(chunk_rows)
        self.rows_per_file = []
        for table in self.tables:
            rows = 0
            for rb in self._valid_batches(table, chunk_rows):
                rows += rb.num_rows
                yield self._tokens(rb)
            if rows == 0:
                raise SchemaError(f"tabular {table.role} file {table.path}: no data rows (only a header, or every "
                                  "row skipped)")
            self.rows_per_file.append(rows)

    # ---- parsing

    def _valid_batches(self, table: _Table, chunk_rows: int) -> Iterator[pa.RecordBatch]:
        """Record batches of the label and field columns, without the bad rows (skipped or an error)."""
        first = 0
        for rb in table.batches([self.label, *self.fields], chunk_rows):
            bad = np.zeros(rb.num_rows, dtype=bool)
            reasons: list[tuple[np.ndarray, str, pa.Array]] = []
            for name, ok in self._checks(rb):
                if not ok.all():
                    bad |= ~ok
                    reasons.append((ok, name, rb.column(name)))
            if bad.any():
                for i in np.flatnonzero(bad)[: 5 if self.skip_bad_rows else 1]:
                    ok, name, col = next(r for r in reasons if not r[0][i])
                    what = "label" if name == self.label else f"{self.kinds[name]} field"
                    expected = "0 or 1" if name == self.label else _EXPECTED[self.kinds[name]]
                    msg = (f"tabular {table.role} file {table.path} row {first + i + 1}: {what} '{name}' must be "
                           f"{expected}, got {col[int(i)].as_py()!r}")
                    if not self.skip_bad_rows:
                        raise DataError(msg)
                    self.skips.add(msg)
                self.skips.count += max(0, int(bad.sum()) - 5)  # the first 5 were added above
                rb = rb.filter(pa.array(~bad))
            first += len(bad)
            if rb.num_rows:
                yield rb

    def _checks(self, rb: pa.RecordBatch) -> Iterator[tuple[str, np.ndarray]]:
        yield self.label, _label_ok(rb.column(self.label))
        for name in self.fields:
            kind = self.kinds[name]
            if kind != "categorical":
                col = self._present(rb.column(name))
                if _is_text(col):
                    pattern = _INT_TEXT if kind == "integer" else _FLOAT_TEXT
                    yield name, to_numpy(pc.fill_null(pc.match_substring_regex(col, pattern), True))
                elif kind == "integer" and pa.types.is_floating(col.type):
                    yield name, to_numpy(pc.fill_null(pc.equal(pc.floor(col), col), True))
                elif not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
                    yield name, np.zeros(len(col), dtype=bool)

    def _present(self, col: pa.Array) -> pa.Array:
        """The column with every missing-value token as null."""
        if _is_text(col):
            return pc.if_else(pc.is_in(col, value_set=self.missing), pa.scalar(None, col.type), col)
        return col

    def _tokens(self, rb: pa.RecordBatch) -> Batch:
        labels = _label_values(rb.column(self.label))
        cols: dict[str, Column] = {}
        for name in self.fields:
            kind = self.kinds[name]
            col = self._present(rb.column(name))
            if kind == "categorical":
                text = col if pa.types.is_string(col.type) else pc.cast(col, pa.string())
                cols[name] = pc.fill_null(text, "")
                continue
            values, missing = _numbers(col, np.int64 if kind == "integer" else np.float64)
            if kind == "integer":
                cols[name] = bucket_int_codes(values, missing)
            else:
                tokens = np.searchsorted(self.bounds[name], values, side="right").astype(np.int64)
                tokens[missing] = -1
                cols[name] = tokens
        return Batch(labels, cols)

    def _fit_bounds(self, chunk_rows: int) -> dict[str, np.ndarray]:
        """Cut points of each numeric field at its train quantiles (a first pass over the train rows)."""
        samples = {f: _Sample() for f in self.schema.numeric}
        pos = 0
        for rb in self._valid_batches(self.tables[0], chunk_rows):
            n = rb.num_rows
            rows = np.arange(pos, pos + n)
            train = random_split(pos, n, self.split_seed) == TRAIN if self.split == "random" else np.ones(n, bool)
            for name, sample in samples.items():
                values, missing = _numbers(self._present(rb.column(name)), np.float64)
                keep = train & ~missing
                sample.add(rows[keep], values[keep])
            pos += n
        before = sequential_bounds(pos)[0] if self.split == "sequential" else None
        q = np.linspace(0, 1, self.schema.numeric_buckets + 1)[1:-1]
        out = {}
        for name, sample in samples.items():
            values = sample.train_values(before)
            out[name] = np.unique(np.quantile(values, q)) if values.size else np.zeros(0)
        return out


def _is_text(col: pa.Array) -> bool:
    return pa.types.is_string(col.type) or pa.types.is_large_string(col.type)


def _label_ok(col: pa.Array) -> np.ndarray:
    if _is_text(col):
        ok = pc.is_in(pc.utf8_trim_whitespace(col), value_set=pa.array(["0", "1"]))
    elif pa.types.is_boolean(col.type):
        ok = pc.is_valid(col)
    elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        ok = pc.is_in(pc.cast(col, pa.float64()), value_set=pa.array([0.0, 1.0]))
    else:
        return np.zeros(len(col), dtype=bool)
    return to_numpy(pc.fill_null(ok, False))


def _label_values(col: pa.Array) -> np.ndarray:
    if _is_text(col):
        return to_numpy(pc.equal(pc.utf8_trim_whitespace(col), "1")).astype(np.float32)
    return to_numpy(pc.cast(col, pa.float32()))


def _numbers(col: pa.Array, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """``(values, missing)`` of a checked integer or numeric column (text, integer or float typed)."""
    if _is_text(col):
        col = pc.utf8_trim_whitespace(col)
    arrow_type = pa.int64() if dtype is np.int64 else pa.float64()
    # a float column of an integer field holds whole numbers (checked): the unsafe cast only drops ".0"
    values = pc.cast(col, arrow_type, safe=not pa.types.is_floating(col.type))
    missing = to_numpy(pc.is_null(values))
    out = to_numpy(pc.fill_null(values, 0)).astype(dtype, copy=False)
    if dtype is np.float64:
        nan = np.isnan(out)
        return np.where(nan, 0.0, out), missing | nan
    return out, missing
