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


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "ml-100k", GROUPLENS + "ml-100k.zip", "0e33842e24a9c977be4e0107933c0723", "ml-100k",
            "u.data", "\t", False, (1.0, 5.0),
            official_folds=("u1", "u2", "u3", "u4", "u5", "ua", "ub"), size_mb=4.9,
            description="100,000 ratings (1-5) from 943 users on 1,682 movies; five official folds u1-u5",
        ),
        DatasetSpec(
            "ml-1m", GROUPLENS + "ml-1m.zip", "c4d9eecfca2ab87c1945afe126590906", "ml-1m",
            "ratings.dat", "::", False, (1.0, 5.0), size_mb=5.9,
            description="1,000,209 ratings (1-5) from 6,040 users on 3,706 movies",
        ),
        DatasetSpec(
            "ml-10m", GROUPLENS + "ml-10m.zip", "ce571fd55effeba0271552578f2648bd", "ml-10M100K",
            "ratings.dat", "::", False, (0.5, 5.0), size_mb=63,
            description="10,000,054 ratings (0.5-5) from 69,878 users on 10,677 movies",
        ),
        DatasetSpec(
            "ml-20m", GROUPLENS + "ml-20m.zip", "cd245b17a1ae2cc31bb14903e1204af3", "ml-20m",
            "ratings.csv", ",", True, (0.5, 5.0), size_mb=190,
            description="20,000,263 ratings (0.5-5) from 138,493 users on 26,744 movies",
        ),
        DatasetSpec(
            "ml-25m", GROUPLENS + "ml-25m.zip", "6b51fb2759a8657d3bfcbfc42b592ada", "ml-25m",
            "ratings.csv", ",", True, (0.5, 5.0), size_mb=250,
            description="25,000,095 ratings (0.5-5) from 162,541 users on 59,047 movies",
        ),
        DatasetSpec(
            "ml-32m", GROUPLENS + "ml-32m.zip", None, "ml-32m",
            "ratings.csv", ",", True, (0.5, 5.0), size_mb=239,
            description="32,000,204 ratings (0.5-5) from 200,948 users on 87,585 movies",
        ),
        DatasetSpec(
            "ml-latest-small", GROUPLENS + "ml-latest-small.zip", None, "ml-latest-small",
            "ratings.csv", ",", True, (0.5, 5.0), size_mb=1.0,
            description="about 100,000 ratings (0.5-5) from 610 users on 9,700 movies; updated by GroupLens",
        ),
    )
}
