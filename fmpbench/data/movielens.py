"""MovieLens-1M: ``ratings.dat`` joined with ``users.dat`` and ``movies.dat`` (card: ``datasets/movielens.md``).

Label ``rating > 3``; fields user_id, movie_id, gender, age, occupation, zip, genres (one pipe-joined
value), year (from the title), hour and weekday (UTC, from the timestamp). ``min_count`` 2.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from fmpbench.data.errors import DataError
from fmpbench.data.rawio import check_file, iter_lines
from fmpbench.data.readers import Batch, Column, RawReader, single_raw
from fmpbench.data.spec import DatasetSpec
from fmpbench.data.synthetic import FieldSpec

MOVIELENS_FIELDS = [
    "user_id",
    "movie_id",
    "gender",
    "age",
    "occupation",
    "zip",
    "genres",
    "year",
    "hour",
    "weekday",
]
YEAR_RE = re.compile(r"\((\d{4})\)\s*$")
#: MovieLens ids, ratings and timestamps: ASCII digits that fit int64 (``str.isdigit`` also accepts
#: '²' or '１', which ``int`` then rejects or the int64 arrays overflow on)
COUNT_RE = re.compile(r"[0-9]{1,18}\Z")


def _find_beside(folder: Path, stem: str) -> Path | None:
    for cand in (folder / f"{stem}.dat", folder / f"{stem}.dat.gz"):
        if cand.is_file():
            return cand
    return None


def resolve_movielens(raw: Path) -> tuple[Path, Path, Path]:
    """``(ratings, users, movies)`` from a folder or from the ratings file itself."""
    raw = Path(raw).expanduser()
    if raw.is_dir():
        folder = raw
        ratings = _find_beside(folder, "ratings")
        if ratings is None:
            cands = sorted(p for p in folder.iterdir() if re.fullmatch(r"ratings.*\.dat(\.gz)?", p.name))
            if not cands:
                raise DataError(f"movielens {raw}: no ratings.dat (or ratings*.dat[.gz]) in this folder")
            ratings = cands[0]
    else:
        ratings = check_file(raw, "movielens ratings")
        folder = ratings.parent
    users = _find_beside(folder, "users")
    movies = _find_beside(folder, "movies")
    for what, p in (("users.dat", users), ("movies.dat", movies)):
        if p is None:
            raise DataError(f"movielens {folder}: {what} not found beside the ratings file")
    assert users is not None and movies is not None
    return (
        check_file(ratings, "movielens ratings"),
        check_file(users, "movielens users"),
        check_file(movies, "movielens movies"),
    )


class MovieLensReader(RawReader):
    """MovieLens-1M ``ratings.dat`` joined with ``users.dat`` and ``movies.dat`` (``::``, Latin-1).

    Label ``rating > 3``. ``genres`` is the full pipe-joined genre string as one categorical value
    (the one-id-per-field contract has no multi-hot); ``year`` comes from the title's ``(YYYY)``;
    ``hour`` and ``weekday`` (Mon=0) are from the timestamp in UTC.
    """

    dataset = "movielens"

    def __init__(self, raw: Path, skip_bad_rows: bool = False) -> None:
        super().__init__(skip_bad_rows)
        self.ratings, self.users_path, self.movies_path = resolve_movielens(raw)
        self.path = self.ratings

    def files(self) -> dict[str, Path]:
        return {"ratings": self.ratings, "users": self.users_path, "movies": self.movies_path}

    def _table(self, path: Path, n_cols: int, what: str) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for i, line in iter_lines(path, "latin-1"):
            if not line:
                continue
            parts = line.split("::")
            if len(parts) != n_cols:
                raise DataError(
                    f"movielens {path.name} line {i}: expected {n_cols} '::'-separated columns, got {len(parts)}"
                )
            if not COUNT_RE.match(parts[0]):
                raise DataError(f"movielens {path.name} line {i}: {what} is not an integer: {parts[0]!r}")
            out[int(parts[0])] = parts[1:]
        if not out:
            raise DataError(f"movielens {path}: no data rows")
        return out

    def _lookup(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Sorted user ids with their attributes, and the same for movies (ids may be sparse and large)."""
        users = self._table(self.users_path, 5, "UserID")
        movies = self._table(self.movies_path, 3, "MovieID")
        u_ids = np.array(sorted(users), dtype=np.int64)
        u_attr = np.empty((len(users), 4), dtype=object)
        for k, uid in enumerate(u_ids.tolist()):
            u_attr[k] = users[uid]
        m_ids = np.array(sorted(movies), dtype=np.int64)
        m_attr = np.empty((len(movies), 2), dtype=object)
        for k, mid in enumerate(m_ids.tolist()):
            title, genres = movies[mid]
            year = YEAR_RE.search(title)
            m_attr[k] = (genres, year.group(1) if year else "")
        return u_ids, u_attr, m_ids, m_attr

    def _rating_error(self, parts: list[str], u_ids: np.ndarray, m_ids: np.ndarray) -> str | None:
        if len(parts) != 4:
            return f"expected 4 '::'-separated columns, got {len(parts)}"
        for name, text in zip(("UserID", "MovieID", "Rating", "Timestamp"), parts, strict=True):
            if not COUNT_RE.match(text):
                return f"{name} is not an integer: {text!r}"
        uid, mid, r = int(parts[0]), int(parts[1]), int(parts[2])
        if not 1 <= r <= 5:
            return f"Rating out of range 1-5: {r}"
        if not _contains(u_ids, uid):
            return f"UserID {uid} not in {self.users_path.name}"
        if not _contains(m_ids, mid):
            return f"MovieID {mid} not in {self.movies_path.name}"
        return None

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        u_ids, u_attr, m_ids, m_attr = self._lookup()
        errors = functools.partial(self._rating_error, u_ids=u_ids, m_ids=m_ids)
        for rows in rating_chunks(self, self.ratings, "::", errors, chunk_rows):
            yield self._batch(rows, u_ids, u_attr, m_ids, m_attr)

    @staticmethod
    def _batch(
        rows: list[tuple[int, int, int, int]],
        u_ids: np.ndarray,
        u_attr: np.ndarray,
        m_ids: np.ndarray,
        m_attr: np.ndarray,
    ) -> Batch:
        a = np.asarray(rows, dtype=np.int64)
        uid, mid, rating, ts = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
        ua = u_attr[np.searchsorted(u_ids, uid)]
        ma = m_attr[np.searchsorted(m_ids, mid)]
        cols: dict[str, Column] = {
            "user_id": uid,
            "movie_id": mid,
            "gender": pa.array(ua[:, 0], pa.string()),
            "age": pa.array(ua[:, 1], pa.string()),
            "occupation": pa.array(ua[:, 2], pa.string()),
            "zip": pa.array(ua[:, 3], pa.string()),
            "genres": pa.array(ma[:, 0], pa.string()),
            "year": pa.array(ma[:, 1], pa.string()),
            "hour": (ts // 3600) % 24,
            "weekday": (ts // 86400 + 3) % 7,  # 1970-01-01 was a Thursday; Mon=0
        }
        return Batch((rating > 3).astype(np.float32), cols)


def rating_chunks(
    reader: RawReader, ratings: Path, sep: str, rating_error: Callable[[list[str]], str | None], chunk_rows: int
) -> Iterator[list[tuple[int, int, int, int]]]:
    """``(user, movie, rating, timestamp)`` rows of ``ratings`` (Latin-1, ``sep``-separated), ``chunk_rows`` a list.

    A line ``rating_error`` names is skipped into ``reader.skips`` under ``skip_bad_rows``, else raised;
    the MovieLens-1M and -100K readers share this loop.
    """
    rows: list[tuple[int, int, int, int]] = []
    total = 0
    for i, line in iter_lines(ratings, "latin-1"):
        if not line:
            continue
        parts = line.split(sep)
        err = rating_error(parts)
        if err is not None:
            if reader.skip_bad_rows:
                reader.skips.add(f"line {i}: {err}")
                continue
            raise DataError(f"{reader.dataset} {ratings.name} line {i}: {err}")
        rows.append((int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3])))
        if len(rows) >= chunk_rows:
            total += len(rows)
            yield rows
            rows = []
    if rows:
        total += len(rows)
        yield rows
    if total == 0:
        raise DataError(f"{reader.dataset} {ratings}: no data rows")


def _contains(sorted_ids: np.ndarray, value: int) -> bool:
    at = int(np.searchsorted(sorted_ids, value))
    return at < sorted_ids.size and int(sorted_ids[at]) == value



def make_reader(raw: str | Path | list, skip_bad_rows: bool = False) -> MovieLensReader:
    return MovieLensReader(single_raw(raw, "movielens"), skip_bad_rows)


def standin_fields() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec("user_id", 3000, "strong", 0.6),
        FieldSpec("movie_id", 2000, "strong", 0.9),
        FieldSpec("gender", 2, "weak", 0.5),
        FieldSpec("age", 7, "weak", 0.6),
        FieldSpec("occupation", 21, "noise", 0.6),
        FieldSpec("zip", 1500, "high_card_noise", 0.6),
        FieldSpec("genres", 300, "weak", 1.0),
        FieldSpec("year", 81, "noise", 0.8),
        FieldSpec("hour", 24, "noise", 0.3),
        FieldSpec("weekday", 7, "noise", 0.2),
    )


SPEC = DatasetSpec(
    name="movielens",
    reader=make_reader,
    min_count=2,
    standin_fields=standin_fields,
    standin_label_rate=0.57,
    card=Path("datasets/movielens.md"),
)
