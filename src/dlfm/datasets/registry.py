"""The named data sets dlfm knows: where they come from, how they are laid out, how to parse them."""

from __future__ import annotations

from dataclasses import dataclass

GROUPLENS = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class DatasetSpec:
    """One named data set.

    Attributes:
        name: the name users type (``ml-100k``).
        url: the official archive.
        md5: the archive's published MD5, or ``None`` when GroupLens updates the archive in
            place; then the ``.md5`` file published beside it is fetched and checked.
        archive_root: the top folder inside the archive (installed as ``DIR/name``).
        ratings_file: the ratings file, relative to ``DIR/name``.
        sep, header: how that file is delimited.
        scale: the rating scale.
        official_folds: names of the predefined train/test splits shipped in the archive.
        size_mb: approximate archive size, for messages.
    """

    name: str
    url: str
    md5: str | None
    archive_root: str
    ratings_file: str
    sep: str
    header: bool
    scale: tuple[float, float]
    official_folds: tuple[str, ...] = ()
    size_mb: float = 0.0
    description: str = ""


#: how each of GroupLens's rating-file layouts is delimited: (separator, has a header line)
_MOVIELENS_LAYOUTS = {"u.data": ("\t", False), "ratings.dat": ("::", False), "ratings.csv": (",", True)}


def _movielens(name: str, md5: str | None, ratings_file: str, scale: tuple[float, float], size_mb: float,
               description: str, *, archive_root: str | None = None, official_folds: tuple[str, ...] = ()) -> DatasetSpec:
    """A MovieLens set: its archive is ``GROUPLENS/NAME.zip`` with top folder ``archive_root``
    (default ``name``), and its rating file's delimiting follows from the file's layout."""
    sep, header = _MOVIELENS_LAYOUTS[ratings_file]
    return DatasetSpec(name, f"{GROUPLENS}{name}.zip", md5, archive_root or name, ratings_file, sep, header, scale,
                       official_folds=official_folds, size_mb=size_mb, description=description)


DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    _movielens("ml-100k", "0e33842e24a9c977be4e0107933c0723", "u.data", (1.0, 5.0), 4.9,
               "100,000 ratings (1-5) from 943 users on 1,682 movies; five official folds u1-u5",
               official_folds=("u1", "u2", "u3", "u4", "u5", "ua", "ub")),
    _movielens("ml-1m", "c4d9eecfca2ab87c1945afe126590906", "ratings.dat", (1.0, 5.0), 5.9,
               "1,000,209 ratings (1-5) from 6,040 users on 3,706 movies"),
    _movielens("ml-10m", "ce571fd55effeba0271552578f2648bd", "ratings.dat", (0.5, 5.0), 63,
               "10,000,054 ratings (0.5-5) from 69,878 users on 10,677 movies", archive_root="ml-10M100K"),
    _movielens("ml-20m", "cd245b17a1ae2cc31bb14903e1204af3", "ratings.csv", (0.5, 5.0), 190,
               "20,000,263 ratings (0.5-5) from 138,493 users on 26,744 movies"),
    _movielens("ml-25m", "6b51fb2759a8657d3bfcbfc42b592ada", "ratings.csv", (0.5, 5.0), 250,
               "25,000,095 ratings (0.5-5) from 162,541 users on 59,047 movies"),
    _movielens("ml-32m", None, "ratings.csv", (0.5, 5.0), 239,
               "32,000,204 ratings (0.5-5) from 200,948 users on 87,585 movies"),
    _movielens("ml-latest-small", None, "ratings.csv", (0.5, 5.0), 1.0,
               "about 100,000 ratings (0.5-5) from 610 users on 9,700 movies; updated by GroupLens"),
)}
