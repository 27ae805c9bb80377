"""MovieLens-100K (``u.data``, ``u.user``, ``u.item``, ``u.genre``): the only complete real dataset here.

The fields are MovieLens-1M's (:data:`fmpbench.data.movielens.MOVIELENS_FIELDS`), so the two are read
the same way and share a stand-in schema: ``age`` is mapped onto ML-1M's seven age groups (1, 18, 25,
35, 45, 50, 56), ``genres`` is the pipe-joined names of the movie's genre flags (one categorical value),
``year`` comes from the title's ``(YYYY)`` or else the release date, ``hour`` and ``weekday`` (Mon=0)
from the timestamp in UTC. Label ``rating > 3``, as for ML-1M.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from fmpbench.data import movielens
from fmpbench.data.errors import DataError
from fmpbench.data.movielens import COUNT_RE, YEAR_RE, rating_chunks
from fmpbench.data.rawio import check_file, iter_lines
from fmpbench.data.readers import Batch, Column, RawReader, single_raw
from fmpbench.data.spec import DatasetSpec

#: ML-1M's age groups: the lower bound of each group is its code.
AGE_GROUPS = (1, 18, 25, 35, 45, 50, 56)
_DATE_YEAR_RE = re.compile(r"(\d{4})$")


def age_group(age: int) -> int:
    """ML-1M's code for an age in years (under 18 → 1, 18–24 → 18, …, 56+ → 56)."""
    return max(g for g in AGE_GROUPS if g <= max(age, 1))


def _find(folder: Path, stem: str) -> Path:
    for cand in (folder / stem, folder / f"{stem}.gz"):
        if cand.is_file():
            return check_file(cand, "movielens100k")
    raise DataError(f"movielens100k {folder}: {stem} not found (expected the ml-100k folder)")


class MovieLens100KReader(RawReader):
    """The ``ml-100k`` folder as GroupLens distributes it (``u.data`` may be gzipped)."""

    dataset = "movielens100k"

    def __init__(self, raw: Path, skip_bad_rows: bool = False) -> None:
        super().__init__(skip_bad_rows)
        raw = Path(raw).expanduser()
        folder = raw if raw.is_dir() else raw.parent
        if not folder.is_dir():
            raise DataError(f"movielens100k {raw}: no such folder")
        self.ratings = _find(folder, "u.data") if raw.is_dir() else check_file(raw, "movielens100k ratings")
        self.users_path = _find(folder, "u.user")
        self.items_path = _find(folder, "u.item")
        self.genres_path = _find(folder, "u.genre")
        self.path = self.ratings

    def files(self) -> dict[str, Path]:
        return {"ratings": self.ratings, "users": self.users_path, "items": self.items_path, "genres": self.genres_path}

    def _split_lines(self, path: Path, sep: str, n_cols: int) -> Iterator[tuple[int, list[str]]]:
        for i, line in iter_lines(path, "latin-1"):
            if not line:
                continue
            parts = line.split(sep)
            if len(parts) != n_cols or not COUNT_RE.match(parts[0]):
                raise DataError(f"movielens100k {path.name} line {i}: expected {n_cols} '{sep}'-separated columns "
                                f"starting with an integer id, got {line[:60]!r}")
            yield i, parts

    def _lookup(self) -> tuple[dict[int, tuple[str, str, str, str]], dict[int, tuple[str, str]]]:
        names = {}
        for i, line in iter_lines(self.genres_path, "latin-1"):
            if line:
                name, _, index = line.rpartition("|")
                if not COUNT_RE.match(index):
                    raise DataError(f"movielens100k {self.genres_path.name} line {i}: bad genre line {line!r}")
                names[int(index)] = name
        users = {}
        for i, (uid, age, gender, occupation, zip_code) in self._split_lines(self.users_path, "|", 5):
            if not COUNT_RE.match(age):
                raise DataError(f"movielens100k {self.users_path.name} line {i}: age is not an integer: {age!r}")
            users[int(uid)] = (gender, str(age_group(int(age))), occupation, zip_code)
        items = {}
        for _, parts in self._split_lines(self.items_path, "|", 5 + len(names)):
            flags = parts[5:]
            genres = "|".join(names[j] for j, flag in enumerate(flags) if flag == "1")
            year = YEAR_RE.search(parts[1]) or _DATE_YEAR_RE.search(parts[2])
            items[int(parts[0])] = (genres, year.group(1) if year else "")
        return users, items

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        users, items = self._lookup()
        errors = functools.partial(self._rating_error, users=users, items=items)
        for rows in rating_chunks(self, self.ratings, "\t", errors, chunk_rows):
            yield self._batch(rows, users, items)

    @staticmethod
    def _rating_error(parts: list[str], users: dict, items: dict) -> str | None:
        if len(parts) != 4:
            return f"expected 4 tab-separated columns, got {len(parts)}"
        for name, text in zip(("user id", "item id", "rating", "timestamp"), parts, strict=True):
            if not COUNT_RE.match(text):
                return f"{name} is not an integer: {text!r}"
        uid, mid, rating = int(parts[0]), int(parts[1]), int(parts[2])
        if not 1 <= rating <= 5:
            return f"rating out of range 1-5: {rating}"
        if uid not in users:
            return f"user id {uid} not in u.user"
        if mid not in items:
            return f"item id {mid} not in u.item"
        return None

    @staticmethod
    def _batch(rows: list[tuple[int, int, int, int]], users: dict, items: dict) -> Batch:
        a = np.asarray(rows, dtype=np.int64)
        uid, mid, rating, ts = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
        ua = [users[u] for u in uid.tolist()]
        ma = [items[m] for m in mid.tolist()]
        cols: dict[str, Column] = {
            "user_id": uid,
            "movie_id": mid,
            "gender": pa.array([u[0] for u in ua], pa.string()),
            "age": pa.array([u[1] for u in ua], pa.string()),
            "occupation": pa.array([u[2] for u in ua], pa.string()),
            "zip": pa.array([u[3] for u in ua], pa.string()),
            "genres": pa.array([m[0] for m in ma], pa.string()),
            "year": pa.array([m[1] for m in ma], pa.string()),
            "hour": (ts // 3600) % 24,
            "weekday": (ts // 86400 + 3) % 7,  # 1970-01-01 was a Thursday; Mon=0
        }
        return Batch((rating > 3).astype(np.float32), cols)


def make_reader(raw: str | Path | list, skip_bad_rows: bool = False) -> MovieLens100KReader:
    return MovieLens100KReader(single_raw(raw, "movielens100k"), skip_bad_rows)


SPEC = DatasetSpec(
    name="movielens100k",
    reader=make_reader,
    min_count=2,
    standin_fields=movielens.standin_fields,  # the same fields as ML-1M
    standin_label_rate=0.55,
    card=Path("datasets/movielens100k.md"),
)
