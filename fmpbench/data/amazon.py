"""Amazon Reviews 2018 5-core JSON lines, optionally with the meta file (card: ``datasets/amazon.md``).

Label ``overall >= 4``; options ``style_min_share`` (style keys kept as fields) and ``drop_duplicates``
(one copy of a review repeated under several product variants). ``min_count`` 2.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pyarrow as pa

from fmpbench.data.errors import DataError
from fmpbench.data.rawio import check_file, iter_lines
from fmpbench.data.readers import Batch, Column, RawReader
from fmpbench.data.spec import DatasetSpec
from fmpbench.data.synthetic import FieldSpec

AMAZON_BASE_FIELDS = ["user", "item", "verified", "vote", "year", "month", "weekday"]
AMAZON_META_FIELDS = ["brand", "main_cat", "price"]
_STYLE_NAME_RE = re.compile(r"[^0-9A-Za-z]+")


def style_field_name(key: str) -> str:
    """``'Size Name:' -> 'style_Size_Name'``."""
    return "style_" + (_STYLE_NAME_RE.sub("_", key).strip("_") or "unnamed")


def log_bucket(v: int) -> str:
    """Same transform as Criteo's integers, used for vote counts: ``v > 2 -> b<floor(ln(v)^2)>``."""
    return f"b{math.floor(math.log(v) ** 2)}" if v > 2 else str(v)


def price_bucket(text: object) -> str:
    """``'$12.99'`` (or a range ``'$5 - $9'``, first value) -> half-octave bucket; else missing."""
    if not isinstance(text, str):
        return ""
    m = re.search(r"\$\s*([0-9][0-9,]*(?:\.[0-9]+)?)", text)
    if not m:
        return ""
    p = float(m.group(1).replace(",", ""))
    return f"p{math.floor(2 * math.log2(1 + p))}"


def resolve_amazon(raw: Path | list[Path]) -> tuple[Path, Path | None]:
    """``(reviews, meta or None)`` from a file, a folder, or a list ``[reviews, meta]``."""
    paths: list[Path]
    if isinstance(raw, list | tuple):
        paths = [Path(p).expanduser() for p in raw]
    else:
        p = Path(raw).expanduser()
        if p.is_dir():
            paths = sorted(q for q in p.iterdir() if re.search(r"\.json(\.gz)?$", q.name))
            if not paths:
                raise DataError(f"amazon {p}: no *.json[.gz] files in this folder")
        else:
            paths = [p]
    meta = [p for p in paths if p.name.startswith("meta_")]
    reviews = [p for p in paths if not p.name.startswith("meta_")]
    if len(reviews) != 1 or len(meta) > 1:
        raise DataError(
            "amazon: expected one reviews file (<Category>_5.json.gz) and at most one "
            f"meta_<Category>.json.gz, got {[str(p) for p in paths]}"
        )
    return check_file(reviews[0], "amazon reviews"), (check_file(meta[0], "amazon meta") if meta else None)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _as_int(x: object) -> int | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, float) and x.is_integer():
        return int(x)
    if isinstance(x, str) and re.fullmatch(r"[0-9][0-9,]*", x.strip()):
        return int(x.strip().replace(",", ""))
    return None


class AmazonReader(RawReader):
    """Amazon Reviews 2018 5-core JSON lines, optionally joined with the category's meta file.

    Label ``overall >= 4``. Fields: user (reviewerID), item (asin), verified, vote (comma-grouped
    count, missing = 0, log-bucketed), one ``style_<Key>`` field per style key present in at least
    ``style_min_share`` of train rows (others dropped; rows without the key get the missing token),
    review year, month and weekday (UTC); with meta: brand, main_cat, price (half-octave bucket).

    ``drop_duplicates`` (default) keeps one copy of a review that the 2018 files repeat under several
    product variants (same reviewer, time, summary and text): AMAZON_FASHION_5 holds 3,176 lines but
    448 distinct reviews, and a random split of the copies puts the same review in train and test,
    where ``user`` alone then predicts the label perfectly (test AUC 1.0). The count dropped is
    recorded as ``duplicates_dropped``.
    """

    dataset = "amazon"

    def __init__(
        self,
        raw: Path | list[Path],
        skip_bad_rows: bool = False,
        style_min_share: float = 0.05,
        drop_duplicates: bool = True,
    ) -> None:
        super().__init__(skip_bad_rows)
        self.path, self.meta_path = resolve_amazon(raw)
        self.style_min_share = style_min_share
        self.drop_duplicates = drop_duplicates
        self._meta: dict[str, tuple[str, str, str]] | None = None

    def files(self) -> dict[str, Path]:
        out = {"reviews": self.path}
        if self.meta_path is not None:
            out["meta"] = self.meta_path
        return out

    def params(self) -> dict[str, object]:
        return {"style_min_share": self.style_min_share, "drop_duplicates": self.drop_duplicates}

    def raw_arg(self) -> list[Path]:
        return list(self.files().values())

    def select_fields(self, names: list[str], nonmissing: dict[str, int], n_train: int) -> list[str]:
        styles = sorted(
            n
            for n in names
            if n.startswith("style_") and nonmissing.get(n, 0) >= self.style_min_share * max(n_train, 1)
        )
        meta = AMAZON_META_FIELDS if self.meta_path is not None else []
        return ["user", "item", "verified", "vote", *styles, "year", "month", "weekday", *meta]

    def _load_meta(self) -> dict[str, tuple[str, str, str]]:
        assert self.meta_path is not None
        out: dict[str, tuple[str, str, str]] = {}
        for i, line in iter_lines(self.meta_path, "utf-8"):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as exc:
                if self.skip_bad_rows:
                    self.skips.add(f"meta line {i}: bad JSON")
                    continue
                raise DataError(
                    f"amazon {self.meta_path.name} line {i}: bad JSON ({exc.msg} at column {exc.colno})"
                ) from exc
            asin = d.get("asin") if isinstance(d, dict) else None
            if not isinstance(asin, str):
                if self.skip_bad_rows:
                    self.skips.add(f"meta line {i}: no asin")
                    continue
                raise DataError(f"amazon {self.meta_path.name} line {i}: record has no 'asin'")
            if asin not in out:
                brand = d.get("brand")
                cat = d.get("main_cat")
                out[asin] = (
                    brand.strip() if isinstance(brand, str) else "",
                    cat.strip() if isinstance(cat, str) else "",
                    price_bucket(d.get("price")),
                )
        return out

    def _parse(self, line: str) -> tuple[float, dict[str, str], bytes] | str:
        """``(label, tokens, review key)`` or an error message."""
        try:
            d = json.loads(line)
        except json.JSONDecodeError as exc:
            return f"bad JSON ({exc.msg}, column {exc.colno})"
        if not isinstance(d, dict):
            return "record is not a JSON object"
        overall = d.get("overall")
        if isinstance(overall, bool) or not isinstance(overall, int | float) or not 1 <= overall <= 5:
            return f"'overall' must be a rating 1-5, got {overall!r}"
        user, item = d.get("reviewerID"), d.get("asin")
        if not isinstance(user, str) or not isinstance(item, str):
            return "'reviewerID' and 'asin' must be strings"
        t = _as_int(d.get("unixReviewTime"))
        if t is None:
            return f"'unixReviewTime' is not an integer: {d.get('unixReviewTime')!r}"
        vote_raw = d.get("vote")
        vote = 0 if vote_raw is None else _as_int(vote_raw)
        if vote is None:
            return f"'vote' is not a count: {vote_raw!r}"
        verified = d.get("verified")
        try:
            day = dt.datetime.fromtimestamp(t, dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            return f"'unixReviewTime' is not a time: {t}"
        tok = {
            "user": user,
            "item": item,
            "verified": "" if verified is None else str(verified).lower(),
            "vote": log_bucket(vote),
            "year": str(day.year),
            "month": str(day.month),
            "weekday": str(day.weekday()),
        }
        style = d.get("style")
        if style is not None:
            if not isinstance(style, dict):
                return "'style' is not an object"
            for k, v in style.items():
                tok[style_field_name(str(k))] = str(v).strip()
        if self.meta_path is not None:
            assert self._meta is not None
            brand, cat, price = self._meta.get(item, ("", "", ""))
            tok.update(brand=brand, main_cat=cat, price=price)
        if _SURROGATE_ESCAPE.search(line):  # "\\udc80" decodes to a str that UTF-8 cannot encode
            for name, value in tok.items():
                if not _encodable(value):
                    return f"'{name}' holds a lone UTF-16 surrogate (an invalid \\u escape)"
        review = json.dumps([user, t, d.get("summary"), d.get("reviewText")]).encode()
        return (1.0 if overall >= 4 else 0.0), tok, hashlib.blake2b(review, digest_size=8).digest()

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        if self.meta_path is not None and self._meta is None:
            self._meta = self._load_meta()
        labels: list[float] = []
        rows: list[dict[str, str]] = []
        seen: set[bytes] = set()  # 8 bytes per distinct review: memory follows reviews, not lines
        total = 0
        for i, line in iter_lines(self.path, "utf-8"):
            if not line.strip():
                continue
            res = self._parse(line)
            if isinstance(res, str):
                if self.skip_bad_rows:
                    self.skips.add(f"line {i}: {res}")
                    continue
                raise DataError(f"amazon {self.path.name} line {i}: {res}")
            if self.drop_duplicates:
                if res[2] in seen:
                    self.duplicates_dropped += 1
                    continue
                seen.add(res[2])
            labels.append(res[0])
            rows.append(res[1])
            if len(rows) >= chunk_rows:
                total += len(rows)
                yield _dict_batch(labels, rows)
                labels, rows = [], []
        if rows:
            total += len(rows)
            yield _dict_batch(labels, rows)
        if total == 0:
            raise DataError(f"amazon {self.path}: no data rows")


def _dict_batch(labels: list[float], rows: list[dict[str, str]]) -> Batch:
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    cols: dict[str, Column] = {k: pa.array([r.get(k, "") for r in rows], pa.string()) for k in keys}
    return Batch(np.asarray(labels, dtype=np.float32), cols)



def make_reader(
    raw: str | Path | list, skip_bad_rows: bool = False, style_min_share: float = 0.05, drop_duplicates: bool = True
) -> AmazonReader:
    paths = [Path(p) for p in raw] if isinstance(raw, list | tuple) else Path(raw)
    return AmazonReader(paths, skip_bad_rows, float(style_min_share), bool(drop_duplicates))


def standin_fields() -> tuple[FieldSpec, ...]:
    # Field names as the loader produces them for AMAZON_FASHION_5 (style keys present in >= 5 % of
    # rows: Color, Size, in sorted order); no meta fields, since the stand-in mimics the reviews-only preparation.
    return (
        FieldSpec("user", 3000, "strong", 0.7),
        FieldSpec("item", 1000, "strong", 1.0),
        FieldSpec("verified", 2, "weak", 1.5),
        FieldSpec("vote", 12, "weak", 2.0),
        FieldSpec("style_Color", 300, "noise", 1.0),
        FieldSpec("style_Size", 40, "weak", 1.0),
        FieldSpec("year", 20, "noise", 0.8),
        FieldSpec("month", 12, "noise", 0.2),
        FieldSpec("weekday", 7, "noise", 0.2),
    )


SPEC = DatasetSpec(
    name="amazon",
    reader=make_reader,
    min_count=2,
    standin_fields=standin_fields,
    standin_label_rate=0.80,
    options=MappingProxyType({"style_min_share": 0.05, "drop_duplicates": True}),
    card=Path("datasets/amazon.md"),
)
